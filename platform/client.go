package platform

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gridpay/gridpay/money"
)

// Wire-level constants of the contract (see openapi.yaml).
const (
	// RequestIDHeader carries the caller's request ID; the platform echoes
	// it and writes it into its log, so one ID follows a request across
	// GridPay and the platform.
	RequestIDHeader = "X-Request-Id"
	// MaxResponseBytes bounds an answer the client reads. The largest
	// legitimate answer (36 months of consumption of a customer with a few
	// metering points, or years of payments) is far smaller; anything bigger
	// is a fault and is treated as one.
	MaxResponseBytes = 8 << 20
	// DefaultTimeout bounds one call when NewClient is given zero.
	DefaultTimeout = 10 * time.Second
)

// StatusOf is the HTTP status the platform answers an error code with.
// Unknown codes are 400.
func StatusOf(code Code) int {
	switch code {
	case CodeUnknownCustomer, CodeBillNotFound, CodeNotFound:
		return http.StatusNotFound
	case CodeAlreadySettled, CodeConflict:
		return http.StatusConflict
	case CodeAmountMismatch, CodeInsufficientFunds:
		return http.StatusUnprocessableEntity
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadRequest
	}
}

// ErrorBody is the body of every non-2xx answer: {"error": {...}}.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// ItemsBody wraps the lists the platform answers, {"items": [...]}, so a
// list answer can grow fields without breaking clients.
type ItemsBody[T any] struct {
	Items []T `json:"items"`
}

// PrepaidEntryRequest is the body of PUT /v1/prepaid-entries/{key}: a
// credit (positive Amount) or a debit (negative Amount).
type PrepaidEntryRequest struct {
	CustomerID string    `json:"customer_id"`
	Amount     money.Fen `json:"amount"`
	Memo       string    `json:"memo"`
}

// ReversalRequest is the body of POST /v1/payments/{reference}/reversal.
type ReversalRequest struct {
	Note string `json:"note"`
}

type requestIDKey struct{}

// WithRequestID makes the client send id as the request ID of the calls
// made with ctx (the gateway passes on its own request's ID). Without it,
// each call gets a random ID.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// NewRequestID returns a random request ID: 32 hex digits.
func NewRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Client calls the platform web service over HTTPS with mutual TLS. It is
// safe for concurrent use.
type Client struct {
	base    string // scheme://host[:port][/prefix], no trailing slash
	hc      *http.Client
	timeout time.Duration
}

var _ Service = (*Client)(nil)

// NewClient returns a client of the platform at baseURL (https://host:port).
// tlsConfig must present GridPay's service certificate (Certificates or
// GetClientCertificate) and trust the platform's CA (RootCAs); the
// platform refuses any other client at the handshake. timeout bounds each
// call (zero means DefaultTimeout); the caller's context can cut it
// shorter.
func NewClient(baseURL string, tlsConfig *tls.Config, timeout time.Duration) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("platform.NewClient: base URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("platform.NewClient: base URL %q must be https://host[:port] (mutual TLS only, no credentials, query or fragment)", baseURL)
	}
	if tlsConfig == nil {
		return nil, errors.New("platform.NewClient: a TLS configuration with GridPay's client certificate is required")
	}
	if timeout < 0 {
		return nil, fmt.Errorf("platform.NewClient: negative timeout %v", timeout)
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	cfg := tlsConfig.Clone()
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	transport := &http.Transport{
		// The platform sits in the intranet: an HTTPS_PROXY meant for the
		// internet must not capture these calls.
		Proxy:                 nil,
		TLSClientConfig:       cfg,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConns:          32,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}
	return &Client{
		base:    strings.TrimRight(u.String(), "/"),
		hc:      &http.Client{Transport: transport, Timeout: 0, CheckRedirect: noRedirects},
		timeout: timeout,
	}, nil
}

// noRedirects stops the client following redirects: the contract has none,
// and following one could send a request body to a host we did not choose.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// CloseIdleConnections closes kept-alive connections, e.g. after the TLS
// configuration's certificate was renewed.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Customer returns a customer's profile.
func (c *Client) Customer(ctx context.Context, customerID string) (Customer, error) {
	var out Customer
	if err := checkID("customer ID", customerID); err != nil {
		return out, err
	}
	err := c.do(ctx, http.MethodGet, "/v1/customers/"+seg(customerID), nil, nil, &out)
	return out, err
}

// MeteringPoints lists a customer's meters.
func (c *Client) MeteringPoints(ctx context.Context, customerID string) ([]MeteringPoint, error) {
	if err := checkID("customer ID", customerID); err != nil {
		return nil, err
	}
	var out ItemsBody[MeteringPoint]
	err := c.do(ctx, http.MethodGet, "/v1/customers/"+seg(customerID)+"/metering-points", nil, nil, &out)
	return out.Items, err
}

// Consumption lists the months from..to inclusive, every metering point.
func (c *Client) Consumption(ctx context.Context, customerID string, from, to Period) ([]Consumption, error) {
	if err := checkID("customer ID", customerID); err != nil {
		return nil, err
	}
	q := url.Values{}
	setIf(q, "from", string(from))
	setIf(q, "to", string(to))
	var out ItemsBody[Consumption]
	err := c.do(ctx, http.MethodGet, "/v1/customers/"+seg(customerID)+"/consumption", q, nil, &out)
	return out.Items, err
}

// Bills lists a customer's bills, oldest period first.
func (c *Client) Bills(ctx context.Context, customerID string, f BillFilter) ([]Bill, error) {
	if err := checkID("customer ID", customerID); err != nil {
		return nil, err
	}
	q := url.Values{}
	setIf(q, "status", f.Status)
	setIf(q, "from", string(f.From))
	setIf(q, "to", string(f.To))
	var out ItemsBody[Bill]
	err := c.do(ctx, http.MethodGet, "/v1/customers/"+seg(customerID)+"/bills", q, nil, &out)
	return out.Items, err
}

// Bill returns one bill of that customer.
func (c *Client) Bill(ctx context.Context, customerID, billID string) (Bill, error) {
	var out Bill
	if err := checkID("customer ID", customerID); err != nil {
		return out, err
	}
	if err := checkID("bill ID", billID); err != nil {
		return out, err
	}
	err := c.do(ctx, http.MethodGet, "/v1/customers/"+seg(customerID)+"/bills/"+seg(billID), nil, nil, &out)
	return out, err
}

// Arrears returns what a customer owes past due.
func (c *Client) Arrears(ctx context.Context, customerID string) (Arrears, error) {
	var out Arrears
	if err := checkID("customer ID", customerID); err != nil {
		return out, err
	}
	err := c.do(ctx, http.MethodGet, "/v1/customers/"+seg(customerID)+"/arrears", nil, nil, &out)
	return out, err
}

// Payments lists payments received, newest first.
func (c *Client) Payments(ctx context.Context, customerID string, from, to Date) ([]Payment, error) {
	if err := checkID("customer ID", customerID); err != nil {
		return nil, err
	}
	q := url.Values{}
	setIf(q, "from", string(from))
	setIf(q, "to", string(to))
	var out ItemsBody[Payment]
	err := c.do(ctx, http.MethodGet, "/v1/customers/"+seg(customerID)+"/payments", q, nil, &out)
	return out.Items, err
}

// Payment returns a posting by its reference.
func (c *Client) Payment(ctx context.Context, reference string) (Payment, error) {
	var out Payment
	if err := checkID("payment reference", reference); err != nil {
		return out, err
	}
	err := c.do(ctx, http.MethodGet, "/v1/payments/"+seg(reference), nil, nil, &out)
	return out, err
}

// PostPayment records a payment, idempotently by p.Reference.
func (c *Client) PostPayment(ctx context.Context, p PostPayment) (Payment, error) {
	var out Payment
	if err := checkID("payment reference", p.Reference); err != nil {
		return out, err
	}
	err := c.do(ctx, http.MethodPut, "/v1/payments/"+seg(p.Reference), nil, p, &out)
	return out, err
}

// ReversePayment undoes a posting, idempotently.
func (c *Client) ReversePayment(ctx context.Context, reference, note string) (Payment, error) {
	var out Payment
	if err := checkID("payment reference", reference); err != nil {
		return out, err
	}
	err := c.do(ctx, http.MethodPost, "/v1/payments/"+seg(reference)+"/reversal", nil, ReversalRequest{Note: note}, &out)
	return out, err
}

// PrepaidAccount returns a customer's prepaid balance.
func (c *Client) PrepaidAccount(ctx context.Context, customerID string) (PrepaidAccount, error) {
	var out PrepaidAccount
	if err := checkID("customer ID", customerID); err != nil {
		return out, err
	}
	err := c.do(ctx, http.MethodGet, "/v1/customers/"+seg(customerID)+"/prepaid", nil, nil, &out)
	return out, err
}

// DebitPrepaid takes amount (positive) from the prepaid account, once per
// key.
func (c *Client) DebitPrepaid(ctx context.Context, customerID, key string, amount money.Fen, memo string) (PrepaidEntry, error) {
	if amount <= 0 {
		// The wire form is signed; a negative debit would become a credit.
		return PrepaidEntry{}, &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("debit amount %s must be positive", amount)}
	}
	return c.putEntry(ctx, customerID, key, -amount, memo)
}

// CreditPrepaid adds amount (positive) to the prepaid account, once per key.
func (c *Client) CreditPrepaid(ctx context.Context, customerID, key string, amount money.Fen, memo string) (PrepaidEntry, error) {
	if amount <= 0 {
		return PrepaidEntry{}, &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("credit amount %s must be positive", amount)}
	}
	return c.putEntry(ctx, customerID, key, amount, memo)
}

func (c *Client) putEntry(ctx context.Context, customerID, key string, amount money.Fen, memo string) (PrepaidEntry, error) {
	var out PrepaidEntry
	if err := checkID("customer ID", customerID); err != nil {
		return out, err
	}
	if err := checkID("prepaid entry key", key); err != nil {
		return out, err
	}
	body := PrepaidEntryRequest{CustomerID: customerID, Amount: amount, Memo: memo}
	err := c.do(ctx, http.MethodPut, "/v1/prepaid-entries/"+seg(key), nil, body, &out)
	return out, err
}

// PrepaidEntry returns a prepaid entry by its key.
func (c *Client) PrepaidEntry(ctx context.Context, key string) (PrepaidEntry, error) {
	var out PrepaidEntry
	if err := checkID("prepaid entry key", key); err != nil {
		return out, err
	}
	err := c.do(ctx, http.MethodGet, "/v1/prepaid-entries/"+seg(key), nil, nil, &out)
	return out, err
}

// do sends one request and decodes the answer into out. Every failure is a
// *Error: the platform's own answer for 4xx, CodeUnavailable wrapping the
// cause for everything that says nothing about the request itself
// (network, TLS, timeouts, 5xx, answers that cannot be read).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	op := method + " " + path
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("%s: encoding the request: %v", op, err)}
		}
		rd = bytes.NewReader(b)
	}
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("%s: %v", op, err)}
	}
	id, _ := ctx.Value(requestIDKey{}).(string)
	if id == "" {
		id = NewRequestID()
	}
	req.Header.Set(RequestIDHeader, id)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "gridpay-platform-client/1")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		return unavailable(op, id, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return unavailable(op, id, fmt.Errorf("reading the answer: %w", err))
	}
	if len(data) > MaxResponseBytes {
		return unavailable(op, id, fmt.Errorf("answer larger than %d bytes", MaxResponseBytes))
	}

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return unavailable(op, id, fmt.Errorf("HTTP %d with an unreadable body: %w", resp.StatusCode, err))
		}
		return nil
	}

	var eb ErrorBody
	decodeErr := json.Unmarshal(data, &eb)
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		msg := http.StatusText(resp.StatusCode)
		if decodeErr == nil && eb.Error != nil && eb.Error.Message != "" {
			msg = eb.Error.Message
		}
		return unavailable(op, id, fmt.Errorf("HTTP %d: %s", resp.StatusCode, msg))
	}
	if decodeErr != nil || eb.Error == nil || eb.Error.Code == "" {
		// A 4xx without the contract's error body did not come from the
		// platform's application (a proxy, a misrouted URL): nothing is
		// known about the request, so it is not a permanent refusal.
		return unavailable(op, id, fmt.Errorf("HTTP %d without an error body", resp.StatusCode))
	}
	return &Error{Code: eb.Error.Code, Message: eb.Error.Message}
}

func unavailable(op, requestID string, cause error) *Error {
	return &Error{
		Code:    CodeUnavailable,
		Message: fmt.Sprintf("%s (request %s): %v", op, requestID, cause),
		Err:     cause,
	}
}

// checkID refuses identifiers that cannot name anything, before they reach
// a URL: empty, overlong, or the path segments "." and "..".
func checkID(what, v string) error {
	switch {
	case v == "":
		return &Error{Code: CodeInvalidRequest, Message: what + " is empty"}
	case len(v) > 128:
		return &Error{Code: CodeInvalidRequest, Message: what + " is longer than 128 bytes"}
	case v == "." || v == "..":
		return &Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("%s %q is not an identifier", what, v)}
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return &Error{Code: CodeInvalidRequest, Message: what + " contains control characters"}
		}
	}
	return nil
}

// seg escapes one path segment, so an identifier holding '/' or '?' stays
// one segment.
func seg(s string) string { return url.PathEscape(s) }

func setIf(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

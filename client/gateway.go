package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/internal/cli"
)

// maxResponse bounds what is read from the gateway.
const maxResponse = 16 << 20

// gateway calls the gateway's API over mutual TLS with the USB key.
type gateway struct {
	base *url.URL
	hc   *http.Client
	log  *zap.Logger
}

// newGateway builds the client: TLS 1.3 only, the gateway's certificate
// verified against ca_file, and the key's certificate (with the customer CA
// certificate) presented with the token's signer.
func newGateway(rawURL string, timeout time.Duration, roots *x509.CertPool, key *unlockedKey, log *zap.Logger) (*gateway, error) {
	base, err := url.Parse(rawURL)
	if err != nil || base.Scheme != "https" || base.Host == "" {
		return nil, fail(cli.ExitConfig, err, "gateway_url %q is not an https:// URL", rawURL)
	}
	chain := [][]byte{key.Leaf.Raw}
	if key.CA != nil {
		chain = append(chain, key.CA.Raw)
	}
	clientCert := &tls.Certificate{Certificate: chain, PrivateKey: key.Signer, Leaf: key.Leaf}
	tlsCfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    roots,
		ServerName: base.Hostname(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return clientCert, nil
		},
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: timeout,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     30 * time.Second,
	}
	return &gateway{base: base, hc: &http.Client{Transport: tr, Timeout: timeout}, log: log}, nil
}

// Close drops idle connections.
func (g *gateway) Close() { g.hc.CloseIdleConnections() }

// get fetches path with query q into out.
func (g *gateway) get(ctx context.Context, path string, q url.Values, out any) error {
	return g.call(ctx, http.MethodGet, path, q, nil, out)
}

// post sends body as JSON; out may be nil for 204 answers.
func (g *gateway) post(ctx context.Context, path string, body, out any) error {
	return g.call(ctx, http.MethodPost, path, nil, body, out)
}

func (g *gateway) call(ctx context.Context, method, path string, q url.Values, body, out any) error {
	// path arrives escaped (a bill ID is one escaped segment); keep that
	// form on the wire and its decoded form in Path.
	plain, err := url.PathUnescape(path)
	if err != nil {
		return fmt.Errorf("bad request path %q: %w", path, err)
	}
	u := *g.base
	u.Path = strings.TrimSuffix(g.base.Path, "/") + plain
	u.RawPath = strings.TrimSuffix(g.base.EscapedPath(), "/") + path
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding the request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "gridpay-client/1")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	t0 := time.Now()
	resp, err := g.hc.Do(req)
	if err != nil {
		return g.transportError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return g.transportError(err)
	}
	g.log.Debug("gateway answered", zap.String("method", method), zap.String("path", path),
		zap.Int("status", resp.StatusCode), zap.Duration("took", time.Since(t0)))
	if len(data) > maxResponse {
		return fail(cli.ExitError, nil, "the gateway's answer to %s is larger than %d bytes", path, maxResponse)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp.StatusCode, resp.Header.Get("Retry-After"), data)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fail(cli.ExitError, err, "the gateway's answer to %s is not what this client understands: %v", path, err)
	}
	return nil
}

// gatewayError is a structured refusal from the gateway (api.Error).
type gatewayError struct {
	Status     int
	Code       string
	Message    string
	RequestID  string
	RetryAfter string
}

func (e *gatewayError) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	if b.Len() == 0 {
		b.WriteString(http.StatusText(e.Status))
	}
	detail := e.Code
	if detail == "" {
		detail = fmt.Sprintf("HTTP %d", e.Status)
	}
	if e.RequestID != "" {
		detail += ", request " + e.RequestID
	}
	if e.RetryAfter != "" {
		detail += ", retry after " + e.RetryAfter + "s"
	}
	fmt.Fprintf(&b, " (%s)", detail)
	return b.String()
}

func decodeError(status int, retryAfter string, data []byte) error {
	var body api.ErrorBody
	e := &gatewayError{Status: status, RetryAfter: retryAfter}
	if json.Unmarshal(data, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message, e.RequestID = body.Error.Code, body.Error.Message, body.Error.RequestID
	} else {
		e.Message = "the gateway answered " + http.StatusText(status)
	}
	return cli.WithCode(exitCodeFor(e.Code, e.Status), e)
}

// exitCodeFor maps the gateway's error codes (and, for an answer without
// one, the HTTP status) to exit codes.
func exitCodeFor(code string, status int) int {
	switch code {
	case api.CodeNoCertificate, api.CodeUnknownCA, api.CodeCertExpired, api.CodeCertRevoked,
		api.CodeCertInvalid, api.CodeNotBound:
		return cli.ExitAuth
	case api.CodeNotFound:
		return cli.ExitNotFound
	case api.CodeUnavailable, api.CodeRateLimited:
		return cli.ExitUnavailable
	case api.CodeInvalidRequest:
		return cli.ExitUsage
	case api.CodeInternal, api.CodePayloadTooLarge, api.CodeMethodNotAllowed, api.CodeUnsupportedVersion:
		return cli.ExitError
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return cli.ExitAuth
	case status == http.StatusNotFound:
		return cli.ExitNotFound
	case status == http.StatusTooManyRequests || status == http.StatusBadGateway ||
		status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout:
		return cli.ExitUnavailable
	case status == http.StatusBadRequest:
		return cli.ExitUsage
	}
	return cli.ExitError
}

// transportError explains why no answer came: the gateway could not be
// reached, did not answer in time, was not trusted, or refused the key's
// certificate during the handshake.
func (g *gateway) transportError(err error) error {
	var verr *tls.CertificateVerificationError
	var opErr *net.OpError
	var nerr net.Error
	host := g.base.Host
	switch {
	case errors.Is(err, context.Canceled):
		return fail(cli.ExitError, err, "interrupted")
	case errors.As(err, &verr):
		return fail(cli.ExitAuth, err, "the gateway at %s could not be authenticated: %v; check gateway_url and ca_file", host, verr.Err)
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		// A TLS alert: the gateway refused the handshake, normally
		// because of the key's certificate.
		return fail(cli.ExitAuth, err, "the gateway at %s refused this USB key's certificate during the TLS handshake (%v)", host, opErr.Err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return fail(cli.ExitUnavailable, err, "the gateway at %s did not answer in time (timeout %s)", host, g.hc.Timeout)
	}
	return fail(cli.ExitUnavailable, err, "cannot reach the gateway at %s: %v", host, rootCause(err))
}

// rootCause strips url.Error's method and URL, which repeat what the
// message says already.
func rootCause(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

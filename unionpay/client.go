package unionpay

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gridpay/gridpay/internal/derrors"
	"github.com/gridpay/gridpay/money"
)

// Config configures a Client.
type Config struct {
	// MerchantID is GridPay's merId at the gateway.
	MerchantID string
	// FrontURL is the gateway's front transaction URL the consume form
	// posts to (…/gateway/api/frontTransReq.do); BackURL the back
	// transaction URL for refunds and cancels (…/backTransReq.do);
	// QueryURL …/queryTrans.do; FileURL …/fileTransReq.do.
	FrontURL string
	BackURL  string
	QueryURL string
	FileURL  string
	// Signer is the merchant's RSA-2048 key (hsm.Signer in production,
	// LoadKeyFile in development) and SignCert its certificate, whose
	// serial number is the certId of every request.
	Signer   crypto.Signer
	SignCert *x509.Certificate
	// Roots are the gateway's root certificates; Intermediates optional
	// intermediate CAs. The signing certificate sent with each response
	// and notification must chain to Roots.
	Roots         *x509.CertPool
	Intermediates *x509.CertPool
	// GatewayOrganization is the organisation (O) the gateway's signing
	// certificate must name; default DefaultGatewayOrganization.
	GatewayOrganization string
	// HTTPClient sends the back requests; default: a client with a 30 s
	// timeout that follows no redirects.
	HTTPClient *http.Client
	// Now is the clock (txnTime of file downloads, certificate validity);
	// default time.Now.
	Now func() time.Time
}

// Client talks to the gateway for one merchant. It is safe for
// concurrent use.
type Client struct {
	cfg    Config
	certID string
	gw     *gatewayVerifier
	http   *http.Client
}

// Limits on what is read from the gateway.
const (
	maxAnswer   = 1 << 20  // a back answer
	maxFileBody = 32 << 20 // a file download answer (base64 of compressed text)
)

// NewClient checks cfg and makes a client. Nothing is sent.
func NewClient(cfg Config) (_ *Client, err error) {
	defer derrors.Wrap(&err, "unionpay.NewClient")
	if err := CheckMerchantID(cfg.MerchantID); err != nil {
		return nil, err
	}
	for _, u := range []struct{ name, v string }{
		{"FrontURL", cfg.FrontURL}, {"BackURL", cfg.BackURL}, {"QueryURL", cfg.QueryURL}, {"FileURL", cfg.FileURL},
	} {
		if err := checkURL(u.v); err != nil {
			return nil, fmt.Errorf("%s: %w", u.name, err)
		}
	}
	if cfg.Signer == nil || cfg.SignCert == nil {
		return nil, errors.New("the merchant key (Signer) and its certificate (SignCert) are required")
	}
	pub, ok := cfg.Signer.Public().(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("the merchant key is %T; the gateway needs RSA", cfg.Signer.Public())
	}
	if pub.N.BitLen() < MinRSABits {
		return nil, fmt.Errorf("the merchant key has %d bits, fewer than %d", pub.N.BitLen(), MinRSABits)
	}
	if !pub.Equal(cfg.SignCert.PublicKey) {
		return nil, fmt.Errorf("SignCert (serial %s) is not the certificate of the merchant key", CertID(cfg.SignCert))
	}
	if cfg.Roots == nil {
		return nil, errors.New("no gateway roots (Roots): responses could not be verified")
	}
	if cfg.GatewayOrganization == "" {
		cfg.GatewayOrganization = DefaultGatewayOrganization
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{
			Timeout: 30 * time.Second,
			// A redirect from the gateway's API is not an answer; never
			// resend a signed request somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Client{
		cfg:    cfg,
		certID: CertID(cfg.SignCert),
		http:   hc,
		gw: &gatewayVerifier{
			roots: cfg.Roots, intermediates: cfg.Intermediates, org: cfg.GatewayOrganization,
			now: cfg.Now, cache: map[[sha256.Size]byte]verifiedCert{},
		},
	}, nil
}

// MerchantID is the merId the client signs for.
func (c *Client) MerchantID() string { return c.cfg.MerchantID }

// CertID is the certId the client's requests carry.
func (c *Client) CertID() string { return c.certID }

func checkURL(s string) error {
	if s == "" {
		return errors.New("missing URL")
	}
	if len(s) > 512 {
		return fmt.Errorf("URL is %d bytes long, over 512", len(s))
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("URL %q: %w", clip(s), err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("URL %q is not an absolute http(s) URL without credentials or fragment", clip(s))
	}
	return nil
}

// common are the fields of every request.
func (c *Client) common(txnType, subType, bizType string) map[string]string {
	return map[string]string{
		FieldVersion:    Version,
		FieldEncoding:   Encoding,
		FieldSignMethod: SignMethodRSA,
		FieldTxnType:    txnType,
		FieldTxnSubType: subType,
		FieldBizType:    bizType,
		FieldAccessType: AccessMerchant,
		FieldMerID:      c.cfg.MerchantID,
	}
}

// ConsumeForm is ConsumeFormContext with a background context.
func (c *Client) ConsumeForm(o Order) (Form, error) {
	return c.ConsumeFormContext(context.Background(), o)
}

// ConsumeFormContext builds the signed consume form (txnType 01) that the
// payer's browser posts to the gateway. Nothing is sent; the order exists
// at the gateway once the browser posts it.
func (c *Client) ConsumeFormContext(ctx context.Context, o Order) (_ Form, err error) {
	defer derrors.Wrap(&err, "unionpay.Client.ConsumeForm(%q)", clip(o.OrderID))
	if err := checkOrder(o); err != nil {
		return Form{}, err
	}
	f := c.common(TxnConsume, SubTypeConsume, BizTypeGateway)
	f[FieldChannelType] = ChannelInternet
	f[FieldOrderID] = o.OrderID
	f[FieldTxnTime] = FormatTime(o.TxnTime)
	f[FieldTxnAmt] = FormatAmount(o.Amount)
	f[FieldCurrencyCode] = CurrencyCNY
	f[FieldFrontURL] = o.FrontURL
	f[FieldBackURL] = o.BackURL
	f[FieldPayTimeout] = FormatTime(o.PayTimeout)
	if o.Description != "" {
		f[FieldOrderDesc] = o.Description
	}
	if err := SignFields(ctx, c.cfg.Signer, c.certID, f); err != nil {
		return Form{}, err
	}
	return Form{Action: c.cfg.FrontURL, Fields: f}, nil
}

func checkOrder(o Order) error {
	if err := CheckOrderID(o.OrderID); err != nil {
		return fieldErr(ErrInvalid, FieldOrderID, "%v", err)
	}
	if o.TxnTime.IsZero() {
		return fieldErr(ErrInvalid, FieldTxnTime, "missing")
	}
	if err := checkAmount(o.Amount); err != nil {
		return err
	}
	if !o.PayTimeout.After(o.TxnTime) {
		return fieldErr(ErrInvalid, FieldPayTimeout, "%s is not after txnTime %s", FormatTime(o.PayTimeout), FormatTime(o.TxnTime))
	}
	if FormatTime(o.PayTimeout) == FormatTime(o.TxnTime) {
		return fieldErr(ErrInvalid, FieldPayTimeout, "not a whole second after txnTime")
	}
	if err := checkURL(o.FrontURL); err != nil {
		return fieldErr(ErrInvalid, FieldFrontURL, "%v", err)
	}
	if err := checkURL(o.BackURL); err != nil {
		return fieldErr(ErrInvalid, FieldBackURL, "%v", err)
	}
	if err := checkDescription(o.Description); err != nil {
		return fieldErr(ErrInvalid, FieldOrderDesc, "%v", err)
	}
	return nil
}

func checkAmount(a money.Fen) error {
	if a < 1 || a > money.Max {
		return fieldErr(ErrInvalid, FieldTxnAmt, "%d fen is out of range (1 to %d)", int64(a), int64(money.Max))
	}
	return nil
}

// formPage auto-submits the form; the button is there for browsers without
// JavaScript. No external resources, so the page works offline and leaks
// nothing to third parties.
var formPage = template.Must(template.New("form").Parse(`<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<title>UnionPay</title>
</head>
<body onload="document.getElementById('pay').submit()">
<form id="pay" action="{{.Action}}" method="post" accept-charset="UTF-8">
{{- range .Fields}}
<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{- end}}
<noscript><button type="submit">Continue to UnionPay / 前往银联支付</button></noscript>
</form>
</body>
</html>
`))

// HTML is a page that posts the form at once when a browser opens it.
// Names and values are HTML-escaped; fields come in name order.
func (f Form) HTML() []byte {
	type field struct{ Name, Value string }
	names := make([]string, 0, len(f.Fields))
	for k := range f.Fields {
		names = append(names, k)
	}
	slices.Sort(names)
	// html/template filters unsafe URL schemes (javascript:) out of the
	// action by itself.
	data := struct {
		Action string
		Fields []field
	}{Action: f.Action}
	for _, n := range names {
		data.Fields = append(data.Fields, field{n, f.Fields[n]})
	}
	var b bytes.Buffer
	if err := formPage.Execute(&b, data); err != nil {
		// The template and its data types are fixed: this cannot happen.
		panic(err)
	}
	return b.Bytes()
}

// Query asks the gateway for the outcome of a transaction (txnType 00) by
// its orderId and txnTime: a consume, or a refund or cancel by its own
// order number. A network failure or an answer that does not verify is an
// error (retry later); a verified answer is a QueryResult whose Outcome
// is Unknown unless respCode is 00 and origRespCode decides.
func (c *Client) Query(ctx context.Context, orderID string, txnTime time.Time) (_ QueryResult, err error) {
	defer derrors.Wrap(&err, "unionpay.Client.Query(%q)", clip(orderID))
	if err := CheckOrderID(orderID); err != nil {
		return QueryResult{}, fieldErr(ErrInvalid, FieldOrderID, "%v", err)
	}
	if txnTime.IsZero() {
		return QueryResult{}, fieldErr(ErrInvalid, FieldTxnTime, "missing")
	}
	req := c.common(TxnQuery, SubTypeDefault, BizTypeDefault)
	req[FieldOrderID] = orderID
	req[FieldTxnTime] = FormatTime(txnTime)
	a, err := c.exchange(ctx, c.cfg.QueryURL, req, maxAnswer)
	if err != nil {
		return QueryResult{}, err
	}
	r := QueryResult{OrderID: orderID, TxnTime: txnTime, RespCode: a[FieldRespCode], RespMsg: a[FieldRespMsg]}
	if r.RespCode != RespSuccess {
		return r, nil
	}
	// The answer must be about the transaction asked for.
	for _, f := range []string{FieldOrderID, FieldTxnTime} {
		if a[f] != req[f] {
			return QueryResult{}, fieldErr(ErrMalformed, f, "answer is about %q, not %q", clip(a[f]), req[f])
		}
	}
	r.OrigRespCode, r.OrigRespMsg = a[FieldOrigRespCode], a[FieldOrigRespMsg]
	if !respCodeRE.MatchString(r.OrigRespCode) {
		return QueryResult{}, fieldErr(ErrMalformed, FieldOrigRespCode, "%q is not a response code", clip(r.OrigRespCode))
	}
	r.TxnType = a[FieldTxnType]
	r.QueryID = a[FieldQueryID]
	if r.QueryID != "" {
		if err := CheckQueryID(r.QueryID); err != nil {
			return QueryResult{}, fieldErr(ErrMalformed, FieldQueryID, "%v", err)
		}
	}
	if s, ok := a[FieldTxnAmt]; ok {
		if r.Amount, err = ParseAmount(s); err != nil {
			return QueryResult{}, fieldErr(ErrMalformed, FieldTxnAmt, "%v", err)
		}
	}
	if s, ok := a[FieldSettleDate]; ok {
		if err := CheckSettleDate(s); err != nil {
			return QueryResult{}, fieldErr(ErrMalformed, FieldSettleDate, "%v", err)
		}
		r.SettleDate = s
	}
	r.Outcome = Classify(r.OrigRespCode)
	if r.Outcome == Succeeded {
		// A success must say what succeeded, for how much.
		switch {
		case r.QueryID == "":
			return QueryResult{}, fieldErr(ErrMalformed, FieldQueryID, "missing in a successful answer")
		case r.Amount == 0:
			return QueryResult{}, fieldErr(ErrMalformed, FieldTxnAmt, "missing in a successful answer")
		case r.TxnType != TxnConsume && r.TxnType != TxnRefund && r.TxnType != TxnCancel:
			return QueryResult{}, fieldErr(ErrMalformed, FieldTxnType, "%q is not a consume, refund or cancel", clip(r.TxnType))
		}
	}
	return r, nil
}

// Refund asks the gateway to refund (part of) a successful consume
// (txnType 04). RespCode 00 means accepted: the outcome comes later, by
// notification or by querying the refund's own OrderID and TxnTime.
// Resending the same request (same OrderID and TxnTime) is safe.
func (c *Client) Refund(ctx context.Context, r RefundRequest) (_ Accepted, err error) {
	defer derrors.Wrap(&err, "unionpay.Client.Refund(%q)", clip(r.OrderID))
	return c.reverse(ctx, TxnRefund, r)
}

// Cancel asks the gateway to cancel a consume of the same settlement day,
// for its full amount (txnType 31). Like Refund, 00 means accepted.
func (c *Client) Cancel(ctx context.Context, r RefundRequest) (_ Accepted, err error) {
	defer derrors.Wrap(&err, "unionpay.Client.Cancel(%q)", clip(r.OrderID))
	return c.reverse(ctx, TxnCancel, r)
}

func (c *Client) reverse(ctx context.Context, txnType string, r RefundRequest) (Accepted, error) {
	if err := CheckOrderID(r.OrderID); err != nil {
		return Accepted{}, fieldErr(ErrInvalid, FieldOrderID, "%v", err)
	}
	if r.TxnTime.IsZero() {
		return Accepted{}, fieldErr(ErrInvalid, FieldTxnTime, "missing")
	}
	if err := CheckQueryID(r.OrigQueryID); err != nil {
		return Accepted{}, fieldErr(ErrInvalid, FieldOrigQryID, "%v", err)
	}
	if err := checkAmount(r.Amount); err != nil {
		return Accepted{}, err
	}
	if err := checkURL(r.BackURL); err != nil {
		return Accepted{}, fieldErr(ErrInvalid, FieldBackURL, "%v", err)
	}
	req := c.common(txnType, SubTypeDefault, BizTypeGateway)
	req[FieldChannelType] = ChannelInternet
	req[FieldOrderID] = r.OrderID
	req[FieldTxnTime] = FormatTime(r.TxnTime)
	req[FieldTxnAmt] = FormatAmount(r.Amount)
	req[FieldCurrencyCode] = CurrencyCNY
	req[FieldOrigQryID] = r.OrigQueryID
	req[FieldBackURL] = r.BackURL
	a, err := c.exchange(ctx, c.cfg.BackURL, req, maxAnswer)
	if err != nil {
		return Accepted{}, err
	}
	acc := Accepted{RespCode: a[FieldRespCode], RespMsg: a[FieldRespMsg], QueryID: a[FieldQueryID]}
	if acc.QueryID != "" {
		if err := CheckQueryID(acc.QueryID); err != nil {
			return Accepted{}, fieldErr(ErrMalformed, FieldQueryID, "%v", err)
		}
	}
	switch acc.RespCode {
	case RespSuccess:
		for _, f := range []string{FieldOrderID, FieldTxnTime} {
			if a[f] != req[f] {
				return Accepted{}, fieldErr(ErrMalformed, f, "answer is about %q, not %q", clip(a[f]), req[f])
			}
		}
		acc.Outcome = Unknown
	case RespUnknown03, RespUnknown04, RespUnknown05, RespDuplicate:
		// Maybe received, maybe not; a duplicate means an earlier request
		// with this orderId and txnTime exists. Either way: query it.
		acc.Outcome = Unknown
	default:
		acc.Outcome = Failed
	}
	return acc, nil
}

// DownloadFile fetches and parses the reconciliation file of a settlement
// date (MMDD): every successful consume, refund and cancel of that date
// (txnType 76, fileType 00). The file format is described in file.go.
func (c *Client) DownloadFile(ctx context.Context, settleDate string) (_ []ReconRecord, err error) {
	defer derrors.Wrap(&err, "unionpay.Client.DownloadFile(%q)", clip(settleDate))
	if err := CheckSettleDate(settleDate); err != nil {
		return nil, fieldErr(ErrInvalid, FieldSettleDate, "%v", err)
	}
	req := c.common(TxnFileDownload, SubTypeFileDown, BizTypeDefault)
	req[FieldSettleDate] = settleDate
	req[FieldTxnTime] = FormatTime(c.cfg.Now())
	req[FieldFileType] = FileTypeDefault
	a, err := c.exchange(ctx, c.cfg.FileURL, req, maxFileBody)
	if err != nil {
		return nil, err
	}
	if code := a[FieldRespCode]; code != RespSuccess {
		return nil, &RespError{RespCode: code, RespMsg: a[FieldRespMsg]}
	}
	if a[FieldSettleDate] != settleDate {
		return nil, fieldErr(ErrMalformed, FieldSettleDate, "answer is for %q, not %q", clip(a[FieldSettleDate]), settleDate)
	}
	content, ok := a[FieldFileContent]
	if !ok {
		return nil, fieldErr(ErrMalformed, FieldFileContent, "missing")
	}
	text, err := DecodeFileContent(content)
	if err != nil {
		return nil, err
	}
	return ParseReconFile(text, c.cfg.MerchantID, settleDate)
}

// exchange signs req, posts it and returns the verified answer. Every
// answer must come from the gateway (ErrBadCertificate, ErrBadSignature
// otherwise), be well formed (ErrMalformed) and name our merchant.
func (c *Client) exchange(ctx context.Context, endpoint string, req map[string]string, limit int64) (map[string]string, error) {
	if err := SignFields(ctx, c.cfg.Signer, c.certID, req); err != nil {
		return nil, err
	}
	form := url.Values{}
	for k, v := range req {
		form.Set(k, v)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
	resp, err := c.http.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("%w: HTTP status %s", ErrUnavailable, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the answer: %w", ErrUnavailable, err)
	}
	if int64(len(body)) > limit {
		return nil, fieldErr(ErrMalformed, "", "answer longer than %d bytes", limit)
	}
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fieldErr(ErrMalformed, "", "answer is not form-encoded")
	}
	a, err := single(vals)
	if err != nil {
		return nil, err
	}
	if err := c.verify(a); err != nil {
		return nil, err
	}
	if a[FieldMerID] != c.cfg.MerchantID {
		return nil, fieldErr(ErrMalformed, FieldMerID, "answer is for merchant %q, not ours", clip(a[FieldMerID]))
	}
	if !respCodeRE.MatchString(a[FieldRespCode]) {
		return nil, fieldErr(ErrMalformed, FieldRespCode, "%q is not a response code", clip(a[FieldRespCode]))
	}
	return a, nil
}

// single turns form values into fields, refusing a field given twice (which
// one would the signature cover?) and an empty field name.
func single(vals url.Values) (map[string]string, error) {
	m := make(map[string]string, len(vals))
	for k, vs := range vals {
		if k == "" {
			return nil, fieldErr(ErrMalformed, "", "a field without a name")
		}
		if len(vs) != 1 {
			return nil, fieldErr(ErrMalformed, safeName(k), "given %d times", len(vs))
		}
		m[k] = vs[0]
	}
	return m, nil
}

// safeName keeps field names in errors printable and short.
func safeName(k string) string { return clip(k) }

// verify checks the gateway's certificate and signature on a message.
func (c *Client) verify(a map[string]string) error {
	if a[FieldVersion] != Version {
		return fieldErr(ErrMalformed, FieldVersion, "%q, want %s", clip(a[FieldVersion]), Version)
	}
	if a[FieldSignMethod] != SignMethodRSA {
		return fieldErr(ErrMalformed, FieldSignMethod, "%q, want %s", clip(a[FieldSignMethod]), SignMethodRSA)
	}
	if _, ok := a[FieldSignature]; !ok {
		return fieldErr(ErrBadSignature, FieldSignature, "missing")
	}
	key, err := c.gw.key(a[FieldSignPubKeyCert])
	if err != nil {
		return err
	}
	return Verify(key, a)
}

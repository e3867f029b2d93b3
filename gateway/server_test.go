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
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/store"
)

// env is a Server over fakes, with two bound customers: alice (C1001, the
// one with bills in arrears) and bob (C2002).
type env struct {
	t     *testing.T
	plat  *fakePlatform
	ver   *fakeVerifier
	bind  *fakeBindings
	aud   *fakeAuditor
	clock *fakeClock
	srv   *Server

	alice, bob *x509.Certificate
}

const (
	aliceToken = "A11CE0001"
	bobToken   = "B0B000002"
)

func newEnv(t *testing.T, tune ...func(*Options)) *env {
	t.Helper()
	e := &env{t: t, plat: newFakePlatform(), ver: &fakeVerifier{}, bind: &fakeBindings{}, aud: &fakeAuditor{},
		clock: &fakeClock{t: fakeToday}}
	o := Options{RatePerSecond: 1000, RateBurst: 1000, RequestTimeout: 5 * time.Second, Now: e.clock.now}
	for _, f := range tune {
		f(&o)
	}
	e.srv = NewServer(Deps{Platform: e.plat, Verifier: e.ver, Bindings: e.bind, Auditor: e.aud, Log: zaptest.NewLogger(t)}, o)
	e.alice = e.customer("C1001", aliceToken)
	e.bob = e.customer("C2002", bobToken)
	return e
}

// customer makes a verified, bound certificate for customerID.
func (e *env) customer(customerID, token string) *x509.Certificate {
	c := newTestCert(e.t, customerID)
	e.ver.set(c, pki.Identity{Kind: pki.KindCustomer, CustomerID: customerID, TokenSerial: token}, nil)
	e.bind.bind(c, customerID, token)
	return c
}

func (e *env) do(method, path string, body []byte, cert *x509.Certificate) *httptest.ResponseRecorder {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	r := httptest.NewRequest(method, "https://gateway.test"+path, rd)
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if cert != nil {
		r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: []*x509.Certificate{cert}}
	}
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, r)
	return w
}

func (e *env) get(path string, cert *x509.Certificate) *httptest.ResponseRecorder {
	e.t.Helper()
	return e.do(http.MethodGet, path, nil, cert)
}

func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(w.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %T: %v", v, err)
	}
	return v
}

// wantError checks an error answer and returns it.
func wantError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) api.Error {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	var body api.ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	if body.Error.Code != code {
		t.Fatalf("code %q, want %q (message %q)", body.Error.Code, code, body.Error.Message)
	}
	if body.Error.Message == "" {
		t.Error("error without a message")
	}
	if body.Error.RequestID == "" || body.Error.RequestID != w.Header().Get("X-Request-ID") {
		t.Errorf("request ID %q in the body, %q in the header", body.Error.RequestID, w.Header().Get("X-Request-ID"))
	}
	return body.Error
}

func wantOK(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, body %s", w.Code, w.Body)
	}
	for h, v := range map[string]string{"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Content-Type": "application/json; charset=utf-8"} {
		if got := w.Header().Get(h); got != v {
			t.Errorf("%s: %q, want %q", h, got, v)
		}
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t)
	w := e.get(api.PathHealth, e.alice)
	wantOK(t, w)
	h := decode[api.Health](t, w)
	if h.Status != "ok" || h.Platform != "ok" || !h.Time.Equal(fakeToday) {
		t.Errorf("health %+v", h)
	}
}

func TestMe(t *testing.T) {
	e := newEnv(t)
	w := e.get(api.PathMe, e.alice)
	wantOK(t, w)
	me := decode[api.Me](t, w)
	if me.Customer.ID != "C1001" || me.Customer.Name != "Huadong Steel Works" {
		t.Errorf("customer %+v", me.Customer)
	}
	if len(me.MeteringPoints) != 1 || me.MeteringPoints[0].ID != "MP-1001-1" {
		t.Errorf("metering points %+v", me.MeteringPoints)
	}
	if me.Certificate.Serial != pki.SerialHex(e.alice.SerialNumber) || me.Certificate.TokenSerial != aliceToken ||
		!me.Certificate.NotAfter.Equal(e.alice.NotAfter) {
		t.Errorf("certificate %+v", me.Certificate)
	}
	// Alice has one bill 50 days overdue and one 6 days overdue.
	if len(me.Alerts) != 2 || me.Alerts[0].Level != api.AlertCritical || me.Alerts[0].BillID != "B-1001-2026-09" ||
		me.Alerts[1].Level != api.AlertWarning || me.Alerts[1].BillID != "B-1001-2026-10" {
		t.Errorf("alerts %+v", me.Alerts)
	}
	if me.Prepaid == nil || me.Prepaid.Balance != 1234_56 {
		t.Errorf("prepaid %+v", me.Prepaid)
	}
	// Bob's only bill is due in 4 days: an info alert, and his own data only.
	w = e.get(api.PathMe, e.bob)
	wantOK(t, w)
	me = decode[api.Me](t, w)
	if me.Customer.ID != "C2002" || len(me.MeteringPoints) != 1 || me.MeteringPoints[0].CustomerID != "C2002" {
		t.Errorf("bob sees %+v", me)
	}
	if len(me.Alerts) != 1 || me.Alerts[0].Level != api.AlertInfo || !strings.Contains(me.Alerts[0].Message, "in 4 days") {
		t.Errorf("bob's alerts %+v", me.Alerts)
	}
	if me.Prepaid != nil {
		t.Errorf("bob has no prepaid account, got %+v", me.Prepaid)
	}
}

func TestConsumption(t *testing.T) {
	e := newEnv(t)
	w := e.get(api.PathConsumption+"?from=2026-03&to=2026-05", e.alice)
	wantOK(t, w)
	l := decode[api.ConsumptionList](t, w)
	if l.From != "2026-03" || l.To != "2026-05" || len(l.Items) != 3 || l.Items[0].Period != "2026-03" {
		t.Errorf("consumption %+v", l)
	}
	// Default: the last twelve months, this one (2026-11) included.
	w = e.get(api.PathConsumption, e.alice)
	wantOK(t, w)
	l = decode[api.ConsumptionList](t, w)
	if l.From != "2025-12" || l.To != "2026-11" || len(l.Items) != 10 {
		t.Errorf("default range %s..%s with %d items", l.From, l.To, len(l.Items))
	}
	// Nothing recorded is an empty list, not null.
	w = e.get(api.PathConsumption, e.bob)
	wantOK(t, w)
	if !strings.Contains(w.Body.String(), `"items":[]`) {
		t.Errorf("empty consumption: %s", w.Body)
	}
}

func TestBills(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"B-1001-2026-09", "B-1001-2026-10", "B-1001-2026-08"}},
		{"?status=all", []string{"B-1001-2026-09", "B-1001-2026-10", "B-1001-2026-08"}},
		{"?status=unpaid", []string{"B-1001-2026-09", "B-1001-2026-10"}},
		{"?status=unpaid&from=2026-10&to=2026-12", []string{"B-1001-2026-10"}},
		{"?to=2026-08", []string{"B-1001-2026-08"}},
	} {
		w := e.get(api.PathBills+tc.query, e.alice)
		wantOK(t, w)
		l := decode[api.BillList](t, w)
		var ids []string
		for _, b := range l.Items {
			ids = append(ids, b.ID)
		}
		if fmt.Sprint(ids) != fmt.Sprint(tc.want) {
			t.Errorf("bills%s = %v, want %v", tc.query, ids, tc.want)
		}
	}
	w := e.get(api.PathBill+"B-1001-2026-10", e.alice)
	wantOK(t, w)
	b := decode[platform.Bill](t, w)
	if b.ID != "B-1001-2026-10" || b.AmountDue != 100_120_00 || b.CustomerID != "C1001" {
		t.Errorf("bill %+v", b)
	}
}

// A bill of another customer is answered exactly like one that does not
// exist: same status, same body but for the request ID, both audited.
func TestAnotherCustomersBillIsNotFound(t *testing.T) {
	e := newEnv(t)
	other := e.get(api.PathBill+"B-2002-2026-10", e.alice)
	missing := e.get(api.PathBill+"B-9999-2026-10", e.alice)
	eo := wantError(t, other, http.StatusNotFound, api.CodeNotFound)
	em := wantError(t, missing, http.StatusNotFound, api.CodeNotFound)
	strip := func(w *httptest.ResponseRecorder, id string) string {
		return strings.Replace(w.Body.String(), id, "", 1)
	}
	if a, b := strip(other, eo.RequestID), strip(missing, em.RequestID); a != b {
		t.Errorf("bodies differ:\n%s\n%s", a, b)
	}
	if other.Header().Get("Content-Length") != missing.Header().Get("Content-Length") {
		t.Error("content lengths differ")
	}
	if len(e.aud.refusals(api.CodeNotFound)) != 2 {
		t.Errorf("audit: %+v", e.aud.records())
	}
	// And Bob does see his own bill.
	wantOK(t, e.get(api.PathBill+"B-2002-2026-10", e.bob))
}

func TestArrears(t *testing.T) {
	e := newEnv(t)
	w := e.get(api.PathArrears, e.alice)
	wantOK(t, w)
	a := decode[api.ArrearsSummary](t, w)
	if a.CustomerID != "C1001" || a.OverdueBills != 2 || a.Total != 201_120_00 || a.LateFees != 1_120_00 || a.OldestDueDate != "2026-10-02" {
		t.Errorf("arrears %+v", a.Arrears)
	}
	if len(a.Alerts) != 2 || a.Alerts[0].Level != api.AlertCritical {
		t.Errorf("alerts %+v", a.Alerts)
	}
	w = e.get(api.PathArrears, e.bob)
	wantOK(t, w)
	if !strings.Contains(w.Body.String(), `"bills":[]`) || !strings.Contains(w.Body.String(), `"alerts":[]`) {
		t.Errorf("no arrears should be empty lists: %s", w.Body)
	}
}

func TestPayments(t *testing.T) {
	e := newEnv(t)
	for q, n := range map[string]int{"": 1, "?from=2026-09-01&to=2026-09-30": 1, "?from=2026-09-11": 0, "?to=2026-09-09": 0} {
		w := e.get(api.PathPayments+q, e.alice)
		wantOK(t, w)
		if l := decode[api.PaymentList](t, w); len(l.Items) != n {
			t.Errorf("payments%s: %d items, want %d", q, len(l.Items), n)
		}
	}
}

func TestPINFailuresAreAudited(t *testing.T) {
	e := newEnv(t)
	body := `{"failures":[{"at":"2026-11-21T01:00:00Z","count":1,"locked":false,"hostname":"desk-7"},
		{"at":"2026-11-21T01:01:00Z","count":2,"locked":false}]}`
	w := e.do(http.MethodPost, api.PathPINFailures, []byte(body), e.alice)
	if w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Fatalf("status %d body %q", w.Code, w.Body)
	}
	var got []store.AuditRecord
	for _, r := range e.aud.records() {
		if r.Action == actionPINFailure {
			got = append(got, r)
		}
	}
	if len(got) != 2 {
		t.Fatalf("audit %+v", e.aud.records())
	}
	r := got[1]
	if r.Subject != aliceToken || r.Outcome != store.OutcomeRefused || r.Detail["customer_id"] != "C1001" ||
		r.Detail["count"] != 2 || r.Detail["at"] != "2026-11-21T01:01:00Z" || r.Detail["cert_serial"] != pki.SerialHex(e.alice.SerialNumber) {
		t.Errorf("entry %+v", r)
	}
	if got[0].Detail["hostname"] != "desk-7" {
		t.Errorf("entry %+v", got[0])
	}
}

func TestParameterValidation(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		path  string
		param string // the message must name it
	}{
		{api.PathConsumption + "?from=2026-13", "from"},
		{api.PathConsumption + "?from=2026-1", "from"},
		{api.PathConsumption + "?to=last", "to"},
		{api.PathConsumption + "?from=2026-06&to=2026-05", "from"},
		{api.PathConsumption + "?from=2020-01&to=2026-01", "from"}, // 73 months
		{api.PathConsumption + "?from=2026-01&from=2026-02", "from"},
		{api.PathConsumption + "?customer=C2002", "customer"},
		{api.PathBills + "?status=open", "status"},
		{api.PathBills + "?from=2026-10&to=2026-09", "from"},
		{api.PathBills + "?customer_id=C2002", "customer_id"},
		{api.PathPayments + "?from=2026-9-1", "from"},
		{api.PathPayments + "?from=2026-10-01&to=2026-09-01", "from"},
		{api.PathMe + "?id=C2002", "id"},
		{api.PathBill + "B%201", "id"},
		{api.PathBill, "id"},
		{api.PathBill + strings.Repeat("B", 65), "id"},
		{api.PathArrears + "?a=%zz", "query"},
	} {
		w := e.get(tc.path, e.alice)
		msg := wantError(t, w, http.StatusBadRequest, api.CodeInvalidRequest).Message
		if !strings.Contains(msg, `"`+tc.param+`"`) {
			t.Errorf("%s: message %q does not name %q", tc.path, msg, tc.param)
		}
	}
	if n := len(e.aud.refusals(api.CodeInvalidRequest)); n != 17 {
		t.Errorf("%d invalid requests audited, want 17", n)
	}
	// 36 months is allowed.
	wantOK(t, e.get(api.PathConsumption+"?from=2024-01&to=2026-12", e.alice))
}

func TestBodyLimitsAndStrictJSON(t *testing.T) {
	e := newEnv(t)
	big := []byte(`{"failures":[{"at":"2026-11-21T01:00:00Z","count":1,"hostname":"` + strings.Repeat("x", api.MaxBodyBytes) + `"}]}`)
	wantError(t, e.do(http.MethodPost, api.PathPINFailures, big, e.alice), http.StatusRequestEntityTooLarge, api.CodePayloadTooLarge)

	// Without a Content-Length (chunked), the limit is enforced while reading.
	r := httptest.NewRequest(http.MethodPost, api.PathPINFailures, bytes.NewReader(big))
	r.ContentLength = -1
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{e.alice}}
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, r)
	wantError(t, w, http.StatusRequestEntityTooLarge, api.CodePayloadTooLarge)
	if n := len(e.aud.refusals(api.CodePayloadTooLarge)); n != 2 {
		t.Errorf("%d oversize bodies audited, want 2", n)
	}

	for name, body := range map[string]string{
		"syntax":        `{"failures":[{"at":`,
		"not JSON":      `hello`,
		"empty":         ``,
		"unknown field": `{"failures":[{"at":"2026-11-21T01:00:00Z","count":1,"pin":"123456"}]}`,
		"wrong type":    `{"failures":[{"at":"2026-11-21T01:00:00Z","count":"one"}]}`,
		"trailing data": `{"failures":[{"at":"2026-11-21T01:00:00Z","count":1}]} {}`,
		"no failures":   `{"failures":[]}`,
		"zero count":    `{"failures":[{"at":"2026-11-21T01:00:00Z","count":0}]}`,
		"no time":       `{"failures":[{"count":1}]}`,
		"future":        `{"failures":[{"at":"2027-01-01T00:00:00Z","count":1}]}`,
		"control chars": `{"failures":[{"at":"2026-11-21T01:00:00Z","count":1,"hostname":"a\u0000b"}]}`,
	} {
		w := e.do(http.MethodPost, api.PathPINFailures, []byte(body), e.alice)
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d %s", name, w.Code, w.Body)
			continue
		}
		msg := wantError(t, w, http.StatusBadRequest, api.CodeInvalidRequest).Message
		if strings.Contains(msg, "123456") {
			t.Errorf("%s: the message echoes the body: %q", name, msg)
		}
	}
	r = httptest.NewRequest(http.MethodPost, api.PathPINFailures, strings.NewReader(`{"failures":[]}`))
	r.Header.Set("Content-Type", "text/plain")
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{e.alice}}
	w = httptest.NewRecorder()
	e.srv.ServeHTTP(w, r)
	if msg := wantError(t, w, http.StatusBadRequest, api.CodeInvalidRequest).Message; !strings.Contains(msg, "Content-Type") {
		t.Errorf("message %q", msg)
	}
	for _, rec := range e.aud.records() {
		if rec.Action == actionPINFailure {
			t.Errorf("a refused report was recorded: %+v", rec)
		}
	}
}

func TestRateLimitThenRecovery(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RatePerSecond, o.RateBurst = 1, 2 })
	wantOK(t, e.get(api.PathHealth, e.alice))
	wantOK(t, e.get(api.PathHealth, e.alice))
	w := e.get(api.PathMe, e.alice)
	wantError(t, w, http.StatusTooManyRequests, api.CodeRateLimited)
	if ra := w.Header().Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q", ra)
	}
	// Still over: refused, but audited once a minute only.
	wantError(t, e.get(api.PathMe, e.alice), http.StatusTooManyRequests, api.CodeRateLimited)
	if got := e.aud.refusals(api.CodeRateLimited); len(got) != 1 || got[0].Subject != pki.SerialHex(e.alice.SerialNumber) {
		t.Errorf("rate_limited audit %+v", got)
	}
	// Another key is not affected.
	wantOK(t, e.get(api.PathMe, e.bob))
	// A second later there is a token again.
	e.clock.advance(time.Second)
	wantOK(t, e.get(api.PathMe, e.alice))
	wantError(t, e.get(api.PathMe, e.alice), http.StatusTooManyRequests, api.CodeRateLimited)
	if n := len(e.aud.refusals(api.CodeRateLimited)); n != 1 {
		t.Errorf("audited %d times within the minute", n)
	}
	e.clock.advance(time.Minute)
	wantOK(t, e.get(api.PathMe, e.alice))
	wantOK(t, e.get(api.PathMe, e.alice))
	wantError(t, e.get(api.PathMe, e.alice), http.StatusTooManyRequests, api.CodeRateLimited)
	if n := len(e.aud.refusals(api.CodeRateLimited)); n != 2 {
		t.Errorf("a minute later: audited %d times, want 2", n)
	}
}

func TestPlatformDownThenRecovery(t *testing.T) {
	e := newEnv(t)
	e.plat.down.Store(true)
	for _, p := range []string{api.PathMe, api.PathConsumption, api.PathBills, api.PathBill + "B-1001-2026-10", api.PathArrears, api.PathPayments} {
		msg := wantError(t, e.get(p, e.alice), http.StatusServiceUnavailable, api.CodeUnavailable).Message
		if !strings.HasPrefix(msg, "service unavailable") {
			t.Errorf("%s: message %q", p, msg)
		}
	}
	w := e.get(api.PathHealth, e.alice)
	wantOK(t, w)
	if h := decode[api.Health](t, w); h.Status != "degraded" || h.Platform != "unavailable" {
		t.Errorf("health while down: %+v", h)
	}
	e.plat.down.Store(false)
	wantOK(t, e.get(api.PathMe, e.alice))
	w = e.get(api.PathHealth, e.alice)
	if h := decode[api.Health](t, w); h.Status != "ok" {
		t.Errorf("health after recovery: %+v", h)
	}
	if n := len(e.aud.records()); n != 0 {
		t.Errorf("the platform being down is not a refusal, yet %d audit entries", n)
	}
}

func TestRequestTimeout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.RequestTimeout = 50 * time.Millisecond })
	e.plat.block.Store(true)
	start := time.Now()
	wantError(t, e.get(api.PathBills, e.alice), http.StatusServiceUnavailable, api.CodeUnavailable)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %s", took)
	}
}

func TestCertificateRefusals(t *testing.T) {
	e := newEnv(t)
	serial := func(c *x509.Certificate) string { return pki.SerialHex(c.SerialNumber) }
	refused := func(id pki.Identity, err error) *x509.Certificate {
		c := newTestCert(t, "C3003")
		e.ver.set(c, id, err)
		e.bind.bind(c, "C3003", "T3003")
		return c
	}
	customer := pki.Identity{Kind: pki.KindCustomer, CustomerID: "C3003", TokenSerial: "T3003"}
	foreign := newTestCert(t, "C1001") // the fake verifier knows nothing of it: unknown CA
	revoked := refused(pki.Identity{}, &pki.VerifyError{Err: pki.ErrRevoked, Detail: "revoked at 2026-11-01T00:00:00Z, reason: key compromise"})
	expired := refused(pki.Identity{}, &pki.VerifyError{Err: pki.ErrExpired, Detail: "expired at 2026-01-01T00:00:00Z"})
	early := refused(pki.Identity{}, &pki.VerifyError{Err: pki.ErrNotYetValid})
	invalid := refused(pki.Identity{}, &pki.VerifyError{Err: pki.ErrBadCertificate, Detail: "no GridPay identity"})
	service := refused(pki.Identity{Kind: pki.KindService, Service: "worker"}, nil)
	stale := refused(pki.Identity{}, &pki.VerifyError{Err: pki.ErrCRLStale})
	unbound := newTestCert(t, "C3003")
	e.ver.set(unbound, customer, nil)
	// Bound, but the binding is for another token than the certificate names.
	mismatch := newTestCert(t, "C3003")
	e.ver.set(mismatch, customer, nil)
	e.bind.bind(mismatch, "C3003", "OTHER")

	for _, tc := range []struct {
		name   string
		cert   *x509.Certificate
		status int
		code   string
		words  string // the message must say this
	}{
		{"no certificate", nil, http.StatusUnauthorized, api.CodeNoCertificate, "USB key"},
		{"another CA", foreign, http.StatusUnauthorized, api.CodeUnknownCA, "not issued by a trusted GridPay CA"},
		{"revoked", revoked, http.StatusUnauthorized, api.CodeCertRevoked, "revoked"},
		{"expired", expired, http.StatusUnauthorized, api.CodeCertExpired, "expired"},
		{"not yet valid", early, http.StatusUnauthorized, api.CodeCertExpired, "not valid yet"},
		{"wrong profile", invalid, http.StatusUnauthorized, api.CodeCertInvalid, "GridPay profile"},
		{"service certificate", service, http.StatusUnauthorized, api.CodeUnknownCA, "customer CA"},
		{"stale CRL", stale, http.StatusServiceUnavailable, api.CodeUnavailable, "service unavailable"},
		{"unbound", unbound, http.StatusForbidden, api.CodeNotBound, "not bound"},
		{"binding of another token", mismatch, http.StatusForbidden, api.CodeNotBound, "not bound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.aud.refusals(tc.code))
			w := e.get(api.PathMe, tc.cert)
			msg := wantError(t, w, tc.status, tc.code).Message
			if !strings.Contains(msg, tc.words) {
				t.Errorf("message %q does not say %q", msg, tc.words)
			}
			got := e.aud.refusals(tc.code)
			if len(got) != before+1 {
				t.Fatalf("not audited: %+v", e.aud.records())
			}
			rec := got[len(got)-1]
			if rec.Actor != "gateway" || rec.Outcome != store.OutcomeRefused || rec.Detail["reason"] == "" || rec.Detail["remote"] == "" {
				t.Errorf("audit entry %+v", rec)
			}
			wantSubject := "192.0.2.1:1234" // httptest's remote address
			if tc.cert != nil {
				wantSubject = serial(tc.cert)
			}
			if rec.Subject != wantSubject {
				t.Errorf("subject %q, want %q", rec.Subject, wantSubject)
			}
			if tc.code == api.CodeNotBound && (rec.Detail["customer_id"] != "C3003" || rec.Detail["token_serial"] != "T3003") {
				t.Errorf("the refusal of a verified certificate should name its customer: %+v", rec.Detail)
			}
		})
	}
	// Health needs a verified certificate but no binding.
	wantOK(t, e.get(api.PathHealth, unbound))
	wantError(t, e.get(api.PathHealth, revoked), http.StatusUnauthorized, api.CodeCertRevoked)
}

// A key unbound while it is logged in is refused at its next request.
func TestUnbindingTakesEffectAtTheNextRequest(t *testing.T) {
	e := newEnv(t)
	wantOK(t, e.get(api.PathMe, e.alice))
	e.bind.unbind(e.alice)
	wantError(t, e.get(api.PathMe, e.alice), http.StatusForbidden, api.CodeNotBound)
}

func TestBindingLookupFailureIsUnavailable(t *testing.T) {
	e := newEnv(t)
	e.bind.err = errors.New("connection refused")
	wantError(t, e.get(api.PathMe, e.alice), http.StatusServiceUnavailable, api.CodeUnavailable)
	if n := len(e.aud.records()); n != 0 {
		t.Errorf("%d audit entries for our own failure", n)
	}
}

func TestRouting(t *testing.T) {
	e := newEnv(t)
	wantError(t, e.get("/v1/nothing", e.alice), http.StatusNotFound, api.CodeNotFound)
	wantError(t, e.get("/", e.alice), http.StatusNotFound, api.CodeNotFound)
	wantError(t, e.get(api.PathBill+"B-1/extra", e.alice), http.StatusNotFound, api.CodeNotFound)
	wantError(t, e.get("/v2/me", e.alice), http.StatusNotFound, api.CodeUnsupportedVersion)
	w := e.do(http.MethodPost, api.PathMe, []byte(`{}`), e.alice)
	wantError(t, w, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed)
	if w.Header().Get("Allow") != http.MethodGet {
		t.Errorf("Allow %q", w.Header().Get("Allow"))
	}
	w = e.get(api.PathPINFailures, e.alice)
	wantError(t, w, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed)
	if w.Header().Get("Allow") != http.MethodPost {
		t.Errorf("Allow %q", w.Header().Get("Allow"))
	}
	// Nothing, not even "no such path", without a certificate.
	wantError(t, e.get("/v1/nothing", nil), http.StatusUnauthorized, api.CodeNoCertificate)
	// Routing answers are not audited.
	if n := len(e.aud.records()); n != 1 {
		t.Errorf("%d audit entries, want only the no_certificate one: %+v", n, e.aud.records())
	}
}

// The gateway does not pass on another customer's data even if the
// platform answers it.
func TestForeignDataIsWithheld(t *testing.T) {
	e := newEnv(t)
	e.plat.leak.Store(true)
	w := e.get(api.PathBills, e.alice)
	wantError(t, w, http.StatusInternalServerError, api.CodeInternal)
	if strings.Contains(w.Body.String(), "C2002") || strings.Contains(w.Body.String(), "B-2002") {
		t.Errorf("leaked: %s", w.Body)
	}
	wantError(t, e.get(api.PathMe, e.alice), http.StatusInternalServerError, api.CodeInternal)
}

type panickyPlatform struct{ *fakePlatform }

func (panickyPlatform) Arrears(context.Context, string) (platform.Arrears, error) { panic("boom") }

func TestPanicIsAnInternalError(t *testing.T) {
	e := newEnv(t)
	e.srv.platform = panickyPlatform{e.plat}
	wantError(t, e.get(api.PathArrears, e.alice), http.StatusInternalServerError, api.CodeInternal)
	wantOK(t, e.get(api.PathBills, e.alice))
}

func TestCheckBillID(t *testing.T) {
	for id, ok := range map[string]bool{"B-1001-2026-10": true, "b_1.2": true, "": false, "a b": false, "é": false, "x/y": false, strings.Repeat("a", 64): true, strings.Repeat("a", 65): false} {
		if err := checkBillID(id); (err == nil) != ok {
			t.Errorf("checkBillID(%q) = %v", id, err)
		}
	}
}

func TestClip(t *testing.T) {
	if got := clip("日本語", 4); got != "日…" {
		t.Errorf("clip cut a rune: %q", got)
	}
	if got := clip("a\x00b\xff", 10); got != "a\uFFFDb\uFFFD" {
		t.Errorf("clip kept NUL or bad UTF-8: %q", got)
	}
}

// An audit log that cannot be written does not change a refusal, and makes
// a PIN-failure report fail so that the client sends it again.
func TestAuditFailure(t *testing.T) {
	e := newEnv(t)
	e.aud.fail(errors.New("database down"))
	wantError(t, e.get(api.PathBill+"B-9", e.alice), http.StatusNotFound, api.CodeNotFound)
	wantError(t, e.get(api.PathMe, nil), http.StatusUnauthorized, api.CodeNoCertificate)
	body := `{"failures":[{"at":"2026-11-21T01:00:00Z","count":1}]}`
	wantError(t, e.do(http.MethodPost, api.PathPINFailures, []byte(body), e.alice), http.StatusServiceUnavailable, api.CodeUnavailable)
	e.aud.fail(nil)
	if w := e.do(http.MethodPost, api.PathPINFailures, []byte(body), e.alice); w.Code != http.StatusNoContent {
		t.Errorf("after recovery: %d %s", w.Code, w.Body)
	}
}

//go:build integration

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/internal/app"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/internal/testenv"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/store"
)

// A customer with a USB key (its key on a SoftHSM2 token) reads everything
// over mutual TLS 1.3, the server key being in the HSM too.
func TestQueriesWithAUSBKey(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.usbKey("C1001")
	tc := alice.tlsCert(s)
	c := s.client(&tc)

	var me api.Me
	if st := getJSON(t, c, s.url(api.PathMe), &me); st != http.StatusOK {
		t.Fatalf("me: %d %+v", st, me)
	}
	if me.Customer.ID != "C1001" || me.Certificate.TokenSerial != alice.token || me.Certificate.Serial != serialOf(alice.cert) ||
		len(me.Alerts) != 2 || me.Alerts[0].Level != api.AlertCritical {
		t.Errorf("me %+v", me)
	}
	var h api.Health
	if st := getJSON(t, c, s.url(api.PathHealth), &h); st != http.StatusOK || h.Status != "ok" {
		t.Errorf("health %d %+v", st, h)
	}
	var cons api.ConsumptionList
	if st := getJSON(t, c, s.url(api.PathConsumption+"?from=2026-01&to=2026-06"), &cons); st != http.StatusOK || len(cons.Items) != 6 {
		t.Errorf("consumption %d %+v", st, cons)
	}
	var bills api.BillList
	if st := getJSON(t, c, s.url(api.PathBills+"?status=unpaid"), &bills); st != http.StatusOK || len(bills.Items) != 2 {
		t.Errorf("bills %d %+v", st, bills)
	}
	var bill platform.Bill
	if st := getJSON(t, c, s.url(api.PathBill+"B-1001-2026-10"), &bill); st != http.StatusOK || bill.AmountDue != 100_120_00 {
		t.Errorf("bill %d %+v", st, bill)
	}
	var other, missing api.ErrorBody
	if st := getJSON(t, c, s.url(api.PathBill+"B-2002-2026-10"), &other); st != http.StatusNotFound || other.Error.Code != api.CodeNotFound {
		t.Errorf("another customer's bill: %d %+v", st, other)
	}
	if st := getJSON(t, c, s.url(api.PathBill+"B-0000-0000-00"), &missing); st != http.StatusNotFound || missing.Error.Message != other.Error.Message {
		t.Errorf("a missing bill: %d %+v vs %+v", st, missing, other)
	}
	var arrears api.ArrearsSummary
	if st := getJSON(t, c, s.url(api.PathArrears), &arrears); st != http.StatusOK || arrears.OverdueBills != 2 || len(arrears.Alerts) != 2 {
		t.Errorf("arrears %d %+v", st, arrears)
	}
	var pays api.PaymentList
	if st := getJSON(t, c, s.url(api.PathPayments+"?from=2026-01-01"), &pays); st != http.StatusOK || len(pays.Items) != 1 {
		t.Errorf("payments %d %+v", st, pays)
	}

	// Wrong PINs reported at login go to the audit log.
	resp, err := c.Post(s.url(api.PathPINFailures), "application/json",
		strings.NewReader(`{"failures":[{"at":"`+time.Now().UTC().Format(time.RFC3339)+`","count":3,"locked":false,"hostname":"desk"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("pin failures: %d", resp.StatusCode)
	}
	var n int
	if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = $1 AND subject = $2 AND detail->>'customer_id' = 'C1001'`,
		actionPINFailure, alice.token).Scan(&n); err != nil || n != 1 {
		t.Errorf("pin failure entries: %d %v", n, err)
	}

	// Oversize and malformed bodies are refused and audited.
	resp, err = c.Post(s.url(api.PathPINFailures), "application/json", bytes.NewReader(make([]byte, api.MaxBodyBytes+1)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize: %d", resp.StatusCode)
	}
	resp, err = c.Post(s.url(api.PathPINFailures), "application/json", strings.NewReader(`{"failures":`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed: %d", resp.StatusCode)
	}
	for _, code := range []string{api.CodePayloadTooLarge, api.CodeInvalidRequest, api.CodeNotFound} {
		if d := s.refusals(code)[serialOf(alice.cert)]; d == nil || d["customer_id"] != "C1001" {
			t.Errorf("%s not audited: %v", code, s.refusals(code))
		}
	}

	// The platform goes down and comes back: no restart needed.
	s.plat.down.Store(true)
	var down api.ErrorBody
	if st := getJSON(t, c, s.url(api.PathBills), &down); st != http.StatusServiceUnavailable || down.Error.Code != api.CodeUnavailable ||
		!strings.HasPrefix(down.Error.Message, "service unavailable") {
		t.Errorf("platform down: %d %+v", st, down)
	}
	s.plat.down.Store(false)
	if st := getJSON(t, c, s.url(api.PathBills), &bills); st != http.StatusOK {
		t.Errorf("platform back: %d", st)
	}

	rep, err := s.db.VerifyAudit(context.Background())
	if err != nil || !rep.OK() {
		t.Errorf("audit log does not verify: %+v %v", rep, err)
	}
}

// reused records whether the next request went over a connection already
// open.
func reused(ctx context.Context, out *bool) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { *out = i.Reused }})
}

func getOn(t *testing.T, c *http.Client, url string, wasReused *bool) (int, api.ErrorBody) {
	t.Helper()
	req, _ := http.NewRequestWithContext(reused(context.Background(), wasReused), http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb api.ErrorBody
	if resp.StatusCode != http.StatusOK {
		_ = json.NewDecoder(resp.Body).Decode(&eb)
	}
	// Read to the end so the connection can serve the next request.
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, eb
}

// A certificate revoked while its connection is open is refused at a
// request soon after, once the gateway has the new CRL (crl_refresh).
func TestRevokedCertificateIsRefused(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.usbKey("C1001")
	tc := alice.tlsCert(s)
	c := s.client(&tc)
	var r bool
	if st, eb := getOn(t, c, s.url(api.PathMe), &r); st != http.StatusOK {
		t.Fatalf("before: %d %+v", st, eb)
	}
	if _, err := s.ca.Revoke(context.Background(), authority.SerialHex(alice.cert), pki.ReasonKeyCompromise, "test", "USB key reported lost"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var st int
	var eb api.ErrorBody
	for time.Now().Before(deadline) {
		if st, eb = getOn(t, c, s.url(api.PathMe), &r); st != http.StatusOK {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st != http.StatusUnauthorized || eb.Error.Code != api.CodeCertRevoked || !strings.Contains(eb.Error.Message, "key compromise") {
		t.Fatalf("after revocation: %d %+v", st, eb)
	}
	if !r {
		t.Error("the refusal came on a new connection; it should come on the one already open")
	}
	if d := s.refusals(api.CodeCertRevoked)[serialOf(alice.cert)]; d == nil || !strings.Contains(d["reason"].(string), "revoked") {
		t.Errorf("revocation refusal not audited: %v", s.refusals(api.CodeCertRevoked))
	}
}

// A key unbound while its connection is open is refused at its very next
// request on that connection.
func TestUnboundKeyIsRefusedOnItsOpenConnection(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.usbKey("C1001")
	tc := alice.tlsCert(s)
	c := s.client(&tc)
	var r bool
	if st, eb := getOn(t, c, s.url(api.PathBills), &r); st != http.StatusOK {
		t.Fatalf("before: %d %+v", st, eb)
	}
	if _, err := store.DeactivateBinding(context.Background(), s.db, alice.binding.ID, "returned", time.Now()); err != nil {
		t.Fatal(err)
	}
	st, eb := getOn(t, c, s.url(api.PathBills), &r)
	if st != http.StatusForbidden || eb.Error.Code != api.CodeNotBound {
		t.Fatalf("after unbinding: %d %+v", st, eb)
	}
	if !r {
		t.Error("not the same connection")
	}
	if d := s.refusals(api.CodeNotBound)[serialOf(alice.cert)]; d == nil || d["token_serial"] != alice.token {
		t.Errorf("not_bound refusal not audited: %v", s.refusals(api.CodeNotBound))
	}
}

// A certificate from another CA, even naming a real customer, is refused
// with unknown_ca.
func TestCertificateFromAnotherCAIsRefused(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.usbKey("C1001") // the real C1001, bound
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	rootKey, custKey, leafKey := key(), key(), key()
	rootCert, err := pki.NewRoot(rootKey, pki.RootOptions{CommonName: "Impostor Root CA", Organization: "Impostor"})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := pki.NewCA(rootCert, rootKey)
	custCert, err := pki.NewIssuing(root, custKey.Public(), pki.IssuingOptions{CommonName: "Impostor Customer CA", Role: pki.RoleCustomer})
	if err != nil {
		t.Fatal(err)
	}
	cust, _ := pki.NewCA(custCert, custKey)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, leafKey)
	leaf, err := cust.IssueCustomer(csr, pki.CustomerRequest{CustomerID: "C1001", TokenSerial: "FAKE0001"})
	if err != nil {
		t.Fatal(err)
	}
	c := s.client(&tls.Certificate{Certificate: [][]byte{leaf.Raw, custCert.Raw}, PrivateKey: leafKey})
	var eb api.ErrorBody
	if st := getJSON(t, c, s.url(api.PathMe), &eb); st != http.StatusUnauthorized || eb.Error.Code != api.CodeUnknownCA {
		t.Fatalf("%d %+v", st, eb)
	}
	if d := s.refusals(api.CodeUnknownCA)[serialOf(leaf)]; d == nil {
		t.Errorf("not audited: %v", s.refusals(api.CodeUnknownCA))
	}
}

// A certificate past its validity is refused with certificate_expired.
// The certificate is issued for a minute (pki's shortest) and the
// gateway's clock moved two minutes on.
func TestExpiredCertificateIsRefused(t *testing.T) {
	s := newStack(t, stackOptions{})
	opts := app.AuthorityOptions(s.cfg.PKI)
	opts.CustomerValidity = time.Minute
	shortLived, err := authority.Open(context.Background(), s.ca.Keys(), s.db, opts)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bob := s.enrol(shortLived, "C2002", "B0B000002", k)
	tc := bob.tlsCert(s)
	c := s.client(&tc)
	var me api.Me
	if st := getJSON(t, c, s.url(api.PathMe), &me); st != http.StatusOK {
		t.Fatalf("while valid: %d", st)
	}
	s.offset.Store(int64(2 * time.Minute))
	var eb api.ErrorBody
	if st := getJSON(t, c, s.url(api.PathMe), &eb); st != http.StatusUnauthorized || eb.Error.Code != api.CodeCertExpired {
		t.Fatalf("expired: %d %+v", st, eb)
	}
	if d := s.refusals(api.CodeCertExpired)[serialOf(bob.cert)]; d == nil {
		t.Errorf("not audited: %v", s.refusals(api.CodeCertExpired))
	}
}

// No client certificate: the handshake is refused, and audited.
func TestNoCertificateIsRefusedAtTheHandshake(t *testing.T) {
	s := newStack(t, stackOptions{})
	_, err := s.client(nil).Get(s.url(api.PathHealth))
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("without a certificate: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(s.refusals(api.CodeNoCertificate)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for subject, d := range s.refusals(api.CodeNoCertificate) {
		if !strings.HasPrefix(subject, "127.0.0.1:") || d["stage"] != "tls handshake" {
			t.Errorf("%s: %v", subject, d)
		}
		return
	}
	t.Error("not audited")
}

// The gateway refuses to start on an older schema and without a CA.
func TestRefusesToStartWithoutSchemaOrCA(t *testing.T) {
	ctx := context.Background()
	soft := testenv.SoftHSMForTest(t)
	tok := soft.NewTestToken(t, "gateway-bare")
	t.Setenv("GRIDPAY_TEST_BARE_PIN", tok.UserPIN)
	cfg := config.DefaultGateway()
	cfg.Database.DSN = testenv.NewDatabase(t)
	cfg.HSM.Module, cfg.HSM.TokenLabel, cfg.HSM.PIN = soft.ModulePath(), tok.Label, config.Secret{Env: "GRIDPAY_TEST_BARE_PIN"}
	cfg.Listen = "127.0.0.1:0"
	hk := hooks{platform: func(context.Context, config.Gateway, authority.Keys, *authority.Trust) (platform.Service, error) {
		return newFakePlatform(), nil
	}}

	err := runGateway(ctx, cfg, zaptest.NewLogger(t), hk)
	if !errors.Is(err, store.ErrSchemaBehind) || cli.ExitCode(err) != cli.ExitUnavailable {
		t.Errorf("unmigrated database: %v (exit %d)", err, cli.ExitCode(err))
	}
	db, err := app.OpenDB(ctx, cfg.Database, "test", false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	err = runGateway(ctx, cfg, zaptest.NewLogger(t), hk)
	if !errors.Is(err, authority.ErrNotInitialised) || cli.ExitCode(err) != cli.ExitNotFound {
		t.Errorf("no CA: %v (exit %d)", err, cli.ExitCode(err))
	}
}

// The gateway reaches the platform with the real client (mutual TLS, its
// service certificate and key in the HSM). The platform goes away and
// comes back on the same address; the gateway follows without a restart.
func TestRealPlatformClient(t *testing.T) {
	// The platform's own TLS identity comes from the company's PKI, not
	// GridPay's.
	platKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "platform"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	platDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, platKey.Public(), platKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "platform-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: platDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	platAddr := ln.Addr().String()

	s := newStack(t, stackOptions{platform: func(c *config.Gateway) {
		c.Platform.URL, c.Platform.CAFile = "https://"+platAddr, caFile
	}})

	var client, requestID atomic.Value
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client.Store(r.TLS.PeerCertificates[0].Subject.String())
		requestID.Store(r.Header.Get(platform.RequestIDHeader))
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/v1/customers/C1001" {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(platform.ErrorBody{Error: &platform.Error{Code: platform.CodeUnknownCustomer, Message: "no such customer"}})
			return
		}
		_ = json.NewEncoder(w).Encode(platform.Customer{ID: "C1001", Name: "Huadong Steel Works"})
	})
	services := x509.NewCertPool()
	services.AddCert(s.ca.Services.Cert)
	serve := func(ln net.Listener) *http.Server {
		srv := &http.Server{Handler: handler, TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{platDER}, PrivateKey: platKey}},
			ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: services,
		}}
		go srv.ServeTLS(ln, "", "")
		return srv
	}
	platSrv := serve(ln)

	alice := s.usbKey("C1001")
	tc := alice.tlsCert(s)
	c := s.client(&tc)
	health := func() (api.Health, string) {
		t.Helper()
		resp, err := c.Get(s.url(api.PathHealth))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h api.Health
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("health: %d %v", resp.StatusCode, err)
		}
		return h, resp.Header.Get("X-Request-ID")
	}
	h, id := health()
	if h.Platform != "ok" {
		t.Fatalf("health with the platform up: %+v", h)
	}
	if got, _ := client.Load().(string); !strings.Contains(got, "CN=gateway") || !strings.Contains(got, "OU=Service") {
		t.Errorf("the platform saw client %q, want the gateway's service certificate", got)
	}
	if got, _ := requestID.Load().(string); got != id {
		t.Errorf("the platform saw request ID %q, the client %q", got, id)
	}

	platSrv.Close()
	if h, _ := health(); h.Status != "degraded" || h.Platform != "unavailable" {
		t.Errorf("health with the platform down: %+v", h)
	}
	var eb api.ErrorBody
	if st := getJSON(t, c, s.url(api.PathMe), &eb); st != http.StatusServiceUnavailable || eb.Error.Code != api.CodeUnavailable {
		t.Errorf("me with the platform down: %d %+v", st, eb)
	}

	ln, err = net.Listen("tcp", platAddr)
	if err != nil {
		t.Fatal(err)
	}
	platSrv = serve(ln)
	defer platSrv.Close()
	if h, _ := health(); h.Platform != "ok" {
		t.Errorf("health with the platform back: %+v", h)
	}
}

//go:build integration

package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/app"
	"github.com/gridpay/gridpay/internal/testenv"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	simunionpay "github.com/gridpay/gridpay/sim/unionpay"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/workflows"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// Labels of the gateway's keys, as adminctl ca issue provisions them.
const (
	tlsLabel      = "gridpay-gateway-tls"
	platformLabel = "gridpay-gateway-platform"
	usbKeyLabel   = "gridpay-client"
)

var tokenSeq atomic.Int64

// stack is a gateway running in-process against real PostgreSQL and
// SoftHSM2 (its server key in the HSM, next to the CA), with a fake
// platform behind it.
type stack struct {
	tb    testing.TB
	cfg   config.Gateway
	db    *store.DB
	soft  *testenv.SoftHSM
	ca    *authority.Authority
	plat  *fakePlatform
	addr  string
	roots *x509.CertPool
	// offset shifts the gateway's clock.
	offset atomic.Int64
}

type stackOptions struct {
	ratePerSecond float64
	rateBurst     int
	log           *zap.Logger // nil: the test's log
	// platform, when set, configures the real platform client (platform.*
	// keys) instead of the fake.
	platform func(*config.Gateway)
}

func newStack(tb testing.TB, o stackOptions) *stack {
	tb.Helper()
	ctx := context.Background()
	s := &stack{tb: tb, plat: newFakePlatform(), soft: testenv.SoftHSMForTest(tb)}

	cfg := config.DefaultGateway()
	cfg.Database.DSN = testenv.NewDatabase(tb)
	tok := s.soft.NewTestToken(tb, fmt.Sprintf("gateway-hsm-%d", tokenSeq.Add(1)))
	pinEnv := fmt.Sprintf("GRIDPAY_TEST_GATEWAY_PIN_%d", tokenSeq.Load())
	tb.Setenv(pinEnv, tok.UserPIN)
	cfg.HSM.Module, cfg.HSM.TokenLabel, cfg.HSM.PIN = s.soft.ModulePath(), tok.Label, config.Secret{Env: pinEnv}
	cfg.HSM.Sessions = 8
	cfg.PKI.Dir = tb.TempDir()
	cfg.CRLRefresh = 100 * time.Millisecond
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.Database.MaxConns = 20
	if o.platform != nil {
		o.platform(&cfg)
	}
	if o.ratePerSecond > 0 {
		cfg.RatePerSecond, cfg.RateBurst = o.ratePerSecond, o.rateBurst
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	// Port 0 (any free port) is not a valid configuration, but it is
	// what a test wants.
	cfg.Listen, cfg.PublicListen = "127.0.0.1:0", "127.0.0.1:0"
	// Payments: a pay-link secret, and a UnionPay root for the notify
	// endpoint's verifier (the payment saga itself is tested elsewhere).
	tb.Setenv("GRIDPAY_PAY_LINK_SECRET", "test-pay-link-secret-of-at-least-32-bytes")
	upState := tb.TempDir()
	if _, err := simunionpay.NewMerchant(upState, tb.TempDir(), cfg.UnionPay.MerchantID, time.Now()); err != nil {
		tb.Fatal(err)
	}
	cfg.UnionPay.RootFile = filepath.Join(upState, "root.pem")
	s.cfg = cfg

	db, err := app.OpenDB(ctx, cfg.Database, "gateway-test", false)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	if _, err := db.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	s.db = db
	// The CA (adminctl ca init) and the gateway's keys (adminctl ca issue).
	admin, err := hsm.OpenToken(cfg.HSM.Module, tok.Selector(), []byte(tok.UserPIN), hsm.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { admin.Close() })
	s.ca, _, err = authority.Init(ctx, authority.HSMKeys{Token: admin}, db, app.AuthorityOptions(cfg.PKI), "test")
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := s.ca.IssueServiceKey(ctx, s.ca.Keys(), tlsLabel, authority.ServiceCert{
		Server: true, Name: "gateway", DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, "test"); err != nil {
		tb.Fatal(err)
	}
	if _, err := s.ca.IssueServiceKey(ctx, s.ca.Keys(), platformLabel, authority.ServiceCert{Name: "gateway"}, "test"); err != nil {
		tb.Fatal(err)
	}
	s.roots = x509.NewCertPool()
	s.roots.AddCert(s.ca.Root.Cert)

	log := o.log
	if log == nil {
		log = zaptest.NewLogger(tb)
	}
	h := hooks{
		platform: func(context.Context, config.Gateway, authority.Keys, *authority.Trust) (platform.Service, error) {
			return s.plat, nil
		},
		payments: noPayments{},
		now:      func() time.Time { return time.Now().Add(time.Duration(s.offset.Load())) },
	}
	if o.platform != nil {
		h.platform = nil
	}
	s.start(tb, log, h)
	return s
}

// start runs the gateway until the test ends, and checks it stops cleanly.
func (s *stack) start(tb testing.TB, log *zap.Logger, h hooks) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	h.ready = func(a net.Addr) { ready <- a }
	go func() { done <- runGateway(ctx, s.cfg, log, h) }()
	select {
	case a := <-ready:
		s.addr = a.String()
	case err := <-done:
		cancel()
		tb.Fatalf("the gateway did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		tb.Fatal("the gateway did not start within 30 s")
	}
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("the gateway stopped with %v", err)
			}
		case <-time.After(10 * time.Second):
			tb.Error("the gateway did not stop within 10 s of SIGTERM")
		}
	})
}

func (s *stack) url(path string) string { return "https://" + s.addr + path }

// customer is a customer's key and certificate, bound.
type customer struct {
	id, token string
	cert      *x509.Certificate
	key       crypto.Signer
	binding   store.Binding
}

// tlsCert is the client certificate with its chain for a TLS client.
func (c *customer) tlsCert(s *stack) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.cert.Raw, s.ca.Customer.Cert.Raw}, PrivateKey: c.key, Leaf: c.cert}
}

// usbKey provisions a USB key: a SoftHSM2 token of its own, a key pair
// generated on it, a certificate from the customer CA for a CSR the token
// signed, and an active binding.
func (s *stack) usbKey(customerID string) *customer {
	s.tb.Helper()
	ctx := context.Background()
	tt := s.soft.NewTestToken(s.tb, fmt.Sprintf("usb-key-%d", tokenSeq.Add(1)))
	tok, err := hsm.OpenToken(s.soft.ModulePath(), tt.Selector(), []byte(tt.UserPIN), hsm.Options{})
	if err != nil {
		s.tb.Fatal(err)
	}
	s.tb.Cleanup(func() { tok.Close() })
	signer, err := tok.GenerateECDSAKey(ctx, usbKeyLabel, nil)
	if err != nil {
		s.tb.Fatal(err)
	}
	return s.enrol(s.ca, customerID, tt.Serial, signer)
}

// softKey is a customer whose key is in memory (for openssl, and the many
// clients of the benchmark).
func (s *stack) softKey(customerID, token string) *customer {
	s.tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		s.tb.Fatal(err)
	}
	return s.enrol(s.ca, customerID, token, k)
}

func (s *stack) enrol(ca *authority.Authority, customerID, token string, key crypto.Signer) *customer {
	s.tb.Helper()
	ctx := context.Background()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		s.tb.Fatal(err)
	}
	cert, err := ca.IssueCustomer(ctx, csr, customerID, token, "test")
	if err != nil {
		s.tb.Fatal(err)
	}
	b, err := store.CreateBinding(ctx, s.db, token, customerID, authority.SerialHex(cert), "test")
	if err != nil {
		s.tb.Fatal(err)
	}
	if b, err = store.ActivateBinding(ctx, s.db, b.ID, time.Now()); err != nil {
		s.tb.Fatal(err)
	}
	return &customer{id: customerID, token: token, cert: cert, key: key, binding: b}
}

// client is an HTTPS client presenting cert (none if nil), keeping its
// connection alive unless told otherwise.
func (s *stack) client(cert *tls.Certificate, tune ...func(*http.Transport)) *http.Client {
	cfg := &tls.Config{RootCAs: s.roots, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 1}
	for _, f := range tune {
		f(tr)
	}
	s.tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// getJSON fetches path and decodes the answer into v (an api.ErrorBody
// for errors); it returns the status.
func getJSON(tb testing.TB, c *http.Client, url string, v any) int {
	tb.Helper()
	resp, err := c.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		tb.Fatalf("GET %s: status %d, decoding: %v", url, resp.StatusCode, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// refusals lists the audited refusals with that code, as subject → detail.
func (s *stack) refusals(code string) map[string]map[string]any {
	s.tb.Helper()
	rows, err := s.db.Query(context.Background(),
		`SELECT subject, actor, outcome, detail FROM audit_log WHERE action = $1 AND detail->>'code' = $2 ORDER BY seq`, actionRefuse, code)
	if err != nil {
		s.tb.Fatal(err)
	}
	defer rows.Close()
	out := map[string]map[string]any{}
	for rows.Next() {
		var subject, actor, outcome string
		var detail map[string]any
		if err := rows.Scan(&subject, &actor, &outcome, &detail); err != nil {
			s.tb.Fatal(err)
		}
		if actor != auditActor || outcome != string(store.OutcomeRefused) {
			s.tb.Errorf("refusal of %s audited as actor %q outcome %q", subject, actor, outcome)
		}
		out[subject] = detail
	}
	if err := rows.Err(); err != nil {
		s.tb.Fatal(err)
	}
	return out
}

func serialOf(c *x509.Certificate) string { return pki.SerialHex(c.SerialNumber) }

// noPayments answers that no payment exists; these tests need none.
type noPayments struct{}

func (noPayments) Start(context.Context, workflows.PaymentInput) (workflows.Order, error) {
	return workflows.Order{}, errors.New("payments are not part of this test")
}

func (noPayments) Status(context.Context, string, string) (workflows.PaymentState, error) {
	return workflows.PaymentState{}, ErrNoPayment
}

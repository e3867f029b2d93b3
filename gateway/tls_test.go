package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/internal/app"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/pki"
)

// tlsEnv runs the real HTTP server (TLS configuration, error log) over
// fakes on a loopback port, with in-memory keys.
type tlsEnv struct {
	*env
	addr   string
	roots  *x509.CertPool
	client tls.Certificate // alice's certificate with its key
}

func newTLSEnv(t *testing.T) *tlsEnv {
	t.Helper()
	e := newEnv(t)
	serverKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "gateway"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, serverKey.Public(), serverKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)

	cfg := config.DefaultGateway()
	hs := newHTTPServer(e.srv, serverTLSConfig(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: serverKey, Leaf: leaf}, time.Now), cfg, zaptest.NewLogger(t))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	return &tlsEnv{env: e, addr: ln.Addr().String(), roots: roots,
		client: tls.Certificate{Certificate: [][]byte{e.alice.Raw}, PrivateKey: testKey(), Leaf: e.alice}}
}

func (te *tlsEnv) httpClient(cfg *tls.Config) *http.Client {
	cfg.RootCAs = te.roots
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

func TestTLSRequiresVersion13AndACertificate(t *testing.T) {
	te := newTLSEnv(t)

	// TLS 1.2 is refused at the handshake.
	_, err := tls.Dial("tcp", te.addr, &tls.Config{RootCAs: te.roots, MaxVersion: tls.VersionTLS12, Certificates: []tls.Certificate{te.client}})
	if err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.2 handshake: %v", err)
	}

	// TLS 1.3 without a certificate: the server aborts the handshake.
	_, err = te.httpClient(&tls.Config{}).Get("https://" + te.addr + api.PathHealth)
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("no certificate: %v", err)
	}
	// That refusal never reaches a handler; it is audited from the
	// server's error log.
	var got []string
	deadline := time.Now().Add(5 * time.Second)
	for len(got) == 0 && time.Now().Before(deadline) {
		for _, r := range te.aud.refusals(api.CodeNoCertificate) {
			got = append(got, r.Subject)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(got) != 1 || !strings.HasPrefix(got[0], "127.0.0.1:") {
		t.Errorf("no_certificate audit subjects %v", got)
	}

	// With a certificate, the request gets through.
	resp, err := te.httpClient(&tls.Config{Certificates: []tls.Certificate{te.client}}).Get("https://" + te.addr + api.PathMe)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS.Version != tls.VersionTLS13 {
		t.Errorf("status %d, TLS version %x", resp.StatusCode, resp.TLS.Version)
	}
}

// A refused certificate completes the handshake and gets its reason as
// JSON, which the client can show.
func TestRefusedCertificateGetsAReasonOverTLS(t *testing.T) {
	te := newTLSEnv(t)
	te.bind.unbind(te.alice)
	resp, err := te.httpClient(&tls.Config{Certificates: []tls.Certificate{te.client}}).Get("https://" + te.addr + api.PathMe)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("status %d", resp.StatusCode)
	}
}

func TestServerErrorLog(t *testing.T) {
	aud := &fakeAuditor{}
	clock := &fakeClock{t: fakeToday}
	al := newAuditLog(aud, zap.NewNop(), clock.now)
	l := newServerErrorLog(zap.NewNop(), al)
	l.Print("http: TLS handshake error from 10.0.0.1:5000: tls: client didn't provide a certificate")
	l.Print("http: TLS handshake error from 10.0.0.1:5001: tls: client didn't provide a certificate") // same IP: throttled
	l.Print("http: TLS handshake error from 10.0.0.2:5000: tls: client didn't provide a certificate")
	l.Print("http: TLS handshake error from 10.0.0.3:5000: tls: client offered only unsupported versions: [303]")
	l.Print("http: TLS handshake error from 10.0.0.4:5000: EOF")
	l.Print("http: superfluous response.WriteHeader call")
	al.wait()
	// Written in the background, so in any order.
	subjects := map[string]bool{}
	for _, r := range aud.refusals(api.CodeNoCertificate) {
		subjects[r.Subject] = r.Detail["stage"] == "tls handshake"
	}
	if len(subjects) != 2 || !subjects["10.0.0.1:5000"] || !subjects["10.0.0.2:5000"] {
		t.Fatalf("audit %+v", aud.records())
	}
	clock.advance(auditThrottle)
	l.Print("http: TLS handshake error from 10.0.0.1:5002: tls: client didn't provide a certificate")
	al.wait()
	if n := len(aud.refusals(api.CodeNoCertificate)); n != 3 {
		t.Errorf("after a minute: %d entries, want 3", n)
	}
	if n := len(aud.records()); n != 3 {
		t.Errorf("other handshake failures were audited: %+v", aud.records())
	}
}

func TestLimiterEvictsIdleBuckets(t *testing.T) {
	l := newLimiters(10, 20)
	t0 := time.Now()
	for i := range 100 {
		if _, ok := l.allow([32]byte{byte(i)}, t0); !ok {
			t.Fatal("fresh bucket refused")
		}
	}
	if l.size() != 100 {
		t.Fatalf("size %d", l.size())
	}
	// A minute later only the bucket still in use remains.
	if _, ok := l.allow([32]byte{1}, t0.Add(30*time.Second)); !ok {
		t.Fatal("refused")
	}
	l.allow([32]byte{200}, t0.Add(61*time.Second))
	if l.size() != 2 {
		t.Errorf("size after the sweep %d, want 2", l.size())
	}
	// Burst then refusal, with the wait to the next token.
	k := [32]byte{9, 9}
	for range 20 {
		l.allow(k, t0)
	}
	wait, ok := l.allow(k, t0)
	if ok || wait != 100*time.Millisecond || retryAfterSeconds(wait) != 1 {
		t.Errorf("over the burst: ok=%v wait=%s", ok, wait)
	}
}

func TestRefreshCRLsRetriesAfterFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		refreshCRLs(ctx, 5*time.Millisecond, func(context.Context) error {
			if calls.Add(1) < 3 {
				return errors.New("database unavailable")
			}
			return nil
		}, zaptest.NewLogger(t))
	}()
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if calls.Load() < 5 {
		t.Errorf("refresh ran %d times; it should keep going after failures", calls.Load())
	}
}

// memKeys is an authority.Keys over in-memory keys.
type memKeys struct {
	certs   map[string]*x509.Certificate
	signers map[string]crypto.Signer
}

func (k memKeys) Signer(_ context.Context, label string) (crypto.Signer, error) {
	if s, ok := k.signers[label]; ok {
		return s, nil
	}
	return nil, authority.ErrNotFound
}
func (k memKeys) Generate(context.Context, string) (crypto.Signer, error) {
	return nil, errors.New("not here")
}
func (k memKeys) Certificate(_ context.Context, label string) (*x509.Certificate, error) {
	if c, ok := k.certs[label]; ok {
		return c, nil
	}
	return nil, authority.ErrNotFound
}
func (k memKeys) PutCertificate(context.Context, string, *x509.Certificate) error {
	return errors.New("not here")
}

func TestHSMCertificate(t *testing.T) {
	ctx := context.Background()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	rootKey, servicesKey, otherKey, serverKey := newKey(), newKey(), newKey(), newKey()
	rootCert, err := pki.NewRoot(rootKey, pki.RootOptions{CommonName: "Test Root CA", Organization: "GridPay"})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := pki.NewCA(rootCert, rootKey)
	servicesCert, _ := pki.NewIssuing(root, servicesKey.Public(), pki.IssuingOptions{CommonName: "Test Services CA", Role: pki.RoleServices})
	otherCert, _ := pki.NewIssuing(root, otherKey.Public(), pki.IssuingOptions{CommonName: "Other Services CA", Role: pki.RoleServices})
	services, _ := pki.NewCA(servicesCert, servicesKey)
	serverCert, err := services.IssueServer(serverKey.Public(), pki.ServerRequest{DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	keys := memKeys{
		certs:   map[string]*x509.Certificate{"tls": serverCert, "swapped": serverCert, "nokey": serverCert},
		signers: map[string]crypto.Signer{"tls": serverKey, "swapped": otherKey},
	}
	c, err := app.HSMCertificate(ctx, keys, "tls", []*x509.Certificate{otherCert, servicesCert})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Certificate) != 2 || !bytes.Equal(c.Certificate[1], servicesCert.Raw) || c.PrivateKey != crypto.PrivateKey(serverKey) || c.Leaf != serverCert {
		t.Errorf("chain of %d, issuer right: %v", len(c.Certificate), len(c.Certificate) == 2 && bytes.Equal(c.Certificate[1], servicesCert.Raw))
	}
	if _, err := app.HSMCertificate(ctx, keys, "missing", []*x509.Certificate{servicesCert}); cli.ExitCode(err) != cli.ExitNotFound {
		t.Errorf("missing certificate: %v", err)
	}
	if _, err := app.HSMCertificate(ctx, keys, "nokey", []*x509.Certificate{servicesCert}); cli.ExitCode(err) != cli.ExitNotFound {
		t.Errorf("missing key: %v", err)
	}
	if _, err := app.HSMCertificate(ctx, keys, "swapped", []*x509.Certificate{servicesCert}); err == nil || !strings.Contains(err.Error(), "not for the key") {
		t.Errorf("certificate of another key: %v", err)
	}
	if _, err := app.HSMCertificate(ctx, keys, "tls", []*x509.Certificate{otherCert}); err == nil || !strings.Contains(err.Error(), "services CA") {
		t.Errorf("unknown issuer: %v", err)
	}

	// The gateway will not serve with a certificate clients refuse, but a
	// CRL problem only warns.
	v := &stubVerifier{}
	now := time.Now()
	for _, tc := range []struct {
		err error
		ok  bool
	}{
		{nil, true},
		{&pki.VerifyError{Err: pki.ErrCRLStale}, true},
		{&pki.VerifyError{Err: pki.ErrNoCRL}, true},
		{&pki.VerifyError{Err: pki.ErrExpired}, false},
		{&pki.VerifyError{Err: pki.ErrRevoked}, false},
		{&pki.VerifyError{Err: pki.ErrWrongUsage}, false},
	} {
		v.err = tc.err
		if err := checkServerCertificate(v, serverCert, now, zap.NewNop()); (err == nil) != tc.ok {
			t.Errorf("verification %v: %v", tc.err, err)
		}
		if v.usage != x509.ExtKeyUsageServerAuth {
			t.Error("the server certificate must be checked for server authentication")
		}
	}
}

type stubVerifier struct {
	err   error
	usage x509.ExtKeyUsage
}

func (s *stubVerifier) Verify(_ []*x509.Certificate, _ time.Time, usage x509.ExtKeyUsage) (pki.Identity, error) {
	s.usage = usage
	return pki.Identity{Kind: pki.KindServer}, s.err
}

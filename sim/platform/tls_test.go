package simplatform

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/pki"
)

func TestStateDirPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	now := time.Now()
	names := []string{"localhost", "127.0.0.1", "::1"}
	sp, err := loadOrCreatePKI(dir, names, now, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for file, perm := range map[string]os.FileMode{caKeyFile: 0o600, serverKeyFile: 0o600, CAFileName: 0o644, serverCertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != perm {
			t.Errorf("%s has mode %v, want %v", file, fi.Mode().Perm(), perm)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode %v, want 0700", fi.Mode().Perm())
	}
	caPEM, _ := os.ReadFile(sp.caFile)
	cas, err := pki.DecodeCertificatesPEM(caPEM)
	if err != nil || len(cas) != 1 || !cas[0].Equal(sp.caCert) {
		t.Fatalf("ca.pem does not hold the CA: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cas[0])
	for _, n := range names {
		if _, err := sp.cert.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: n}); err != nil {
			t.Errorf("server certificate for %s: %v", n, err)
		}
	}
	if k, ok := sp.cert.Leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("server key %T, want ECDSA P-256", sp.cert.Leaf.PublicKey)
	}

	// A second start reuses everything.
	again, err := loadOrCreatePKI(dir, names, now, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if !again.caCert.Equal(sp.caCert) || !again.cert.Leaf.Equal(sp.cert.Leaf) {
		t.Error("a second start made new certificates")
	}
	// A new name gets a new server certificate under the same CA.
	more, err := loadOrCreatePKI(dir, append(names, "platform.test"), now, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if !more.caCert.Equal(sp.caCert) || more.cert.Leaf.Equal(sp.cert.Leaf) || more.cert.Leaf.VerifyHostname("platform.test") != nil {
		t.Error("a new server name did not renew the server certificate under the same CA")
	}
	// So does a certificate about to expire.
	late, err := loadOrCreatePKI(dir, names, now.Add(serverValidity-renewBefore/2), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if late.cert.Leaf.Equal(more.cert.Leaf) {
		t.Error("a server certificate expiring within 30 days was kept")
	}

	// A key readable by others is refused.
	if err := os.Chmod(filepath.Join(dir, caKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreatePKI(dir, names, now, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable CA key was accepted: %v", err)
	}
	// Half a CA is refused rather than silently replaced.
	os.Remove(filepath.Join(dir, caKeyFile))
	if _, err := loadOrCreatePKI(dir, names, now, zap.NewNop()); err == nil {
		t.Error("a CA certificate without its key was accepted")
	}
}

func TestClientPolicy(t *testing.T) {
	g := newGridPKI(t, "GridPay")
	other := newGridPKI(t, "Other")
	policy := clientPolicy{roots: g.servicesPool(), allow: []string{"gateway", "worker"}, now: time.Now}
	chain := func(c tls.Certificate) []*x509.Certificate {
		var out []*x509.Certificate
		for _, der := range c.Certificate {
			x, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, x)
		}
		return out
	}
	for _, name := range []string{"gateway", "worker"} {
		id, err := policy.check(chain(g.serviceCert(t, name)))
		if err != nil || id.Service != name {
			t.Errorf("service %s: %v, %v", name, id, err)
		}
	}
	for name, certs := range map[string][]*x509.Certificate{
		"no certificate":              nil,
		"service not admitted":        chain(g.serviceCert(t, "intruder")),
		"another GridPay's gateway":   chain(other.serviceCert(t, "gateway")),
		"a customer's USB key":        chain(g.customerCert(t, "C31000001")),
		"self-signed":                 chain(selfSigned(t)),
		"expired gateway certificate": chain(g.serviceCert(t, "gateway", time.Now().Add(-3*time.Hour))),
	} {
		if _, err := policy.check(certs); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: %v, want refused", name, err)
		}
	}
}

// isTLSAlert reports whether err is a TLS alert sent by the peer.
func isTLSAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && strings.Contains(op.Err.Error(), "tls:")
}

// handshake dials addr with cert (nil: none), completes the handshake and
// reads the server's greeting, which is where TLS 1.3 clients learn that
// the server refused their certificate.
func handshake(addr string, roots *x509.CertPool, cert *tls.Certificate, version uint16) error {
	cfg := &tls.Config{RootCAs: roots, MinVersion: version, MaxVersion: version}
	if cert != nil {
		// Present the certificate whatever CAs the server names: crypto/tls
		// would otherwise hold back one the server did not ask for.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(conn)
	return err
}

// TestFirewallAtHandshake runs the TLS policy on a real listener (no
// database needed) and checks who gets in.
func TestFirewallAtHandshake(t *testing.T) {
	g := newGridPKI(t, "GridPay")
	other := newGridPKI(t, "Other")
	sp, err := loadOrCreatePKI(t.TempDir(), DefaultServerNames, time.Now(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	log, logs := observedLogger()
	cfg, err := serverTLSConfig(sp, clientPolicy{roots: g.servicesPool(), allow: DefaultAllowServices, now: time.Now}, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				if conn.(*tls.Conn).Handshake() == nil {
					io.WriteString(conn, "welcome")
				}
			}()
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(sp.caCert)
	addr := ln.Addr().String()

	gw := g.serviceCert(t, "gateway")
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		if err := handshake(addr, roots, &gw, v); err != nil {
			t.Errorf("gateway (TLS %x) refused: %v", v, err)
		}
	}

	intruder := g.serviceCert(t, "intruder")
	foreign := other.serviceCert(t, "gateway")
	for _, tc := range []struct {
		name   string
		cert   *tls.Certificate
		reason string
	}{
		{"intruder", &intruder, `service "intruder" is not admitted`},
		{"another CA", &foreign, "not issued by the trusted client CA"},
		{"no certificate", nil, "no client certificate"},
	} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			before := logs.Len()
			err := handshake(addr, roots, tc.cert, v)
			if !isTLSAlert(err) {
				t.Errorf("%s (TLS %x): %v; want a TLS alert from the server", tc.name, v, err)
			}
			refusals := logs.FilterMessage("refused TLS client").All()
			if len(refusals) == 0 || logs.Len() == before {
				t.Errorf("%s (TLS %x): the refusal was not logged", tc.name, v)
				continue
			}
			last := refusals[len(refusals)-1].ContextMap()
			if reason, _ := last["reason"].(string); !strings.Contains(reason, tc.reason) || last["remote"] == "" {
				t.Errorf("%s: logged %v; want reason containing %q and the remote address", tc.name, last, tc.reason)
			}
		}
	}
	if n := len(logs.FilterMessage("accepted TLS client").All()); n != 2 {
		t.Errorf("%d accepted handshakes logged, want 2", n)
	}
}

func TestDropRefusals(t *testing.T) {
	var b strings.Builder
	d := dropRefusals{&b}
	d.Write([]byte("http: TLS handshake error from 127.0.0.1:5: " + ErrRefused.Error() + ": no client certificate\n"))
	d.Write([]byte("http: TLS handshake error from 127.0.0.1:6: EOF\n"))
	if got := b.String(); got != "http: TLS handshake error from 127.0.0.1:6: EOF\n" {
		t.Errorf("passed on %q", got)
	}
}

//go:build integration

package authority_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/testenv"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var tokenSeq atomic.Int64

type fixture struct {
	db    *store.DB
	hsm   *testenv.SoftHSM
	token *hsm.Token
	opts  authority.Options
}

func setup(t *testing.T) fixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, testenv.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	soft := testenv.SoftHSMForTest(t)
	tt := soft.NewTestToken(t, fmt.Sprintf("HSM %d", tokenSeq.Add(1)))
	tok, err := hsm.OpenToken(soft.ModulePath(), tt.Selector(), []byte(tt.UserPIN), hsm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	return fixture{db: db, hsm: soft, token: tok, opts: authority.Options{
		Organization: "GridPay Test Power", Country: "CN",
		RootLabel: "root", CustomerLabel: "customer", ServicesLabel: "services",
		RootValidity: 20 * 365 * 24 * time.Hour, IssuingValidity: 10 * 365 * 24 * time.Hour,
		CustomerValidity: 2 * 365 * 24 * time.Hour, ServerValidity: 365 * 24 * time.Hour,
		CRLValidity: 7 * 24 * time.Hour, CRLURL: "http://127.0.0.1/crl/customer.crl",
		Dir: t.TempDir(),
	}}
}

// usbKeyCSR makes a key pair on a fresh token (the USB key) and a CSR signed
// by it.
func usbKeyCSR(t *testing.T, f fixture, label string) (csr []byte, serial string) {
	t.Helper()
	ctx := context.Background()
	tt := f.hsm.NewTestToken(t, label)
	key, err := hsm.OpenToken(f.hsm.ModulePath(), tt.Selector(), []byte(tt.UserPIN), hsm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer key.Close()
	signer, err := key.GenerateECDSAKey(ctx, "gridpay-client", nil)
	if err != nil {
		t.Fatal(err)
	}
	csr, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "C1001"}}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return csr, tt.Serial
}

func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	return string(out), err
}

func writePEM(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInitIsIdempotentAndKeysStayInTheHSM(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	a, rep, err := authority.Init(ctx, authority.HSMKeys{Token: f.token}, f.db, f.opts, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range rep.Steps {
		if s.Key != "created" || s.Cert != "created" {
			t.Errorf("first run should create %s: %+v", s.CA, s)
		}
	}
	auditRows := func() (n int) {
		if err := f.db.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := auditRows()
	_, rep2, err := authority.Init(ctx, authority.HSMKeys{Token: f.token}, f.db, f.opts, "test")
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range rep2.Steps {
		if s.Key != "reused" || s.Cert != "reused" || s.Serial != rep.Steps[i].Serial {
			t.Errorf("second run should reuse %s: %+v", s.CA, s)
		}
		if rep2.CRLs[i].Number != rep.CRLs[i].Number {
			t.Errorf("second run published a new %s CRL", s.CA)
		}
	}
	if after := auditRows(); after != before {
		t.Errorf("a second Init wrote %d audit entries; it changed nothing", after-before)
	}
	for _, label := range []string{"root", "customer", "services"} {
		attrs, err := f.token.KeyAttributes(ctx, hsm.KeyRef{Label: label})
		if err != nil {
			t.Fatal(err)
		}
		if !attrs.Sensitive || attrs.Extractable || !attrs.NeverExtractable {
			t.Errorf("CA key %s is exportable: %+v", label, attrs)
		}
	}
	// Open finds the same CA.
	b, err := authority.Open(ctx, authority.HSMKeys{Token: f.token}, f.db, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Customer.Cert.Equal(a.Customer.Cert) {
		t.Error("Open loaded another customer CA")
	}
	// The exported chain is valid for openssl.
	if out, err := openssl(t, "verify", "-CAfile", rep.Files.Root, rep.Files.CustomerCA); err != nil {
		t.Errorf("openssl rejects the exported customer CA: %v\n%s", err, out)
	}
}

func TestOpenBeforeInit(t *testing.T) {
	f := setup(t)
	_, err := authority.Open(context.Background(), authority.HSMKeys{Token: f.token}, f.db, f.opts)
	if !errors.Is(err, authority.ErrNotInitialised) {
		t.Fatalf("want ErrNotInitialised, got %v", err)
	}
}

func TestIssueVerifyRevokeWithOpenSSL(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	a, rep, err := authority.Init(ctx, authority.HSMKeys{Token: f.token}, f.db, f.opts, "test")
	if err != nil {
		t.Fatal(err)
	}
	csr, tokenSerial := usbKeyCSR(t, f, "USB key A")
	leaf, err := a.IssueCustomer(ctx, csr, "C1001", tokenSerial, "admin")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	leafPEM := writePEM(t, dir, "leaf.pem", pki.EncodeCertificatesPEM(leaf))

	// A real external client accepts the certificate against the exported CA files.
	if out, err := openssl(t, "verify", "-purpose", "sslclient", "-CAfile", rep.Files.Root, "-untrusted", rep.Files.Issuing, leafPEM); err != nil || !strings.Contains(out, "OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	v, err := a.Verifier(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify([]*x509.Certificate{leaf}, time.Now(), x509.ExtKeyUsageClientAuth)
	if err != nil || id.CustomerID != "C1001" || id.TokenSerial != tokenSerial {
		t.Fatalf("verify: %+v %v", id, err)
	}
	rec, err := store.GetCertificate(ctx, f.db, authority.SerialHex(leaf))
	if err != nil || rec.CustomerID != "C1001" || rec.TokenSerial != tokenSerial {
		t.Fatalf("certificate not recorded: %+v %v", rec, err)
	}

	// Revoke: the CRL number grows, openssl and our verifier both refuse.
	res, err := a.Revoke(ctx, authority.SerialHex(leaf), pki.ReasonKeyCompromise, "admin", "reported lost")
	if err != nil {
		t.Fatal(err)
	}
	if res.Already || res.CRL.Number <= rep.CRLs[1].Number || res.CRL.Revoked != 1 {
		t.Fatalf("revocation result: %+v", res)
	}
	crlFile := filepath.Join(f.opts.Dir, "customer.crl")
	out, err := openssl(t, "crl", "-inform", "DER", "-in", crlFile, "-noout", "-text")
	if err != nil {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
	if !strings.Contains(strings.ToUpper(out), strings.ToUpper(authority.SerialHex(leaf))) || !strings.Contains(out, "Key Compromise") {
		t.Fatalf("revoked serial %s / reason not in the CRL:\n%s", authority.SerialHex(leaf), out)
	}
	var crls []byte
	for _, name := range []string{"root.crl", "customer.crl", "services.crl"} {
		der, err := os.ReadFile(filepath.Join(f.opts.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		crls = append(crls, pki.EncodeCRLPEM(der)...)
	}
	crlPEM := writePEM(t, dir, "crls.pem", crls)
	out, err = openssl(t, "verify", "-crl_check_all", "-CRLfile", crlPEM, "-CAfile", rep.Files.Root, "-untrusted", rep.Files.Issuing, leafPEM)
	if err == nil || !strings.Contains(out, "certificate revoked") {
		t.Fatalf("openssl accepted a revoked certificate: %v\n%s", err, out)
	}
	v, err = a.Verifier(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify([]*x509.Certificate{leaf}, time.Now(), x509.ExtKeyUsageClientAuth); !errors.Is(err, pki.ErrRevoked) {
		t.Fatalf("want ErrRevoked, got %v", err)
	}
	// Revoking again changes nothing.
	again, err := a.Revoke(ctx, authority.SerialHex(leaf), pki.ReasonSuperseded, "admin", "")
	if err != nil || !again.Already || again.Reason != pki.ReasonKeyCompromise {
		t.Fatalf("second revocation: %+v %v", again, err)
	}
	rep3, err := f.db.VerifyAudit(ctx)
	if err != nil || !rep3.OK() {
		t.Fatalf("audit chain: %+v %v", rep3, err)
	}
}

func TestForgedCSRIsRefusedAndAudited(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	a, _, err := authority.Init(ctx, authority.HSMKeys{Token: f.token}, f.db, f.opts, "test")
	if err != nil {
		t.Fatal(err)
	}
	csr, tokenSerial := usbKeyCSR(t, f, "USB key B")
	csr[len(csr)-3] ^= 0x01 // inside the signature
	if _, err := a.IssueCustomer(ctx, csr, "C1002", tokenSerial, "admin"); !errors.Is(err, pki.ErrBadCSR) {
		t.Fatalf("want ErrBadCSR, got %v", err)
	}
	certs, err := store.CertificatesForToken(ctx, f.db, tokenSerial)
	if err != nil || len(certs) != 0 {
		t.Fatalf("a certificate was recorded for a forged CSR: %v %v", certs, err)
	}
	var refused int
	if err := f.db.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'certificate.issue' AND outcome = 'refused' AND subject = $1`, tokenSerial).Scan(&refused); err != nil {
		t.Fatal(err)
	}
	if refused != 1 {
		t.Fatalf("want one refused audit entry, got %d", refused)
	}
}

// A relying party with no CA key builds the same verdicts from the database.
func TestTrustFromTheDatabase(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	a, _, err := authority.Init(ctx, authority.HSMKeys{Token: f.token}, f.db, f.opts, "test")
	if err != nil {
		t.Fatal(err)
	}
	csr, tokenSerial := usbKeyCSR(t, f, "USB key T")
	leaf, err := a.IssueCustomer(ctx, csr, "C1001", tokenSerial, "admin")
	if err != nil {
		t.Fatal(err)
	}
	trust, err := authority.LoadTrust(ctx, f.db)
	if err != nil {
		t.Fatal(err)
	}
	v, err := trust.Verifier(ctx, f.db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify([]*x509.Certificate{leaf}, time.Now(), x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatalf("good certificate refused: %v", err)
	}
	if _, err := a.Revoke(ctx, authority.SerialHex(leaf), pki.ReasonKeyCompromise, "admin", ""); err != nil {
		t.Fatal(err)
	}
	// Until the refresh, the old CRL stands; after it, the key is refused.
	if err := trust.RefreshCRLs(ctx, f.db, v); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify([]*x509.Certificate{leaf}, time.Now(), x509.ExtKeyUsageClientAuth); !errors.Is(err, pki.ErrRevoked) {
		t.Fatalf("want ErrRevoked after the refresh, got %v", err)
	}
}

// Issuing for a binding is atomic and idempotent by request key.
func TestIssueForBindingIsIdempotent(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	a, _, err := authority.Init(ctx, authority.HSMKeys{Token: f.token}, f.db, f.opts, "test")
	if err != nil {
		t.Fatal(err)
	}
	csr, tokenSerial := usbKeyCSR(t, f, "USB key I")
	var wg sync.WaitGroup
	results := make([]authority.BoundCertificate, 5)
	errs := make([]error, 5)
	for i := range results {
		wg.Go(func() {
			results[i], errs[i] = a.IssueForBinding(ctx, "binding/"+tokenSerial+"/run1", csr, "C1001", tokenSerial, "wf")
		})
	}
	wg.Wait()
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("attempt %d: %v", i, errs[i])
		}
		if !results[i].Cert.Equal(results[0].Cert) || results[i].Binding.ID != results[0].Binding.ID {
			t.Fatalf("attempt %d got another certificate or binding", i)
		}
	}
	if results[0].Binding.Status != store.BindingPending {
		t.Fatalf("binding %s, want pending", results[0].Binding.Status)
	}
	certs, err := store.CertificatesForToken(ctx, f.db, tokenSerial)
	if err != nil || len(certs) != 1 {
		t.Fatalf("want exactly one recorded certificate, got %d (%v)", len(certs), err)
	}
	// Another request for the same token is refused and records nothing.
	_, err = a.IssueForBinding(ctx, "binding/"+tokenSerial+"/run2", csr, "C1001", tokenSerial, "wf")
	if !errors.Is(err, store.ErrAlreadyBound) {
		t.Fatalf("want ErrAlreadyBound, got %v", err)
	}
	if certs, _ := store.CertificatesForToken(ctx, f.db, tokenSerial); len(certs) != 1 {
		t.Fatalf("a refused request recorded a certificate: %d", len(certs))
	}
}

//go:build integration

package pki_test

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridpay/gridpay/pki"
)

// These tests use the real openssl binary as an outside relying party: what
// it accepts and prints is what other tools will see.

// openssl runs the openssl binary in dir and returns its combined output
// and whether it exited with status 0.
func openssl(t *testing.T, dir string, args ...string) (string, bool) {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("the openssl binary is required for the integration tests (install the openssl package): %v", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running openssl %s: %v", strings.Join(args, " "), err)
	}
	return string(out), err == nil
}

// mustOpenSSL runs openssl and fails the test unless it succeeds.
func mustOpenSSL(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, ok := openssl(t, dir, args...)
	if !ok {
		t.Fatalf("openssl %s failed:\n%s", strings.Join(args, " "), out)
	}
	return out
}

func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// opensslSerial is how openssl prints a serial number: upper-case hex of
// the magnitude, two digits per byte, no separators.
func opensslSerial(n *big.Int) string {
	return fmt.Sprintf("%X", n.Bytes())
}

// interop is a hierarchy created now (openssl checks against the real
// clock), its chain exported to dir, and two customer certificates: one
// from a Go-made CSR (to be revoked) and one from a CSR openssl made itself.
type interop struct {
	dir             string
	h               *hierarchy
	files           pki.ChainFiles
	revoked, kept   *x509.Certificate
	keptCustomer    string
	keptTokenSerial string
}

func newInterop(t *testing.T) *interop {
	t.Helper()
	now := time.Now()
	it := &interop{dir: t.TempDir(), h: newHierarchyAt(t, "Interop", now), keptCustomer: "C1000002", keptTokenSerial: "0A1B2C3D4E5F6071"}
	var err error
	it.files, err = pki.ExportChain(it.dir, it.h.root.Cert, it.h.customer.Cert, it.h.services.Cert)
	if err != nil {
		t.Fatal(err)
	}
	it.revoked = issueCustomer(t, it.h.customer, testToken, now)
	writeFile(t, it.dir, "revoked.pem", pki.EncodeCertificatesPEM(it.revoked))

	// The kept customer's key and CSR come from openssl, as from a client
	// the CA does not control.
	mustOpenSSL(t, it.dir, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "kept.key", "-subj", "/CN="+it.keptCustomer+"/serialNumber="+it.keptTokenSerial,
		"-outform", "DER", "-out", "kept.csr")
	csr, err := os.ReadFile(filepath.Join(it.dir, "kept.csr"))
	if err != nil {
		t.Fatal(err)
	}
	it.kept, err = it.h.customer.IssueCustomer(csr, pki.CustomerRequest{CustomerID: it.keptCustomer, TokenSerial: it.keptTokenSerial, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, it.dir, "kept.pem", pki.EncodeCertificatesPEM(it.kept))
	return it
}

// publishCRLs writes the customer CA's CRL (revoking it.revoked as "lost")
// as customer.crl.der, and it plus the root's CRL as crls.pem.
func (it *interop) publishCRLs(t *testing.T) {
	t.Helper()
	now := time.Now()
	lost, err := pki.ParseReason("lost")
	if err != nil {
		t.Fatal(err)
	}
	customerCRL := crl(t, it.h.customer, 1, now, pki.Revoked{Serial: it.revoked.SerialNumber, RevokedAt: now.Add(-time.Minute), Reason: lost})
	rootCRL := crl(t, it.h.root, 1, now)
	writeFile(t, it.dir, "customer.crl.der", customerCRL)
	writeFile(t, it.dir, "customer-crl.pem", pki.EncodeCRLPEM(customerCRL))
	writeFile(t, it.dir, "crls.pem", append(pki.EncodeCRLPEM(customerCRL), pki.EncodeCRLPEM(rootCRL)...))
}

// verifier builds a Verifier from the exported chain files and the CRLs in
// the given PEM files, reading them back as an outside party would.
func (it *interop) verifier(t *testing.T, crlFiles ...string) *pki.Verifier {
	t.Helper()
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(it.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	roots, err := pki.DecodeCertificatesPEM(read(pki.RootFile))
	if err != nil {
		t.Fatal(err)
	}
	issuing, err := pki.DecodeCertificatesPEM(read(pki.IssuingFile))
	if err != nil {
		t.Fatal(err)
	}
	var crls [][]byte
	for _, name := range crlFiles {
		der, err := pki.DecodeCRLsPEM(read(name))
		if err != nil {
			t.Fatal(err)
		}
		crls = append(crls, der...)
	}
	v, err := pki.NewVerifier(pki.VerifierConfig{Roots: roots, Intermediates: issuing, CRLs: crls})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestOpenSSLVerifiesChain(t *testing.T) {
	it := newInterop(t)
	if filepath.Base(it.files.Root) != "root.pem" || filepath.Base(it.files.Issuing) != "issuing.pem" {
		t.Fatalf("exported files %+v", it.files)
	}
	for _, leaf := range []string{"revoked.pem", "kept.pem"} {
		out := mustOpenSSL(t, it.dir, "verify", "-CAfile", "root.pem", "-untrusted", "issuing.pem", leaf)
		if !strings.Contains(out, leaf+": OK") {
			t.Errorf("openssl verify %s: %s", leaf, out)
		}
		out = mustOpenSSL(t, it.dir, "verify", "-purpose", "sslclient", "-CAfile", "root.pem", "-untrusted", "issuing.pem", leaf)
		if !strings.Contains(out, leaf+": OK") {
			t.Errorf("openssl verify -purpose sslclient %s: %s", leaf, out)
		}
		// A customer certificate is no TLS server certificate.
		if out, ok := openssl(t, it.dir, "verify", "-purpose", "sslserver", "-CAfile", "root.pem", "-untrusted", "issuing.pem", leaf); ok {
			t.Errorf("openssl accepted %s as a server certificate: %s", leaf, out)
		}
	}
	// Without the issuing CA there is no path.
	if out, ok := openssl(t, it.dir, "verify", "-CAfile", "root.pem", "kept.pem"); ok {
		t.Errorf("openssl verified without the issuing CA: %s", out)
	}
	// A root from elsewhere does not vouch for our certificates.
	other := newHierarchyAt(t, "Interop", time.Now())
	writeFile(t, it.dir, "other-root.pem", pki.EncodeCertificatesPEM(other.root.Cert))
	if out, ok := openssl(t, it.dir, "verify", "-CAfile", "other-root.pem", "-untrusted", "issuing.pem", "kept.pem"); ok {
		t.Errorf("openssl verified against another root: %s", out)
	}

	// The certificate certifies the key openssl generated.
	certKey := mustOpenSSL(t, it.dir, "x509", "-in", "kept.pem", "-noout", "-pubkey")
	ownKey := mustOpenSSL(t, it.dir, "pkey", "-in", "kept.key", "-pubout")
	if certKey != ownKey {
		t.Errorf("certificate key\n%s\ndiffers from openssl's key\n%s", certKey, ownKey)
	}
}

func TestOpenSSLServiceAndServer(t *testing.T) {
	it := newInterop(t)
	now := time.Now()
	server, err := it.h.services.IssueServer(newKey(t).Public(), pki.ServerRequest{DNSNames: []string{"gw.gridpay.test"}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	service, err := it.h.services.IssueService(newKey(t).Public(), pki.ServiceRequest{Name: "worker", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, it.dir, "server.pem", pki.EncodeCertificatesPEM(server))
	writeFile(t, it.dir, "service.pem", pki.EncodeCertificatesPEM(service))
	out := mustOpenSSL(t, it.dir, "verify", "-purpose", "sslserver", "-verify_hostname", "gw.gridpay.test",
		"-CAfile", "root.pem", "-untrusted", "issuing.pem", "server.pem")
	if !strings.Contains(out, "server.pem: OK") {
		t.Errorf("server certificate: %s", out)
	}
	if out, ok := openssl(t, it.dir, "verify", "-purpose", "sslserver", "-verify_hostname", "evil.example",
		"-CAfile", "root.pem", "-untrusted", "issuing.pem", "server.pem"); ok {
		t.Errorf("server certificate accepted for another host name: %s", out)
	}
	out = mustOpenSSL(t, it.dir, "verify", "-purpose", "sslclient", "-CAfile", "root.pem", "-untrusted", "issuing.pem", "service.pem")
	if !strings.Contains(out, "service.pem: OK") {
		t.Errorf("service certificate: %s", out)
	}
	text := mustOpenSSL(t, it.dir, "x509", "-in", "service.pem", "-noout", "-text")
	if !strings.Contains(text, "URI:urn:gridpay:service:worker") {
		t.Errorf("service certificate text lacks its URI:\n%s", text)
	}
}

func TestOpenSSLCRLCheck(t *testing.T) {
	it := newInterop(t)
	it.publishCRLs(t)

	base := []string{"verify", "-crl_check", "-CAfile", "root.pem", "-untrusted", "issuing.pem", "-CRLfile", "customer-crl.pem"}
	out, ok := openssl(t, it.dir, append(base, "revoked.pem")...)
	if ok || !strings.Contains(out, "certificate revoked") {
		t.Errorf("revoked certificate: ok=%v\n%s", ok, out)
	}
	out = mustOpenSSL(t, it.dir, append(base, "kept.pem")...)
	if !strings.Contains(out, "kept.pem: OK") {
		t.Errorf("kept certificate: %s", out)
	}

	// GridPay's own Verifier, given the same files, reaches the same verdicts.
	v := it.verifier(t, "customer-crl.pem", "crls.pem")
	if _, err := v.Verify([]*x509.Certificate{it.kept}, time.Now(), x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("Verifier on the kept certificate: %v", err)
	}
	if _, err := v.Verify([]*x509.Certificate{it.revoked}, time.Now(), x509.ExtKeyUsageClientAuth); !errors.Is(err, pki.ErrRevoked) {
		t.Errorf("Verifier on the revoked certificate: err = %v, want ErrRevoked", err)
	}

	// Checking the whole chain needs the root's CRL too, and accepts it.
	all := []string{"verify", "-crl_check_all", "-CAfile", "root.pem", "-untrusted", "issuing.pem"}
	out = mustOpenSSL(t, it.dir, append(all, "-CRLfile", "crls.pem", "kept.pem")...)
	if !strings.Contains(out, "kept.pem: OK") {
		t.Errorf("kept certificate, whole chain: %s", out)
	}
	if out, ok := openssl(t, it.dir, append(all, "-CRLfile", "crls.pem", "revoked.pem")...); ok || !strings.Contains(out, "certificate revoked") {
		t.Errorf("revoked certificate, whole chain: ok=%v\n%s", ok, out)
	}
	if out, ok := openssl(t, it.dir, append(all, "-CRLfile", "customer-crl.pem", "kept.pem")...); ok || !strings.Contains(out, "unable to get certificate CRL") {
		t.Errorf("whole chain without the root's CRL: ok=%v\n%s", ok, out)
	}
}

func TestOpenSSLReadsCRL(t *testing.T) {
	it := newInterop(t)
	it.publishCRLs(t)
	text := mustOpenSSL(t, it.dir, "crl", "-inform", "DER", "-in", "customer.crl.der", "-noout", "-text")
	for _, want := range []string{
		"Serial Number: " + opensslSerial(it.revoked.SerialNumber),
		"Key Compromise",
		"X509v3 CRL Number",
		"Issuer: C = CN, O = GridPay, CN = Interop Customer CA",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl crl -text lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, opensslSerial(it.kept.SerialNumber)) {
		t.Errorf("the kept certificate's serial is listed:\n%s", text)
	}
	// openssl checks the CRL's signature against the issuing CA.
	out := mustOpenSSL(t, it.dir, "crl", "-inform", "DER", "-in", "customer.crl.der", "-CAfile", "chain.pem", "-noout")
	if !strings.Contains(out, "verify OK") {
		t.Errorf("openssl crl signature check: %s", out)
	}
	// And refuses it against a CA of the same name with another key.
	other := newHierarchyAt(t, "Interop", time.Now())
	writeFile(t, it.dir, "other-chain.pem", pki.ChainPEM(other.root.Cert, other.customer.Cert))
	// (openssl crl exits 0 either way; the verdict is in its output.)
	if out, _ := openssl(t, it.dir, "crl", "-inform", "DER", "-in", "customer.crl.der", "-CAfile", "other-chain.pem", "-noout"); strings.Contains(out, "verify OK") || !strings.Contains(out, "verify failure") {
		t.Errorf("openssl accepted the CRL from a lookalike CA: %s", out)
	}
}

func TestOpenSSLShowsProfile(t *testing.T) {
	it := newInterop(t)
	text := mustOpenSSL(t, it.dir, "x509", "-in", "revoked.pem", "-noout", "-text")
	for _, want := range []string{
		"URI:urn:gridpay:customer:" + testCustomer,
		"URI:urn:gridpay:token:" + testToken,
		"serialNumber = " + testToken,
		"CN = " + testCustomer,
		"OU = Customer",
		"TLS Web Client Authentication",
		"Digital Signature",
		"CA:FALSE",
		"http://crl.gridpay.test/customer.crl",
		"X509v3 Authority Key Identifier",
		"X509v3 Subject Key Identifier",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl x509 -text lacks %q:\n%s", want, text)
		}
	}
	serial := mustOpenSSL(t, it.dir, "x509", "-in", "revoked.pem", "-noout", "-serial")
	if got, want := strings.TrimSpace(serial), "serial="+opensslSerial(it.revoked.SerialNumber); got != want {
		t.Errorf("openssl serial %q, want %q", got, want)
	}
	// The subject openssl reads must carry the serialNumber attribute by its
	// OID, not just a look-alike text.
	subject := mustOpenSSL(t, it.dir, "x509", "-in", "revoked.pem", "-noout", "-subject", "-nameopt", "oid,sep_comma_plus")
	if !strings.Contains(subject, "2.5.4.5="+testToken) {
		t.Errorf("openssl subject %q lacks 2.5.4.5", subject)
	}

	// And a CA certificate shows its constraints.
	rootText := mustOpenSSL(t, it.dir, "x509", "-in", "root.pem", "-noout", "-text")
	if !strings.Contains(rootText, "CA:TRUE, pathlen:1") {
		t.Errorf("root text lacks pathlen 1:\n%s", rootText)
	}
	issuing, err := os.ReadFile(filepath.Join(it.dir, "issuing.pem"))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.DecodeCertificatesPEM(issuing)
	if err != nil || len(certs) != 2 {
		t.Fatalf("issuing.pem: %d certificates, %v", len(certs), err)
	}
	writeFile(t, it.dir, "customer-ca.pem", pki.EncodeCertificatesPEM(certs[0]))
	caText := mustOpenSSL(t, it.dir, "x509", "-in", "customer-ca.pem", "-noout", "-text")
	if !strings.Contains(caText, "CA:TRUE, pathlen:0") || !strings.Contains(caText, "TLS Web Client Authentication") {
		t.Errorf("customer CA text:\n%s", caText)
	}
}

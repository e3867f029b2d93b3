package pki_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/gridpay/gridpay/pki"
)

// t0 is the time the test hierarchy is created; tests issue at t0 or later.
var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

const (
	testCustomer = "C1000001"
	testToken    = "3E1F2A7B9C8D0E1F"
)

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// hierarchy is a root with its two issuing CAs, all valid from t0.
type hierarchy struct {
	root, customer, services *pki.CA
}

func newCA(t testing.TB, cert *x509.Certificate, signer crypto.Signer) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(cert, signer)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func newHierarchy(t testing.TB, name string) *hierarchy {
	t.Helper()
	return newHierarchyAt(t, name, t0)
}

// newHierarchyAt makes the CA names "<name> Root CA", "<name> Customer CA"
// and "<name> Services CA", created at now.
func newHierarchyAt(t testing.TB, name string, now time.Time) *hierarchy {
	t.Helper()
	rootKey := newKey(t)
	rootCert, err := pki.NewRoot(rootKey, pki.RootOptions{
		CommonName: name + " Root CA", Organization: "GridPay", Country: "CN", Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &hierarchy{root: newCA(t, rootCert, rootKey)}
	h.root.CRLURL = "http://crl.gridpay.test/root.crl"
	for _, ic := range []struct {
		role pki.Role
		cn   string
		dst  **pki.CA
		crl  string
	}{
		{pki.RoleCustomer, name + " Customer CA", &h.customer, "http://crl.gridpay.test/customer.crl"},
		{pki.RoleServices, name + " Services CA", &h.services, "http://crl.gridpay.test/services.crl"},
	} {
		k := newKey(t)
		cert, err := pki.NewIssuing(h.root, k.Public(), pki.IssuingOptions{CommonName: ic.cn, Role: ic.role, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		*ic.dst = newCA(t, cert, k)
		(*ic.dst).CRLURL = ic.crl
	}
	return h
}

func mustParseURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func newCSR(t testing.TB, key crypto.Signer, subject pkix.Name, uris ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: subject}
	for _, s := range uris {
		tmpl.URIs = append(tmpl.URIs, mustParseURL(t, s))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func customerSubject() pkix.Name {
	return pkix.Name{CommonName: testCustomer, SerialNumber: testToken}
}

// issueCustomer issues a certificate for testCustomer/token at now.
func issueCustomer(t testing.TB, ca *pki.CA, token string, now time.Time) *x509.Certificate {
	t.Helper()
	cert, err := ca.IssueCustomer(newCSR(t, newKey(t), pkix.Name{}), pki.CustomerRequest{
		CustomerID: testCustomer, TokenSerial: token, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// crl signs a CRL valid for a day from thisUpdate.
func crl(t testing.TB, ca *pki.CA, number int64, thisUpdate time.Time, revoked ...pki.Revoked) []byte {
	t.Helper()
	der, err := ca.CRL(pki.CRLRequest{
		Number:     big.NewInt(number),
		ThisUpdate: thisUpdate,
		NextUpdate: thisUpdate.Add(24 * time.Hour),
		Revoked:    revoked,
	})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

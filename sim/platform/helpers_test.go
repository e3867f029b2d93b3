package simplatform

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gridpay/gridpay/pki"
)

// gridPKI is a GridPay hierarchy made in memory: root, services CA and
// customer CA, as adminctl makes them in the HSM.
type gridPKI struct {
	root, services, customer *pki.CA
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newGridPKI(t testing.TB, name string) *gridPKI {
	t.Helper()
	rootKey := newKey(t)
	// Made two days ago, so that tests can issue certificates in the past.
	made := time.Now().Add(-48 * time.Hour)
	rootCert, err := pki.NewRoot(rootKey, pki.RootOptions{CommonName: name + " Root CA", Organization: "GridPay", Country: "CN", Now: made})
	if err != nil {
		t.Fatal(err)
	}
	g := &gridPKI{}
	if g.root, err = pki.NewCA(rootCert, rootKey); err != nil {
		t.Fatal(err)
	}
	for _, ic := range []struct {
		role pki.Role
		cn   string
		dst  **pki.CA
	}{
		{pki.RoleServices, name + " Services CA", &g.services},
		{pki.RoleCustomer, name + " Customer CA", &g.customer},
	} {
		k := newKey(t)
		cert, err := pki.NewIssuing(g.root, k.Public(), pki.IssuingOptions{CommonName: ic.cn, Role: ic.role, Now: made})
		if err != nil {
			t.Fatal(err)
		}
		if *ic.dst, err = pki.NewCA(cert, k); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// servicesPool is what --client-ca holds: the services CA certificate.
func (g *gridPKI) servicesPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(g.services.Cert)
	return p
}

// serviceCert issues a client certificate for a GridPay service, valid
// from now (or from the given time, for expired ones).
func (g *gridPKI) serviceCert(t testing.TB, name string, at ...time.Time) tls.Certificate {
	t.Helper()
	key := newKey(t)
	req := pki.ServiceRequest{Name: name}
	if len(at) > 0 {
		req.Now, req.Validity = at[0], time.Hour
	}
	cert, err := g.services.IssueService(key.Public(), req)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw, g.services.Cert.Raw}, PrivateKey: key, Leaf: cert}
}

// customerCert issues a USB-key certificate from the customer CA.
func (g *gridPKI) customerCert(t testing.TB, customerID string) tls.Certificate {
	t.Helper()
	key := newKey(t)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{}}, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := g.customer.IssueCustomer(csr, pki.CustomerRequest{CustomerID: customerID, TokenSerial: "3E1F2A7B9C8D0E1F"})
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw, g.customer.Cert.Raw}, PrivateKey: key, Leaf: cert}
}

// selfSigned is a client certificate nobody issued.
func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: randomSerial(t), Subject: pkix.Name{CommonName: "gateway"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func randomSerial(t testing.TB) *big.Int {
	t.Helper()
	var b [16]byte
	rand.Read(b[:])
	return new(big.Int).SetBytes(b[:])
}

// observedLogger records log entries for assertions.
func observedLogger() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.DebugLevel)
	return zap.New(core), logs
}

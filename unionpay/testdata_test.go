package unionpay

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The fixed keys and certificates under testdata/ make the golden
// signature and the fuzz corpus stable. Regenerating them changes the
// golden signature and invalidates the corpus (rewrite it with -update):
//
//	go test ./unionpay -run TestWriteTestdata -update-pki
var (
	updatePKI = flag.Bool("update-pki", false, "rewrite the keys and certificates in testdata/*.pem")
	update    = flag.Bool("update", false, "rewrite the fuzz seed corpus in testdata/fuzz")
)

// testNow is the clock of every test: inside the validity of the test
// certificates, after the expiry of expired-gateway.pem.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, Shanghai)

const testMerchantID = "898310048160001"

func TestWriteTestdata(t *testing.T) {
	if !*updatePKI {
		t.Log("testdata kept (run with -update-pki to rewrite)")
		return
	}
	key := func(name string) *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		write(t, name, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		return k
	}
	cert := func(name string, tmpl *x509.Certificate, parent *x509.Certificate, pub *rsa.PublicKey, signer *rsa.PrivateKey) *x509.Certificate {
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		write(t, name, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		c, _ := x509.ParseCertificate(der)
		return c
	}
	from, to := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC)
	ca := func(serial int64, cn string) *x509.Certificate {
		return &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn, Organization: []string{"China UnionPay"}},
			NotBefore: from, NotAfter: to, IsCA: true, BasicConstraintsValid: true, MaxPathLen: 1,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
	}
	leaf := func(serial int64, org string, nb, na time.Time) *x509.Certificate {
		return &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "UnionPay Gateway Signing (test)", Organization: []string{org}},
			NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageDigitalSignature,
		}
	}
	rootKey := key("root-key.pem")
	root := cert("root.pem", ca(1, "UnionPay Test Root"), nil, &rootKey.PublicKey, rootKey)
	gwKey := key("gateway-key.pem")
	cert("gateway.pem", leaf(1001, "China UnionPay", from, to), root, &gwKey.PublicKey, rootKey)
	cert("expired-gateway.pem", leaf(1002, "China UnionPay", from, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), root, &gwKey.PublicKey, rootKey)
	cert("wrong-org-gateway.pem", leaf(1003, "Not UnionPay", from, to), root, &gwKey.PublicKey, rootKey)
	otherKey := key("other-root-key.pem")
	other := cert("other-root.pem", ca(2, "UnionPay Test Root"), nil, &otherKey.PublicKey, otherKey)
	cert("other-gateway.pem", leaf(1001, "China UnionPay", from, to), other, &gwKey.PublicKey, otherKey)
	merKey := key("merchant-key.pem")
	cert("merchant.pem", &x509.Certificate{
		SerialNumber: big.NewInt(69042905377), Subject: pkix.Name{CommonName: testMerchantID, Organization: []string{"GridPay (test)"}},
		NotBefore: from, NotAfter: to, KeyUsage: x509.KeyUsageDigitalSignature,
	}, nil, &merKey.PublicKey, merKey)
}

func write(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join("testdata", name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// testPKI is what testdata holds, loaded.
type testPKI struct {
	root, otherRoot                     *x509.Certificate
	gatewayKey, merchantKey             *rsa.PrivateKey
	gatewayPEM, expiredPEM, wrongOrgPEM string
	otherGatewayPEM, rootPEM            string
	merchantCert                        *x509.Certificate
}

func loadTestPKI(t testing.TB) *testPKI {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	parseKey := func(name string) *rsa.PrivateKey {
		b, _ := pem.Decode(read(name))
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return k.(*rsa.PrivateKey)
	}
	parseCert := func(name string) *x509.Certificate {
		b, _ := pem.Decode(read(name))
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return &testPKI{
		root: parseCert("root.pem"), otherRoot: parseCert("other-root.pem"),
		gatewayKey: parseKey("gateway-key.pem"), merchantKey: parseKey("merchant-key.pem"),
		gatewayPEM: string(read("gateway.pem")), expiredPEM: string(read("expired-gateway.pem")),
		wrongOrgPEM: string(read("wrong-org-gateway.pem")), otherGatewayPEM: string(read("other-gateway.pem")),
		rootPEM: string(read("root.pem")), merchantCert: parseCert("merchant.pem"),
	}
}

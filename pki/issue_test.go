package pki_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gridpay/gridpay/pki"
)

func TestIssueCustomerProfile(t *testing.T) {
	h := newHierarchy(t, "Test")
	key := newKey(t)
	now := t0.Add(time.Hour)
	cert, err := h.customer.IssueCustomer(newCSR(t, key, customerSubject()), pki.CustomerRequest{
		CustomerID: testCustomer, TokenSerial: testToken, Validity: 365 * 24 * time.Hour, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}

	id, err := pki.IdentityOf(cert)
	if err != nil {
		t.Fatal(err)
	}
	want := pki.Identity{Kind: pki.KindCustomer, CustomerID: testCustomer, TokenSerial: testToken}
	if id != want {
		t.Errorf("IdentityOf = %+v, want %+v", id, want)
	}

	if err := cert.CheckSignatureFrom(h.customer.Cert); err != nil {
		t.Errorf("not signed by the customer CA: %v", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Error("certificate does not carry the CSR's key")
	}
	s := cert.Subject
	if s.CommonName != testCustomer || s.SerialNumber != testToken ||
		!slices.Equal(s.Organization, []string{"GridPay"}) || !slices.Equal(s.OrganizationalUnit, []string{"Customer"}) {
		t.Errorf("subject = %v", s)
	}
	var uris []string
	for _, u := range cert.URIs {
		uris = append(uris, u.String())
	}
	wantURIs := []string{"urn:gridpay:customer:" + testCustomer, "urn:gridpay:token:" + testToken}
	if !slices.Equal(uris, wantURIs) {
		t.Errorf("URIs = %q, want %q", uris, wantURIs)
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v, want digitalSignature only", cert.KeyUsage)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage = %v, want clientAuth", cert.ExtKeyUsage)
	}
	if !cert.BasicConstraintsValid || cert.IsCA {
		t.Error("want basic constraints present with CA false")
	}
	if !bytes.Equal(cert.AuthorityKeyId, h.customer.Cert.SubjectKeyId) {
		t.Error("AuthorityKeyId is not the customer CA's SubjectKeyId")
	}
	if len(cert.SubjectKeyId) != 20 {
		t.Errorf("SubjectKeyId has %d bytes, want 20", len(cert.SubjectKeyId))
	}
	if !slices.Equal(cert.CRLDistributionPoints, []string{"http://crl.gridpay.test/customer.crl"}) {
		t.Errorf("CRLDistributionPoints = %q", cert.CRLDistributionPoints)
	}
	if !cert.NotBefore.Equal(now.Add(-5*time.Minute)) || !cert.NotAfter.Equal(now.Add(365*24*time.Hour)) {
		t.Errorf("validity %s .. %s, want %s .. %s", cert.NotBefore, cert.NotAfter, now.Add(-5*time.Minute), now.Add(365*24*time.Hour))
	}

	// X.520 types serialNumber as PrintableString; some verifiers insist.
	type atv struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}
	type atvSET []atv
	var rdns []atvSET
	if _, err := asn1.Unmarshal(cert.RawSubject, &rdns); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rdn := range rdns {
		for _, a := range rdn {
			if a.Type.Equal(asn1.ObjectIdentifier{2, 5, 4, 5}) {
				found = true
				if a.Value.Tag != asn1.TagPrintableString || string(a.Value.Bytes) != testToken {
					t.Errorf("serialNumber attribute: tag %d value %q", a.Value.Tag, a.Value.Bytes)
				}
			}
		}
	}
	if !found {
		t.Error("subject has no serialNumber (2.5.4.5) attribute")
	}
}

func TestIssueCustomerValidityBounds(t *testing.T) {
	h := newHierarchy(t, "Test")
	csr := newCSR(t, newKey(t), pkix.Name{})
	now := t0.Add(time.Hour)

	cert, err := h.customer.IssueCustomer(csr, pki.CustomerRequest{CustomerID: testCustomer, TokenSerial: testToken, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cert.NotAfter, now.Add(pki.DefaultCustomerValidity); !got.Equal(want) {
		t.Errorf("default NotAfter = %s, want %s", got, want)
	}

	cert, err = h.customer.IssueCustomer(csr, pki.CustomerRequest{
		CustomerID: testCustomer, TokenSerial: testToken, Now: now, Validity: 50 * 365 * 24 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.Equal(h.customer.Cert.NotAfter) {
		t.Errorf("NotAfter = %s, want it cut to the issuer's %s", cert.NotAfter, h.customer.Cert.NotAfter)
	}

	// The issuing CAs start at t0-5min; a certificate issued at t0 must not
	// start before its issuer.
	cert, err = h.customer.IssueCustomer(csr, pki.CustomerRequest{CustomerID: testCustomer, TokenSerial: testToken, Now: t0.Add(-4 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if cert.NotBefore.Before(h.customer.Cert.NotBefore) {
		t.Errorf("NotBefore %s is before the issuer's %s", cert.NotBefore, h.customer.Cert.NotBefore)
	}

	for _, at := range []time.Time{t0.Add(-time.Hour), h.customer.Cert.NotAfter.Add(time.Second)} {
		_, err := h.customer.IssueCustomer(csr, pki.CustomerRequest{CustomerID: testCustomer, TokenSerial: testToken, Now: at})
		if !errors.Is(err, pki.ErrCAValidity) {
			t.Errorf("issuing at %s: err = %v, want ErrCAValidity", at, err)
		}
	}
}

func TestSerialsRandomAndUnique(t *testing.T) {
	h := newHierarchy(t, "Test")
	csr := newCSR(t, newKey(t), pkix.Name{})
	const n = 1000
	seen := make(map[string]bool, n)
	and := new(big.Int).Lsh(big.NewInt(1), 128)
	and.Sub(and, big.NewInt(1))
	or := new(big.Int)
	for i := 0; i < n; i++ {
		cert, err := h.customer.IssueCustomer(csr, pki.CustomerRequest{CustomerID: testCustomer, TokenSerial: testToken, Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		sn := cert.SerialNumber
		if sn.Sign() <= 0 || sn.BitLen() != 128 {
			t.Fatalf("serial %s: sign %d, %d bits; want positive and 128 bits", pki.SerialHex(sn), sn.Sign(), sn.BitLen())
		}
		der, err := asn1.Marshal(sn)
		if err != nil {
			t.Fatal(err)
		}
		if l := len(der) - 2; l != 17 {
			t.Fatalf("serial %s is %d bytes in DER, want 17", pki.SerialHex(sn), l)
		}
		key := sn.String()
		if seen[key] {
			t.Fatalf("serial %s issued twice", pki.SerialHex(sn))
		}
		seen[key] = true
		and.And(and, sn)
		or.Or(or, sn)
	}
	// Every bit below the fixed top bit must have been both 0 and 1 in 1000
	// random draws (a failure here has probability about 2^-990).
	for bit := 0; bit < 127; bit++ {
		if and.Bit(bit) != 0 || or.Bit(bit) != 1 {
			t.Errorf("serial bit %d never changed", bit)
		}
	}
}

// flip returns a copy of b with one byte changed.
func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

func TestIssueCustomerBadSignature(t *testing.T) {
	h := newHierarchy(t, "Test")
	csr := newCSR(t, newKey(t), customerSubject())
	cn := bytes.Index(csr, []byte(testCustomer))
	if cn < 0 {
		t.Fatal("customer ID not found in CSR")
	}
	for name, bad := range map[string][]byte{
		"flipped signature byte": flip(csr, len(csr)-1),
		"flipped subject byte":   flip(csr, cn+len(testCustomer)-1), // C1000001 → C1000000
	} {
		t.Run(name, func(t *testing.T) {
			_, err := h.customer.IssueCustomer(bad, pki.CustomerRequest{CustomerID: testCustomer, TokenSerial: testToken, Now: t0})
			if !errors.Is(err, pki.ErrCSRSignature) || !errors.Is(err, pki.ErrBadCSR) {
				t.Fatalf("err = %v, want ErrCSRSignature (and ErrBadCSR)", err)
			}
			if !strings.Contains(err.Error(), "signature does not verify") {
				t.Errorf("message %q does not say the signature does not verify", err)
			}
		})
	}
}

func TestIssueCustomerKeyTypes(t *testing.T) {
	h := newHierarchy(t, "Test")
	gen := func(c elliptic.Curve) crypto.Signer {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	genRSA := func(bits int) crypto.Signer {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		ok   bool
	}{
		{"RSA-1024", genRSA(1024), false},
		{"P-224", gen(elliptic.P224()), false},
		{"P-521", gen(elliptic.P521()), false},
		{"Ed25519", edKey, false},
		{"RSA-2048", genRSA(2048), true},
		{"P-256", gen(elliptic.P256()), true},
		{"P-384", gen(elliptic.P384()), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := h.customer.IssueCustomer(newCSR(t, tc.key, pkix.Name{}), pki.CustomerRequest{
				CustomerID: testCustomer, TokenSerial: testToken, Now: t0,
			})
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if !tc.key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
					t.Error("certificate does not carry the CSR's key")
				}
				return
			}
			if !errors.Is(err, pki.ErrWeakKey) {
				t.Fatalf("err = %v, want ErrWeakKey", err)
			}
			if cert != nil {
				t.Error("a certificate was returned with the error")
			}
		})
	}
}

func TestIssueCustomerBadFields(t *testing.T) {
	h := newHierarchy(t, "Test")
	csr := newCSR(t, newKey(t), pkix.Name{})
	for _, tc := range []struct {
		name  string
		req   pki.CustomerRequest
		field string
	}{
		{"empty customer", pki.CustomerRequest{TokenSerial: testToken}, "CustomerID"},
		{"slash", pki.CustomerRequest{CustomerID: "C1/2", TokenSerial: testToken}, "CustomerID"},
		{"space", pki.CustomerRequest{CustomerID: "C1 2", TokenSerial: testToken}, "CustomerID"},
		{"colon", pki.CustomerRequest{CustomerID: "C1:2", TokenSerial: testToken}, "CustomerID"},
		{"non-ASCII", pki.CustomerRequest{CustomerID: "客户1", TokenSerial: testToken}, "CustomerID"},
		{"control", pki.CustomerRequest{CustomerID: "C1\n", TokenSerial: testToken}, "CustomerID"},
		{"leading dash", pki.CustomerRequest{CustomerID: "-C1", TokenSerial: testToken}, "CustomerID"},
		{"too long", pki.CustomerRequest{CustomerID: strings.Repeat("C", 65), TokenSerial: testToken}, "CustomerID"},
		{"empty token", pki.CustomerRequest{CustomerID: testCustomer}, "TokenSerial"},
		{"padded token", pki.CustomerRequest{CustomerID: testCustomer, TokenSerial: "3E1F    "}, "TokenSerial"},
		{"underscore token", pki.CustomerRequest{CustomerID: testCustomer, TokenSerial: "T_1"}, "TokenSerial"},
		{"negative validity", pki.CustomerRequest{CustomerID: testCustomer, TokenSerial: testToken, Validity: -time.Hour}, "Validity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Now = t0
			cert, err := h.customer.IssueCustomer(csr, tc.req)
			if !errors.Is(err, pki.ErrInvalidRequest) {
				t.Fatalf("err = %v, want ErrInvalidRequest", err)
			}
			var fe *pki.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("err = %v, want a FieldError for %s", err, tc.field)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("message %q does not name %s", err, tc.field)
			}
			if cert != nil {
				t.Error("a certificate was returned with the error")
			}
		})
	}
	// Allowed separators pass.
	if _, err := h.customer.IssueCustomer(csr, pki.CustomerRequest{CustomerID: "C-1_2.3", TokenSerial: "T-1.2", Now: t0}); err != nil {
		t.Errorf("valid identifiers refused: %v", err)
	}
}

func TestIssueCustomerCSRSubject(t *testing.T) {
	h := newHierarchy(t, "Test")
	key := newKey(t)
	for _, tc := range []struct {
		name    string
		subject pkix.Name
		uris    []string
		ok      bool
	}{
		{"empty subject", pkix.Name{}, nil, true},
		{"matching subject", customerSubject(), nil, true},
		{"matching URIs", pkix.Name{}, []string{"urn:gridpay:customer:" + testCustomer, "urn:gridpay:token:" + testToken}, true},
		{"foreign URI ignored", pkix.Name{}, []string{"https://example.com/x"}, true},
		{"other customer", pkix.Name{CommonName: "C9999999"}, nil, false},
		{"other token", pkix.Name{SerialNumber: "FFFF"}, nil, false},
		{"other customer URI", pkix.Name{}, []string{"urn:gridpay:customer:C9999999"}, false},
		{"service URI", pkix.Name{}, []string{"urn:gridpay:service:worker"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			subject := tc.subject
			subject.Organization = []string{"Attacker Inc"} // never copied
			cert, err := h.customer.IssueCustomer(newCSR(t, key, subject, tc.uris...), pki.CustomerRequest{
				CustomerID: testCustomer, TokenSerial: testToken, Now: t0,
			})
			if !tc.ok {
				if !errors.Is(err, pki.ErrCSRMismatch) {
					t.Fatalf("err = %v, want ErrCSRMismatch", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cert.Subject.Organization, []string{"GridPay"}) || len(cert.URIs) != 2 {
				t.Errorf("CSR content leaked into the certificate: %v %v", cert.Subject, cert.URIs)
			}
		})
	}
}

func TestIssueCustomerGarbage(t *testing.T) {
	h := newHierarchy(t, "Test")
	csr := newCSR(t, newKey(t), pkix.Name{})
	for name, in := range map[string][]byte{
		"nil":       nil,
		"junk":      []byte("not a CSR at all"),
		"truncated": csr[:len(csr)/2],
		"trailing":  append(bytes.Clone(csr), 0),
		"huge":      make([]byte, pki.MaxCSRSize+1),
		"a cert":    h.customer.Cert.Raw,
	} {
		t.Run(name, func(t *testing.T) {
			cert, err := h.customer.IssueCustomer(in, pki.CustomerRequest{CustomerID: testCustomer, TokenSerial: testToken, Now: t0})
			if !errors.Is(err, pki.ErrBadCSR) || cert != nil {
				t.Fatalf("cert %v, err = %v; want ErrBadCSR", cert != nil, err)
			}
		})
	}
}

func TestIssueCustomerRefusesCAKey(t *testing.T) {
	h := newHierarchy(t, "Test")
	csr := newCSR(t, h.customer.Signer, pkix.Name{})
	_, err := h.customer.IssueCustomer(csr, pki.CustomerRequest{CustomerID: testCustomer, TokenSerial: testToken, Now: t0})
	if !errors.Is(err, pki.ErrBadCSR) {
		t.Fatalf("err = %v, want ErrBadCSR", err)
	}
}

func TestCARoles(t *testing.T) {
	h := newHierarchy(t, "Test")
	key := newKey(t)
	csr := newCSR(t, key, pkix.Name{})
	creq := pki.CustomerRequest{CustomerID: testCustomer, TokenSerial: testToken, Now: t0}
	for name, f := range map[string]func() error{
		"services CA issuing a customer": func() error { _, err := h.services.IssueCustomer(csr, creq); return err },
		"root issuing a customer":        func() error { _, err := h.root.IssueCustomer(csr, creq); return err },
		"customer CA issuing a service": func() error {
			_, err := h.customer.IssueService(key.Public(), pki.ServiceRequest{Name: "worker", Now: t0})
			return err
		},
		"customer CA issuing a server": func() error {
			_, err := h.customer.IssueServer(key.Public(), pki.ServerRequest{DNSNames: []string{"gw.gridpay.test"}, Now: t0})
			return err
		},
		"issuing CA making an issuing CA": func() error {
			_, err := pki.NewIssuing(h.customer, key.Public(), pki.IssuingOptions{CommonName: "Sub", Role: pki.RoleCustomer, Now: t0})
			return err
		},
	} {
		if err := f(); !errors.Is(err, pki.ErrNotCA) {
			t.Errorf("%s: err = %v, want ErrNotCA", name, err)
		}
	}
	for cert, want := range map[*x509.Certificate]pki.Role{
		h.root.Cert: pki.RoleRoot, h.customer.Cert: pki.RoleCustomer, h.services.Cert: pki.RoleServices,
	} {
		if got := pki.RoleOf(cert); got != want {
			t.Errorf("RoleOf(%s) = %s, want %s", cert.Subject, got, want)
		}
	}
}

func TestNewCA(t *testing.T) {
	h := newHierarchy(t, "Test")
	other := newKey(t)

	_, err := pki.NewCA(h.customer.Cert, other)
	if !errors.Is(err, pki.ErrSignerMismatch) {
		t.Fatalf("mismatched signer: err = %v, want ErrSignerMismatch", err)
	}
	if !strings.Contains(err.Error(), "does not match") || !strings.Contains(err.Error(), "Customer CA") {
		t.Errorf("message %q should say which CA does not match", err)
	}

	// A CA put together by hand is checked before it signs anything.
	bad := &pki.CA{Cert: h.customer.Cert, Signer: other}
	_, err = bad.IssueCustomer(newCSR(t, newKey(t), pkix.Name{}), pki.CustomerRequest{CustomerID: testCustomer, TokenSerial: testToken, Now: t0})
	if !errors.Is(err, pki.ErrSignerMismatch) {
		t.Errorf("hand-made CA: err = %v, want ErrSignerMismatch", err)
	}
	if _, err := bad.CRL(pki.CRLRequest{Number: big.NewInt(1), ThisUpdate: t0, NextUpdate: t0.Add(time.Hour)}); !errors.Is(err, pki.ErrSignerMismatch) {
		t.Errorf("hand-made CA CRL: err = %v, want ErrSignerMismatch", err)
	}

	leafKey := newKey(t)
	leaf, err := h.customer.IssueCustomer(newCSR(t, leafKey, pkix.Name{}), pki.CustomerRequest{CustomerID: testCustomer, TokenSerial: testToken, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.NewCA(leaf, leafKey); !errors.Is(err, pki.ErrNotCA) {
		t.Errorf("leaf as CA: err = %v, want ErrNotCA", err)
	}
	if _, err := pki.NewCA(nil, leafKey); !errors.Is(err, pki.ErrNotCA) {
		t.Errorf("nil certificate: err = %v, want ErrNotCA", err)
	}
}

func TestNewRootAndIssuingProfiles(t *testing.T) {
	h := newHierarchy(t, "Test")
	r := h.root.Cert
	if !r.IsCA || r.MaxPathLen != 1 || r.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign || len(r.ExtKeyUsage) != 0 {
		t.Errorf("root: IsCA %v MaxPathLen %d KeyUsage %v EKU %v", r.IsCA, r.MaxPathLen, r.KeyUsage, r.ExtKeyUsage)
	}
	if err := r.CheckSignatureFrom(r); err != nil {
		t.Errorf("root not self-signed: %v", err)
	}
	if !r.NotAfter.Equal(t0.Add(pki.DefaultRootValidity)) || !r.NotBefore.Equal(t0.Add(-pki.ClockSkew)) {
		t.Errorf("root validity %s .. %s", r.NotBefore, r.NotAfter)
	}
	if got := r.Subject.String(); got != "CN=Test Root CA,O=GridPay,C=CN" {
		t.Errorf("root subject %q", got)
	}
	for _, tc := range []struct {
		ca  *pki.CA
		eku []x509.ExtKeyUsage
	}{
		{h.customer, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		{h.services, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	} {
		c := tc.ca.Cert
		if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero || !slices.Equal(c.ExtKeyUsage, tc.eku) {
			t.Errorf("%s: IsCA %v MaxPathLen %d zero %v EKU %v", c.Subject, c.IsCA, c.MaxPathLen, c.MaxPathLenZero, c.ExtKeyUsage)
		}
		if !bytes.Equal(c.AuthorityKeyId, r.SubjectKeyId) || c.CheckSignatureFrom(r) != nil {
			t.Errorf("%s is not linked to the root", c.Subject)
		}
		if !slices.Equal(c.Subject.Organization, []string{"GridPay"}) || !slices.Equal(c.Subject.Country, []string{"CN"}) {
			t.Errorf("%s did not inherit O and C from the root", c.Subject)
		}
		if !slices.Equal(c.CRLDistributionPoints, []string{"http://crl.gridpay.test/root.crl"}) {
			t.Errorf("%s CRL DP %q", c.Subject, c.CRLDistributionPoints)
		}
	}

	key := newKey(t)
	for name, opts := range map[string]pki.IssuingOptions{
		"no role":      {CommonName: "X CA", Now: t0},
		"no name":      {Role: pki.RoleCustomer, Now: t0},
		"root's name":  {CommonName: "Test Root CA", Role: pki.RoleCustomer, Now: t0},
		"bad country":  {CommonName: "X CA", Role: pki.RoleCustomer, Country: "China", Now: t0},
		"before root":  {CommonName: "X CA", Role: pki.RoleCustomer, Now: t0.Add(-time.Hour)},
		"control char": {CommonName: "X\x00CA", Role: pki.RoleCustomer, Now: t0},
	} {
		if _, err := pki.NewIssuing(h.root, key.Public(), opts); err == nil {
			t.Errorf("NewIssuing with %s: no error", name)
		}
	}
	if _, err := pki.NewIssuing(h.root, h.root.Cert.PublicKey, pki.IssuingOptions{CommonName: "X CA", Role: pki.RoleCustomer, Now: t0}); err == nil {
		t.Error("NewIssuing accepted the root's own key")
	}
	if _, err := pki.NewRoot(key, pki.RootOptions{CommonName: "R", Now: t0}); !errors.Is(err, pki.ErrInvalidRequest) {
		t.Errorf("NewRoot without organization: err = %v, want ErrInvalidRequest", err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.NewRoot(rsaKey, pki.RootOptions{CommonName: "R", Organization: "O", Now: t0}); !errors.Is(err, pki.ErrWeakKey) {
		t.Errorf("NewRoot with RSA-1024: err = %v, want ErrWeakKey", err)
	}
}

func TestIssueServer(t *testing.T) {
	h := newHierarchy(t, "Test")
	key := newKey(t)
	cert, err := h.services.IssueServer(key.Public(), pki.ServerRequest{
		DNSNames:    []string{"gw.gridpay.test", "gateway"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		Now:         t0,
	})
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "gw.gridpay.test" || !slices.Equal(cert.Subject.OrganizationalUnit, []string{"Server"}) {
		t.Errorf("subject %v", cert.Subject)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("usage %v %v", cert.KeyUsage, cert.ExtKeyUsage)
	}
	if err := cert.VerifyHostname("gw.gridpay.test"); err != nil {
		t.Error(err)
	}
	if err := cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	if !cert.NotAfter.Equal(t0.Add(pki.DefaultServerValidity)) {
		t.Errorf("NotAfter %s", cert.NotAfter)
	}
	id, err := pki.IdentityOf(cert)
	if err != nil || id.Kind != pki.KindServer || id.Server != "gw.gridpay.test" {
		t.Errorf("IdentityOf = %+v, %v", id, err)
	}

	for name, req := range map[string]pki.ServerRequest{
		"no names":   {},
		"upper case": {DNSNames: []string{"GW.gridpay.test"}},
		"wildcard":   {DNSNames: []string{"*.gridpay.test"}},
		"empty name": {DNSNames: []string{""}},
		"bad label":  {DNSNames: []string{"-gw.gridpay.test"}},
		"bad IP":     {IPAddresses: []net.IP{{1, 2, 3}}},
	} {
		req.Now = t0
		if _, err := h.services.IssueServer(key.Public(), req); !errors.Is(err, pki.ErrInvalidRequest) {
			t.Errorf("%s: err = %v, want ErrInvalidRequest", name, err)
		}
	}
}

func TestIssueService(t *testing.T) {
	h := newHierarchy(t, "Test")
	key := newKey(t)
	cert, err := h.services.IssueService(key.Public(), pki.ServiceRequest{Name: "worker", Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "urn:gridpay:service:worker" {
		t.Errorf("URIs %v", cert.URIs)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("EKU %v", cert.ExtKeyUsage)
	}
	id, err := pki.IdentityOf(cert)
	if err != nil || id != (pki.Identity{Kind: pki.KindService, Service: "worker"}) {
		t.Errorf("IdentityOf = %+v, %v", id, err)
	}
	for _, name := range []string{"", "Worker", "work/er", "worker:1", "work er"} {
		_, err := h.services.IssueService(key.Public(), pki.ServiceRequest{Name: name, Now: t0})
		var fe *pki.FieldError
		if !errors.As(err, &fe) || fe.Field != "Name" {
			t.Errorf("service name %q: err = %v, want a FieldError for Name", name, err)
		}
	}
	if _, err := h.services.IssueService(h.services.Cert.PublicKey, pki.ServiceRequest{Name: "worker", Now: t0}); err == nil {
		t.Error("issued a service certificate for the CA's own key")
	}
}

// craft signs an arbitrary leaf with ca's key, bypassing the profile, to
// see what IdentityOf and Verify make of certificates GridPay never issues.
func craft(t testing.TB, ca *pki.CA, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = t0, t0.Add(24*time.Hour)
	}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, newKey(t).Public(), ca.Signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestIdentityOfRejects(t *testing.T) {
	h := newHierarchy(t, "Test")
	customerSubj := pkix.Name{CommonName: testCustomer, SerialNumber: testToken, OrganizationalUnit: []string{"Customer"}}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	uris := func(ss ...string) []string { return ss }
	cust := "urn:gridpay:customer:" + testCustomer
	tok := "urn:gridpay:token:" + testToken
	for _, tc := range []struct {
		name    string
		subject pkix.Name
		uris    []string
		eku     []x509.ExtKeyUsage
	}{
		{"CN differs", pkix.Name{CommonName: "C2", SerialNumber: testToken, OrganizationalUnit: []string{"Customer"}}, uris(cust, tok), client},
		{"serialNumber differs", pkix.Name{CommonName: testCustomer, SerialNumber: "X", OrganizationalUnit: []string{"Customer"}}, uris(cust, tok), client},
		{"OU differs", pkix.Name{CommonName: testCustomer, SerialNumber: testToken, OrganizationalUnit: []string{"Service"}}, uris(cust, tok), client},
		{"two customers", customerSubj, uris(cust, tok, "urn:gridpay:customer:C2"), client},
		{"no token", customerSubj, uris(cust), client},
		{"customer and service", customerSubj, uris(cust, tok, "urn:gridpay:service:worker"), client},
		{"unknown kind", customerSubj, uris(cust, tok, "urn:gridpay:meter:M1"), client},
		{"malformed URN", customerSubj, uris(cust, tok, "urn:gridpay:customer"), client},
		{"bad customer ID", pkix.Name{CommonName: "a/b", SerialNumber: testToken, OrganizationalUnit: []string{"Customer"}}, uris("urn:gridpay:customer:a/b", tok), client},
		{"no clientAuth", customerSubj, uris(cust, tok), []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"no identity", pkix.Name{CommonName: "x"}, nil, client},
		{"server without SAN", pkix.Name{CommonName: "gw", OrganizationalUnit: []string{"Server"}}, nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := &x509.Certificate{Subject: tc.subject, ExtKeyUsage: tc.eku, KeyUsage: x509.KeyUsageDigitalSignature}
			for _, s := range tc.uris {
				tmpl.URIs = append(tmpl.URIs, mustParseURL(t, s))
			}
			id, err := pki.IdentityOf(craft(t, h.customer, tmpl))
			if !errors.Is(err, pki.ErrBadCertificate) {
				t.Fatalf("IdentityOf = %+v, %v; want ErrBadCertificate", id, err)
			}
		})
	}
	if _, err := pki.IdentityOf(h.customer.Cert); !errors.Is(err, pki.ErrBadCertificate) {
		t.Errorf("CA certificate: err = %v, want ErrBadCertificate", err)
	}
	if _, err := pki.IdentityOf(nil); !errors.Is(err, pki.ErrBadCertificate) {
		t.Errorf("nil: err = %v, want ErrBadCertificate", err)
	}
}

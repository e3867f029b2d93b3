package pki_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridpay/gridpay/pki"
)

// Times of the verifier fixture: certificates issued at tIssue, CRLs
// published at tCRL valid for a day, verification at tNow.
var (
	tIssue = t0.Add(time.Hour)
	tCRL   = t0.Add(90 * time.Minute)
	tNow   = t0.Add(2 * time.Hour)
)

type fixture struct {
	h       *hierarchy
	v       *pki.Verifier
	leaf    *x509.Certificate // a customer certificate
	service *x509.Certificate
	server  *x509.Certificate
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	h := newHierarchy(t, "Test")
	f := &fixture{h: h, leaf: issueCustomer(t, h.customer, testToken, tIssue)}
	var err error
	if f.service, err = h.services.IssueService(newKey(t).Public(), pki.ServiceRequest{Name: "worker", Now: tIssue}); err != nil {
		t.Fatal(err)
	}
	if f.server, err = h.services.IssueServer(newKey(t).Public(), pki.ServerRequest{DNSNames: []string{"gw.gridpay.test"}, Now: tIssue}); err != nil {
		t.Fatal(err)
	}
	f.v, err = pki.NewVerifier(pki.VerifierConfig{
		Roots:         []*x509.Certificate{h.root.Cert},
		Intermediates: []*x509.Certificate{h.customer.Cert, h.services.Cert},
		CRLs:          [][]byte{crl(t, h.root, 1, tCRL), crl(t, h.customer, 1, tCRL), crl(t, h.services, 1, tCRL)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// wantVerifyError checks that err is a *VerifyError matching sentinel.
func wantVerifyError(t *testing.T, err error, sentinel error) *pki.VerifyError {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("err = %v, want %v", err, sentinel)
	}
	var ve *pki.VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("err %v is not a *VerifyError", err)
	}
	return ve
}

func TestVerifyGood(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		usage x509.ExtKeyUsage
		want  pki.Identity
	}{
		{"customer", []*x509.Certificate{f.leaf}, x509.ExtKeyUsageClientAuth,
			pki.Identity{Kind: pki.KindCustomer, CustomerID: testCustomer, TokenSerial: testToken}},
		{"customer with presented chain", []*x509.Certificate{f.leaf, f.h.customer.Cert, f.h.root.Cert}, x509.ExtKeyUsageClientAuth,
			pki.Identity{Kind: pki.KindCustomer, CustomerID: testCustomer, TokenSerial: testToken}},
		{"service", []*x509.Certificate{f.service}, x509.ExtKeyUsageClientAuth,
			pki.Identity{Kind: pki.KindService, Service: "worker"}},
		{"server", []*x509.Certificate{f.server}, x509.ExtKeyUsageServerAuth,
			pki.Identity{Kind: pki.KindServer, Server: "gw.gridpay.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := f.v.Verify(tc.chain, tNow, tc.usage)
			if err != nil {
				t.Fatal(err)
			}
			if id != tc.want {
				t.Errorf("identity %+v, want %+v", id, tc.want)
			}
		})
	}
}

func TestVerifyRevokedLeaf(t *testing.T) {
	f := newFixture(t)
	other := issueCustomer(t, f.h.customer, "T2", tIssue)
	revokedAt := tIssue.Add(10 * time.Minute)
	reason, err := pki.ParseReason("lost")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.v.UpdateCRL(crl(t, f.h.customer, 2, tCRL, pki.Revoked{Serial: f.leaf.SerialNumber, RevokedAt: revokedAt, Reason: reason})); err != nil {
		t.Fatal(err)
	}
	_, err = f.v.Verify([]*x509.Certificate{f.leaf}, tNow, x509.ExtKeyUsageClientAuth)
	ve := wantVerifyError(t, err, pki.ErrRevoked)
	if ve.Reason != pki.ReasonKeyCompromise || !ve.RevokedAt.Equal(revokedAt) || ve.Serial.Cmp(f.leaf.SerialNumber) != 0 {
		t.Errorf("reason %v at %s serial %v", ve.Reason, ve.RevokedAt, ve.Serial)
	}
	msg := err.Error()
	for _, want := range []string{"revoked", testCustomer, pki.SerialHex(f.leaf.SerialNumber), "key compromise", revokedAt.Format(time.RFC3339)} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if _, err := f.v.Verify([]*x509.Certificate{other}, tNow, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("a certificate not on the CRL: %v", err)
	}
}

func TestVerifyRevokedIssuingCA(t *testing.T) {
	f := newFixture(t)
	if err := f.v.UpdateCRL(crl(t, f.h.root, 2, tCRL, pki.Revoked{Serial: f.h.customer.Cert.SerialNumber, RevokedAt: tCRL, Reason: pki.ReasonCACompromise})); err != nil {
		t.Fatal(err)
	}
	_, err := f.v.Verify([]*x509.Certificate{f.leaf}, tNow, x509.ExtKeyUsageClientAuth)
	ve := wantVerifyError(t, err, pki.ErrRevoked)
	if !strings.Contains(ve.Subject, "Customer CA") || ve.Reason != pki.ReasonCACompromise {
		t.Errorf("subject %q reason %v; want the customer CA, cACompromise", ve.Subject, ve.Reason)
	}
	// The services CA is unaffected.
	if _, err := f.v.Verify([]*x509.Certificate{f.service}, tNow, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("service certificate: %v", err)
	}
}

func TestVerifyValidityPeriod(t *testing.T) {
	f := newFixture(t)
	_, err := f.v.Verify([]*x509.Certificate{f.leaf}, f.leaf.NotAfter.Add(time.Second), x509.ExtKeyUsageClientAuth)
	ve := wantVerifyError(t, err, pki.ErrExpired)
	if !strings.Contains(ve.Error(), f.leaf.NotAfter.UTC().Format(time.RFC3339)) {
		t.Errorf("message %q does not say when it expired", ve)
	}
	_, err = f.v.Verify([]*x509.Certificate{f.leaf}, f.leaf.NotBefore.Add(-time.Second), x509.ExtKeyUsageClientAuth)
	wantVerifyError(t, err, pki.ErrNotYetValid)
	// The last second of validity still counts.
	short, err := f.h.customer.IssueCustomer(newCSR(t, newKey(t), pkix.Name{}), pki.CustomerRequest{
		CustomerID: testCustomer, TokenSerial: testToken, Validity: time.Hour, Now: tIssue,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify([]*x509.Certificate{short}, short.NotAfter, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("at NotAfter: %v", err)
	}
	_, err = f.v.Verify([]*x509.Certificate{short}, short.NotAfter.Add(time.Second), x509.ExtKeyUsageClientAuth)
	wantVerifyError(t, err, pki.ErrExpired)
}

func TestVerifyUnknownCA(t *testing.T) {
	f := newFixture(t)
	// Same names as the fixture's CAs, different keys: only signatures tell.
	lookalike := newHierarchy(t, "Test")
	stranger := newHierarchy(t, "Stranger")
	byRoot := craft(t, f.h.root, &x509.Certificate{
		Subject:     pkix.Name{CommonName: testCustomer, SerialNumber: testToken, OrganizationalUnit: []string{"Customer"}},
		URIs:        []*url.URL{mustParseURL(t, "urn:gridpay:customer:"+testCustomer), mustParseURL(t, "urn:gridpay:token:"+testToken)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore:   tIssue, NotAfter: tIssue.Add(time.Hour),
	})
	for name, leaf := range map[string]*x509.Certificate{
		"other root, same names": issueCustomer(t, lookalike.customer, testToken, tIssue),
		"other root":             issueCustomer(t, stranger.customer, testToken, tIssue),
		"signed by the root":     byRoot,
	} {
		t.Run(name, func(t *testing.T) {
			// Presenting the foreign chain must not help.
			_, err := f.v.Verify([]*x509.Certificate{leaf, lookalike.customer.Cert, stranger.customer.Cert}, tNow, x509.ExtKeyUsageClientAuth)
			wantVerifyError(t, err, pki.ErrUnknownCA)
		})
	}
}

func TestVerifyKindFromWrongCA(t *testing.T) {
	f := newFixture(t)
	// A customer-shaped certificate from the services CA, which GridPay never
	// issues: it must not log in as that customer.
	forged := craft(t, f.h.services, &x509.Certificate{
		Subject:     pkix.Name{CommonName: testCustomer, SerialNumber: testToken, OrganizationalUnit: []string{"Customer"}},
		URIs:        []*url.URL{mustParseURL(t, "urn:gridpay:customer:"+testCustomer), mustParseURL(t, "urn:gridpay:token:"+testToken)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		NotBefore:   tIssue, NotAfter: tIssue.Add(time.Hour),
	})
	_, err := f.v.Verify([]*x509.Certificate{forged}, tNow, x509.ExtKeyUsageClientAuth)
	ve := wantVerifyError(t, err, pki.ErrUnknownCA)
	if !strings.Contains(ve.Detail, "customer CA") {
		t.Errorf("detail %q should say customer certificates come from the customer CA", ve.Detail)
	}
	// And a certificate off the profile is refused even from the right CA.
	offProfile := craft(t, f.h.customer, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "someone"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		NotBefore:   tIssue, NotAfter: tIssue.Add(time.Hour),
	})
	_, err = f.v.Verify([]*x509.Certificate{offProfile}, tNow, x509.ExtKeyUsageClientAuth)
	wantVerifyError(t, err, pki.ErrBadCertificate)
}

func TestVerifyWrongUsage(t *testing.T) {
	f := newFixture(t)
	for name, tc := range map[string]struct {
		cert  *x509.Certificate
		usage x509.ExtKeyUsage
	}{
		"customer as server":   {f.leaf, x509.ExtKeyUsageServerAuth},
		"service as server":    {f.service, x509.ExtKeyUsageServerAuth},
		"server as client":     {f.server, x509.ExtKeyUsageClientAuth},
		"unsupported purpose":  {f.leaf, x509.ExtKeyUsageCodeSigning},
		"any purpose":          {f.leaf, x509.ExtKeyUsageAny},
		"email for a customer": {f.leaf, x509.ExtKeyUsageEmailProtection},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.v.Verify([]*x509.Certificate{tc.cert}, tNow, tc.usage)
			wantVerifyError(t, err, pki.ErrWrongUsage)
		})
	}
	_, err := f.v.Verify(nil, tNow, x509.ExtKeyUsageClientAuth)
	wantVerifyError(t, err, pki.ErrBadCertificate)
}

func TestVerifyCRLStale(t *testing.T) {
	f := newFixture(t)
	stale := tCRL.Add(24*time.Hour + time.Second)
	_, err := f.v.Verify([]*x509.Certificate{f.leaf}, stale, x509.ExtKeyUsageClientAuth)
	ve := wantVerifyError(t, err, pki.ErrCRLStale)
	if !strings.Contains(ve.Subject, "Customer CA") {
		t.Errorf("subject %q should name the CA whose CRL is stale", ve.Subject)
	}
	// A fresh CRL from the customer CA leaves the root's stale CRL, which
	// covers the customer CA itself.
	if err := f.v.UpdateCRL(crl(t, f.h.customer, 2, stale)); err != nil {
		t.Fatal(err)
	}
	_, err = f.v.Verify([]*x509.Certificate{f.leaf}, stale, x509.ExtKeyUsageClientAuth)
	ve = wantVerifyError(t, err, pki.ErrCRLStale)
	if !strings.Contains(ve.Subject, "Root CA") {
		t.Errorf("subject %q should name the root", ve.Subject)
	}
	if err := f.v.UpdateCRL(crl(t, f.h.root, 2, stale)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify([]*x509.Certificate{f.leaf}, stale, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("with fresh CRLs: %v", err)
	}
}

func TestVerifyNoCRL(t *testing.T) {
	h := newHierarchy(t, "Test")
	leaf := issueCustomer(t, h.customer, testToken, tIssue)
	for name, crls := range map[string][][]byte{
		"none":                  nil,
		"only the root's":       {crl(t, h.root, 1, tCRL)},
		"only the issuing CA's": {crl(t, h.customer, 1, tCRL)},
		"the other issuing CA":  {crl(t, h.root, 1, tCRL), crl(t, h.services, 1, tCRL)},
	} {
		t.Run(name, func(t *testing.T) {
			v, err := pki.NewVerifier(pki.VerifierConfig{
				Roots:         []*x509.Certificate{h.root.Cert},
				Intermediates: []*x509.Certificate{h.customer.Cert, h.services.Cert},
				CRLs:          crls,
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify([]*x509.Certificate{leaf}, tNow, x509.ExtKeyUsageClientAuth)
			wantVerifyError(t, err, pki.ErrNoCRL)
		})
	}
}

func TestUpdateCRLForged(t *testing.T) {
	f := newFixture(t)
	lookalike := newHierarchy(t, "Test")
	stranger := newHierarchy(t, "Stranger")
	revokeLeaf := pki.Revoked{Serial: f.leaf.SerialNumber, RevokedAt: tCRL, Reason: pki.ReasonKeyCompromise}
	genuine := crl(t, f.h.customer, 99, tCRL, revokeLeaf)
	for name, der := range map[string][]byte{
		// Same issuer name and key identifier scheme, another key.
		"signed by a lookalike CA": crl(t, lookalike.customer, 99, tCRL, revokeLeaf),
		"from an unknown CA":       crl(t, stranger.customer, 99, tCRL, revokeLeaf),
		"signature byte flipped":   flip(genuine, len(genuine)-1),
		"garbage":                  []byte("garbage"),
	} {
		t.Run(name, func(t *testing.T) {
			err := f.v.UpdateCRL(der)
			if !errors.Is(err, pki.ErrBadCRL) {
				t.Fatalf("err = %v, want ErrBadCRL", err)
			}
			// Nothing changed: the leaf is still good, and the genuine
			// CRL number 2 is still accepted as newer than the one in use.
			if _, err := f.v.Verify([]*x509.Certificate{f.leaf}, tNow, x509.ExtKeyUsageClientAuth); err != nil {
				t.Errorf("after a refused CRL: %v", err)
			}
		})
	}
	if err := f.v.UpdateCRL(crl(t, f.h.customer, 2, tCRL)); err != nil {
		t.Errorf("genuine CRL after forgeries: %v", err)
	}
}

func TestUpdateCRLOlder(t *testing.T) {
	f := newFixture(t)
	revoke := pki.Revoked{Serial: f.leaf.SerialNumber, RevokedAt: tCRL, Reason: pki.ReasonSuperseded}
	current := crl(t, f.h.customer, 5, tCRL, revoke)
	if err := f.v.UpdateCRL(current); err != nil {
		t.Fatal(err)
	}
	// An attacker replaying an older CRL that predates the revocation.
	err := f.v.UpdateCRL(crl(t, f.h.customer, 4, tCRL.Add(time.Minute)))
	if !errors.Is(err, pki.ErrCRLOlder) {
		t.Fatalf("older CRL: err = %v, want ErrCRLOlder", err)
	}
	if !strings.Contains(err.Error(), "5") {
		t.Errorf("message %q should give the number in use", err)
	}
	_, err = f.v.Verify([]*x509.Certificate{f.leaf}, tNow, x509.ExtKeyUsageClientAuth)
	wantVerifyError(t, err, pki.ErrRevoked)

	if err := f.v.UpdateCRL(current); err != nil {
		t.Errorf("same CRL again: %v", err)
	}
	if err := f.v.UpdateCRL(crl(t, f.h.customer, 5, tCRL)); !errors.Is(err, pki.ErrBadCRL) {
		t.Errorf("same number, other content: err = %v, want ErrBadCRL", err)
	}
}

func TestNewVerifierRejects(t *testing.T) {
	h := newHierarchy(t, "Test")
	other := newHierarchy(t, "Other")
	leaf := issueCustomer(t, h.customer, testToken, tIssue)
	roots := []*x509.Certificate{h.root.Cert}
	issuing := []*x509.Certificate{h.customer.Cert, h.services.Cert}
	for name, cfg := range map[string]pki.VerifierConfig{
		"no roots":              {Intermediates: issuing},
		"no issuing CAs":        {Roots: roots},
		"issuing CA as root":    {Roots: []*x509.Certificate{h.customer.Cert}, Intermediates: issuing},
		"leaf as issuing CA":    {Roots: roots, Intermediates: []*x509.Certificate{leaf}},
		"root as issuing CA":    {Roots: roots, Intermediates: []*x509.Certificate{h.root.Cert}},
		"issuing CA of another": {Roots: roots, Intermediates: []*x509.Certificate{other.customer.Cert}},
		"foreign CRL":           {Roots: roots, Intermediates: issuing, CRLs: [][]byte{crl(t, other.customer, 1, tCRL)}},
	} {
		if _, err := pki.NewVerifier(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestVerifyConcurrentCRLUpdates(t *testing.T) {
	f := newFixture(t)
	const revokeAt = 50 // CRL numbers from revokeAt on list the leaf
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			revoked := false
			for i := 0; i < 300; i++ {
				_, err := f.v.Verify([]*x509.Certificate{f.leaf}, tNow, x509.ExtKeyUsageClientAuth)
				switch {
				case err == nil && revoked:
					errs <- fmt.Errorf("verify %d: accepted again after being revoked", i)
					return
				case err == nil:
				case errors.Is(err, pki.ErrRevoked):
					revoked = true
				default:
					errs <- fmt.Errorf("verify %d: %v", i, err)
					return
				}
			}
		}()
	}
	for n := int64(2); n <= 100; n++ {
		var rev []pki.Revoked
		if n >= revokeAt {
			rev = append(rev, pki.Revoked{Serial: f.leaf.SerialNumber, RevokedAt: tCRL, Reason: pki.ReasonKeyCompromise})
		}
		der, err := f.h.customer.CRL(pki.CRLRequest{Number: big.NewInt(n), ThisUpdate: tCRL, NextUpdate: tCRL.Add(24 * time.Hour), Revoked: rev})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.v.UpdateCRL(der); err != nil {
			t.Fatalf("CRL %d: %v", n, err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	_, err := f.v.Verify([]*x509.Certificate{f.leaf}, tNow, x509.ExtKeyUsageClientAuth)
	wantVerifyError(t, err, pki.ErrRevoked)
}

// CRLs hands out the CRLs in use, so that another verifier fed with them
// reaches the same verdicts.
func TestVerifierCRLs(t *testing.T) {
	f := newFixture(t)
	if err := f.v.UpdateCRL(crl(t, f.h.services, 2, tCRL, pki.Revoked{Serial: f.service.SerialNumber, RevokedAt: tIssue.Add(time.Minute)})); err != nil {
		t.Fatal(err)
	}
	got := f.v.CRLs()
	if len(got) != 3 {
		t.Fatalf("%d CRLs, want 3 (root, customer CA, services CA)", len(got))
	}
	other, err := pki.NewVerifier(pki.VerifierConfig{Roots: []*x509.Certificate{f.h.root.Cert},
		Intermediates: []*x509.Certificate{f.h.customer.Cert, f.h.services.Cert}, CRLs: got})
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.Verify([]*x509.Certificate{f.service}, tNow, x509.ExtKeyUsageClientAuth)
	wantVerifyError(t, err, pki.ErrRevoked)
	if _, err := other.Verify([]*x509.Certificate{f.leaf}, tNow, x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatalf("the customer's certificate: %v", err)
	}
	got[0][0] ^= 0xff // a copy: the verifier's own CRLs are untouched
	if again := f.v.CRLs(); again[0][0] == got[0][0] {
		t.Fatal("CRLs hands out the verifier's own bytes")
	}
}

// The memo of verified chains never hides what changes: a CRL that
// revokes the certificate later, or its expiry, apply at the next call.
func TestVerifyChainCacheKeepsRevocationAndTime(t *testing.T) {
	f := newFixture(t)
	for range 3 {
		if _, err := f.v.Verify([]*x509.Certificate{f.leaf}, tNow, x509.ExtKeyUsageClientAuth); err != nil {
			t.Fatal(err)
		}
	}
	// The same certificate for another purpose is checked for it.
	_, err := f.v.Verify([]*x509.Certificate{f.leaf}, tNow, x509.ExtKeyUsageServerAuth)
	wantVerifyError(t, err, pki.ErrWrongUsage)
	// Past its validity.
	_, err = f.v.Verify([]*x509.Certificate{f.leaf}, f.leaf.NotAfter.Add(time.Second), x509.ExtKeyUsageClientAuth)
	wantVerifyError(t, err, pki.ErrExpired)
	// Revoked after being cached.
	if err := f.v.UpdateCRL(crl(t, f.h.customer, 2, tCRL, pki.Revoked{Serial: f.leaf.SerialNumber, RevokedAt: tIssue.Add(time.Minute)})); err != nil {
		t.Fatal(err)
	}
	_, err = f.v.Verify([]*x509.Certificate{f.leaf}, tNow, x509.ExtKeyUsageClientAuth)
	wantVerifyError(t, err, pki.ErrRevoked)
	// Its issuing CA revoked by the root after being cached.
	if _, err := f.v.Verify([]*x509.Certificate{f.service}, tNow, x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatal(err)
	}
	if err := f.v.UpdateCRL(crl(t, f.h.root, 2, tCRL, pki.Revoked{Serial: f.h.services.Cert.SerialNumber, RevokedAt: tIssue.Add(time.Minute)})); err != nil {
		t.Fatal(err)
	}
	_, err = f.v.Verify([]*x509.Certificate{f.service}, tNow, x509.ExtKeyUsageClientAuth)
	wantVerifyError(t, err, pki.ErrRevoked)
}

// BenchmarkVerify compares verification with the memo of chains (the
// gateway verifies on every request of a connection) and without.
func BenchmarkVerify(b *testing.B) {
	h := newHierarchy(b, "Bench")
	leaf := issueCustomer(b, h.customer, testToken, tIssue)
	for _, c := range []struct {
		name    string
		noCache bool
	}{{"cached", false}, {"uncached", true}} {
		b.Run(c.name, func(b *testing.B) {
			v, err := pki.NewVerifier(pki.VerifierConfig{Roots: []*x509.Certificate{h.root.Cert},
				Intermediates: []*x509.Certificate{h.customer.Cert, h.services.Cert},
				CRLs:          [][]byte{crl(b, h.root, 1, tCRL), crl(b, h.customer, 1, tCRL), crl(b, h.services, 1, tCRL)}, NoChainCache: c.noCache})
			if err != nil {
				b.Fatal(err)
			}
			chain := []*x509.Certificate{leaf}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(chain, tNow, x509.ExtKeyUsageClientAuth); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package pki_test

import (
	"crypto"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gridpay/gridpay/pki"
)

var fuzzRequest = pki.CustomerRequest{CustomerID: testCustomer, TokenSerial: testToken, Now: t0}

// FuzzIssueCustomer feeds arbitrary bytes as a CSR. IssueCustomer must never
// panic, must fail with a CSR or key error, and must issue only for a
// well-formed CSR whose signature verifies, certifying exactly its key.
// Seeds are in testdata/fuzz/FuzzIssueCustomer.
func FuzzIssueCustomer(f *testing.F) {
	h := newHierarchy(f, "Fuzz")
	f.Add(newCSR(f, newKey(f), customerSubject()))
	f.Fuzz(func(t *testing.T, data []byte) {
		cert, err := h.customer.IssueCustomer(data, fuzzRequest)
		if err != nil {
			if cert != nil {
				t.Fatal("a certificate was returned with an error")
			}
			if !errors.Is(err, pki.ErrBadCSR) && !errors.Is(err, pki.ErrWeakKey) {
				t.Fatalf("error of an unexpected kind: %v", err)
			}
			return
		}
		csr, perr := x509.ParseCertificateRequest(data)
		if perr != nil {
			t.Fatalf("issued for input that is not a CSR: %v", perr)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("issued for a CSR whose signature does not verify: %v", err)
		}
		if !csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
			t.Fatal("issued for another key than the CSR's")
		}
		if err := cert.CheckSignatureFrom(h.customer.Cert); err != nil {
			t.Fatalf("issued certificate not signed by the CA: %v", err)
		}
		id, err := pki.IdentityOf(cert)
		if err != nil || id.CustomerID != testCustomer || id.TokenSerial != testToken {
			t.Fatalf("issued certificate identity %+v, %v", id, err)
		}
	})
}

// TestFuzzSeeds keeps the seed corpus meaningful: the valid seeds must
// issue and every other one must be refused, so that fuzzing starts from
// both sides of the check.
func TestFuzzSeeds(t *testing.T) {
	h := newHierarchy(t, "Fuzz")
	paths, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzIssueCustomer", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 5 {
		t.Fatalf("only %d seeds in the corpus", len(paths))
	}
	for _, path := range paths {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			data := readSeed(t, path)
			_, err := h.customer.IssueCustomer(data, fuzzRequest)
			if valid := strings.HasPrefix(name, "valid-"); valid != (err == nil) {
				t.Errorf("valid seed: %v; IssueCustomer error: %v", valid, err)
			}
		})
	}
}

// readSeed decodes a one-value corpus file ("go test fuzz v1" then a
// []byte literal).
func readSeed(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	header, body, ok := strings.Cut(string(raw), "\n")
	body = strings.TrimSpace(body)
	if !ok || header != "go test fuzz v1" || !strings.HasPrefix(body, "[]byte(") || !strings.HasSuffix(body, ")") {
		t.Fatalf("%s is not a corpus file of one []byte", path)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(body, "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}

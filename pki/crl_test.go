package pki_test

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/gridpay/gridpay/pki"
)

func TestParseReason(t *testing.T) {
	for in, want := range map[string]pki.Reason{
		"lost":                   pki.ReasonKeyCompromise,
		"replaced":               pki.ReasonSuperseded,
		"returned":               pki.ReasonCessationOfOperation,
		" Lost ":                 pki.ReasonKeyCompromise,
		"key-compromise":         pki.ReasonKeyCompromise,
		"ca-compromise":          pki.ReasonCACompromise,
		"affiliation-changed":    pki.ReasonAffiliationChanged,
		"superseded":             pki.ReasonSuperseded,
		"cessation-of-operation": pki.ReasonCessationOfOperation,
		"privilege-withdrawn":    pki.ReasonPrivilegeWithdrawn,
		"unspecified":            pki.ReasonUnspecified,
	} {
		got, err := pki.ParseReason(in)
		if err != nil || got != want {
			t.Errorf("ParseReason(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if pki.ReasonKeyCompromise != 1 || pki.ReasonSuperseded != 4 || pki.ReasonCessationOfOperation != 5 {
		t.Error("reason codes differ from RFC 5280")
	}
	for _, in := range []string{"", "stolen", "certificate-hold", "remove-from-crl", "keyCompromise2"} {
		_, err := pki.ParseReason(in)
		if !errors.Is(err, pki.ErrUnknownReason) {
			t.Errorf("ParseReason(%q): err = %v, want ErrUnknownReason", in, err)
			continue
		}
		for _, allowed := range []string{"lost", "returned", "replaced", "key-compromise", "cessation-of-operation"} {
			if !strings.Contains(err.Error(), allowed) {
				t.Errorf("ParseReason(%q) error %q does not list %q", in, err, allowed)
			}
		}
	}
	if got := pki.ReasonKeyCompromise.String(); got != "keyCompromise" {
		t.Errorf("String() = %q", got)
	}

	// JSON round trip, as workflow payloads carry reasons.
	b, err := json.Marshal(struct{ R pki.Reason }{pki.ReasonSuperseded})
	if err != nil || string(b) != `{"R":"superseded"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var back struct{ R pki.Reason }
	if err := json.Unmarshal([]byte(`{"R":"lost"}`), &back); err != nil || back.R != pki.ReasonKeyCompromise {
		t.Errorf("Unmarshal = %v, %v", back.R, err)
	}
	if _, err := json.Marshal(pki.ReasonCertificateHold); err == nil {
		t.Error("certificateHold marshalled")
	}
}

func TestCRLContainsRevoked(t *testing.T) {
	h := newHierarchy(t, "Test")
	lost := issueCustomer(t, h.customer, "T1", t0)
	replaced := issueCustomer(t, h.customer, "T2", t0)
	returned := issueCustomer(t, h.customer, "T3", t0)
	kept := issueCustomer(t, h.customer, "T4", t0)
	at := t0.Add(30 * time.Minute)
	reason := func(s string) pki.Reason {
		r, err := pki.ParseReason(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	der := crl(t, h.customer, 7, t0.Add(time.Hour),
		pki.Revoked{Serial: lost.SerialNumber, RevokedAt: at, Reason: reason("lost")},
		pki.Revoked{Serial: replaced.SerialNumber, RevokedAt: at, Reason: reason("replaced")},
		pki.Revoked{Serial: returned.SerialNumber, RevokedAt: at, Reason: reason("returned")},
	)
	list, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := list.CheckSignatureFrom(h.customer.Cert); err != nil {
		t.Fatalf("CRL not signed by the customer CA: %v", err)
	}
	if list.Number.Int64() != 7 || !list.ThisUpdate.Equal(t0.Add(time.Hour)) || !list.NextUpdate.Equal(t0.Add(25*time.Hour)) {
		t.Errorf("number %v thisUpdate %s nextUpdate %s", list.Number, list.ThisUpdate, list.NextUpdate)
	}
	if !bytes.Equal(list.AuthorityKeyId, h.customer.Cert.SubjectKeyId) {
		t.Error("CRL AuthorityKeyId is not the CA's SubjectKeyId")
	}
	want := map[string]int{
		lost.SerialNumber.String():     1,
		replaced.SerialNumber.String(): 4,
		returned.SerialNumber.String(): 5,
	}
	if len(list.RevokedCertificateEntries) != len(want) {
		t.Fatalf("%d entries, want %d", len(list.RevokedCertificateEntries), len(want))
	}
	for _, e := range list.RevokedCertificateEntries {
		code, ok := want[e.SerialNumber.String()]
		if !ok {
			t.Errorf("unexpected serial %s", pki.SerialHex(e.SerialNumber))
			continue
		}
		if e.ReasonCode != code || !e.RevocationTime.Equal(at) {
			t.Errorf("serial %s: reason %d at %s, want %d at %s", pki.SerialHex(e.SerialNumber), e.ReasonCode, e.RevocationTime, code, at)
		}
		if e.SerialNumber.Cmp(kept.SerialNumber) == 0 {
			t.Error("the kept certificate is listed")
		}
	}
}

func TestCRLRejects(t *testing.T) {
	h := newHierarchy(t, "Test")
	serial := big.NewInt(42)
	ok := pki.Revoked{Serial: serial, RevokedAt: t0, Reason: pki.ReasonKeyCompromise}
	for name, req := range map[string]pki.CRLRequest{
		"no number":         {ThisUpdate: t0, NextUpdate: t0.Add(time.Hour)},
		"negative number":   {Number: big.NewInt(-1), ThisUpdate: t0, NextUpdate: t0.Add(time.Hour)},
		"huge number":       {Number: new(big.Int).Lsh(big.NewInt(1), 160), ThisUpdate: t0, NextUpdate: t0.Add(time.Hour)},
		"no next update":    {Number: big.NewInt(1), ThisUpdate: t0},
		"next before this":  {Number: big.NewInt(1), ThisUpdate: t0, NextUpdate: t0.Add(-time.Hour)},
		"nil serial":        {Number: big.NewInt(1), ThisUpdate: t0, NextUpdate: t0.Add(time.Hour), Revoked: []pki.Revoked{{RevokedAt: t0}}},
		"duplicate serial":  {Number: big.NewInt(1), ThisUpdate: t0, NextUpdate: t0.Add(time.Hour), Revoked: []pki.Revoked{ok, ok}},
		"future revocation": {Number: big.NewInt(1), ThisUpdate: t0, NextUpdate: t0.Add(time.Hour), Revoked: []pki.Revoked{{Serial: serial, RevokedAt: t0.Add(time.Minute)}}},
		"hold":              {Number: big.NewInt(1), ThisUpdate: t0, NextUpdate: t0.Add(time.Hour), Revoked: []pki.Revoked{{Serial: serial, RevokedAt: t0, Reason: pki.ReasonCertificateHold}}},
	} {
		if _, err := h.customer.CRL(req); !errors.Is(err, pki.ErrInvalidRequest) {
			t.Errorf("%s: err = %v, want ErrInvalidRequest", name, err)
		}
	}
	if _, err := h.customer.CRL(pki.CRLRequest{Number: big.NewInt(1), ThisUpdate: t0.Add(-time.Hour), NextUpdate: t0}); !errors.Is(err, pki.ErrCAValidity) {
		t.Errorf("CRL dated before the CA: err = %v, want ErrCAValidity", err)
	}
}

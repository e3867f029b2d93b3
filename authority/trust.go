package authority

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/gridpay/gridpay/internal/derrors"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/store"
)

// Trust is what a relying party (the gateway) needs to check certificates:
// the CA certificates recorded by Init and their latest CRLs, read from the
// database. It needs no CA key.
type Trust struct {
	Roots    []*x509.Certificate
	Customer []*x509.Certificate // customer CAs (more than one during a rollover)
	Services []*x509.Certificate // services CAs
}

// LoadTrust reads the recorded CA certificates.
func LoadTrust(ctx context.Context, db *store.DB) (_ *Trust, err error) {
	defer derrors.Wrap(&err, "authority.LoadTrust")
	recs, err := store.CertificatesOfKind(ctx, db, store.KindCA)
	if err != nil {
		return nil, err
	}
	t := &Trust{}
	for _, r := range recs {
		c, err := x509.ParseCertificate(r.DER)
		if err != nil {
			return nil, fmt.Errorf("recorded CA certificate %s does not parse: %w", r.Serial, err)
		}
		switch pki.RoleOf(c) {
		case pki.RoleRoot:
			t.Roots = append(t.Roots, c)
		case pki.RoleCustomer:
			t.Customer = append(t.Customer, c)
		case pki.RoleServices:
			t.Services = append(t.Services, c)
		}
	}
	if len(t.Roots) == 0 || len(t.Customer) == 0 || len(t.Services) == 0 {
		return nil, ErrNotInitialised
	}
	return t, nil
}

func (t *Trust) all() []*x509.Certificate {
	out := append([]*x509.Certificate{}, t.Roots...)
	out = append(out, t.Customer...)
	return append(out, t.Services...)
}

// Verifier returns a verifier trusting these CAs, loaded with the latest
// CRL of each.
func (t *Trust) Verifier(ctx context.Context, db *store.DB) (_ *pki.Verifier, err error) {
	defer derrors.Wrap(&err, "authority.Trust.Verifier")
	v, err := pki.NewVerifier(pki.VerifierConfig{
		Roots:         t.Roots,
		Intermediates: append(append([]*x509.Certificate{}, t.Customer...), t.Services...),
	})
	if err != nil {
		return nil, err
	}
	if err := t.RefreshCRLs(ctx, db, v); err != nil {
		return nil, err
	}
	return v, nil
}

// RefreshCRLs loads the latest saved CRL of every CA into v. CRLs v already
// has are ignored; a CRL that fails verification is an error and v keeps
// the one it had.
func (t *Trust) RefreshCRLs(ctx context.Context, db *store.DB, v *pki.Verifier) error {
	for _, ca := range t.all() {
		c, err := store.LatestCRL(ctx, db, IssuerID(ca))
		if err != nil {
			return fmt.Errorf("latest CRL of %s: %w", ca.Subject.CommonName, err)
		}
		if err := v.UpdateCRL(c.DER); err != nil {
			return err
		}
	}
	return nil
}

package authority

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gridpay/gridpay/internal/derrors"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/store"
)

// CRLInfo describes a published CRL.
type CRLInfo struct {
	CA         string    `json:"ca"`
	Number     int64     `json:"number"`
	Revoked    int       `json:"revoked"`
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update"`
}

// PublishCRL signs a fresh CRL for ca listing every certificate it issued
// that is revoked, with the next CRL number, saves it and exports it. A
// crash between taking the number and saving leaves a gap in the numbering,
// which RFC 5280 allows; the saved CRL never goes back in time.
func (a *Authority) PublishCRL(ctx context.Context, ca *pki.CA, actor string) (_ CRLInfo, err error) {
	issuer := IssuerID(ca.Cert)
	_, name, err := a.caFor(issuer)
	if err != nil {
		return CRLInfo{}, err
	}
	defer derrors.Wrap(&err, "authority.PublishCRL(%s)", name)

	revs, err := store.Revocations(ctx, a.db, issuer)
	if err != nil {
		return CRLInfo{}, err
	}
	revoked := make([]pki.Revoked, len(revs))
	for i, r := range revs {
		serial, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return CRLInfo{}, fmt.Errorf("stored serial %q is not hex", r.Serial)
		}
		revoked[i] = pki.Revoked{Serial: serial, RevokedAt: r.RevokedAt, Reason: pki.Reason(r.Reason)}
	}
	number, err := store.NextCRLNumber(ctx, a.db, issuer)
	if err != nil {
		return CRLInfo{}, err
	}
	now := a.opts.now().Truncate(time.Second)
	next := now.Add(a.opts.CRLValidity)
	der, err := ca.CRL(pki.CRLRequest{Number: big.NewInt(number), ThisUpdate: now, NextUpdate: next, Revoked: revoked})
	if err != nil {
		return CRLInfo{}, err
	}
	info := CRLInfo{CA: name, Number: number, Revoked: len(revoked), ThisUpdate: now, NextUpdate: next}
	err = a.db.Transact(ctx, store.TxOptions{}, func(tx pgx.Tx) error {
		if err := store.SaveCRL(ctx, tx, &store.CRL{Issuer: issuer, Number: number, DER: der, ThisUpdate: now, NextUpdate: next}); err != nil {
			return err
		}
		_, err := store.AppendAudit(ctx, tx, store.AuditRecord{
			Actor: actor, Action: "crl.publish", Subject: name, Outcome: store.OutcomeOK,
			Detail: map[string]any{"number": number, "revoked": int64(len(revoked)), "next_update": next.Format(time.RFC3339)},
		})
		return err
	})
	if err != nil {
		return CRLInfo{}, err
	}
	if err := a.exportCRL(name, der); err != nil {
		return CRLInfo{}, err
	}
	return info, nil
}

// PublishCRLs publishes a fresh CRL for each of the three CAs.
func (a *Authority) PublishCRLs(ctx context.Context, actor string) ([]CRLInfo, error) {
	var out []CRLInfo
	for _, ca := range a.CAs() {
		info, err := a.PublishCRL(ctx, ca, actor)
		if err != nil {
			return out, err
		}
		out = append(out, info)
	}
	return out, nil
}

// crlInfo describes the latest saved CRL of ca (store.ErrNotFound if none).
func (a *Authority) crlInfo(ctx context.Context, ca *pki.CA) (CRLInfo, error) {
	issuer := IssuerID(ca.Cert)
	_, name, err := a.caFor(issuer)
	if err != nil {
		return CRLInfo{}, err
	}
	c, err := store.LatestCRL(ctx, a.db, issuer)
	if err != nil {
		return CRLInfo{}, err
	}
	parsed, err := x509.ParseRevocationList(c.DER)
	if err != nil {
		return CRLInfo{}, fmt.Errorf("stored CRL of the %s CA does not parse: %w", name, err)
	}
	return CRLInfo{CA: name, Number: c.Number, Revoked: len(parsed.RevokedCertificateEntries),
		ThisUpdate: c.ThisUpdate, NextUpdate: c.NextUpdate}, nil
}

// CRLs describes the latest CRL of each CA.
func (a *Authority) CRLs(ctx context.Context) ([]CRLInfo, error) {
	var out []CRLInfo
	for _, ca := range a.CAs() {
		info, err := a.crlInfo(ctx, ca)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Verifier returns a pki.Verifier trusting this CA, loaded with the latest
// saved CRLs.
func (a *Authority) Verifier(ctx context.Context) (_ *pki.Verifier, err error) {
	defer derrors.Wrap(&err, "authority.Verifier")
	var crls [][]byte
	for _, ca := range a.CAs() {
		c, err := store.LatestCRL(ctx, a.db, IssuerID(ca.Cert))
		if err != nil {
			return nil, err
		}
		crls = append(crls, c.DER)
	}
	return pki.NewVerifier(pki.VerifierConfig{
		Roots:         []*x509.Certificate{a.Root.Cert},
		Intermediates: []*x509.Certificate{a.Customer.Cert, a.Services.Cert},
		CRLs:          crls,
	})
}

package authority

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/gridpay/gridpay/internal/derrors"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/store"
)

// Step is one line of the set-up report: what happened to one CA.
type Step struct {
	CA      string `json:"ca"`      // root, customer, services
	Key     string `json:"key"`     // "created" or "reused"
	Cert    string `json:"cert"`    // "created" or "reused"
	Subject string `json:"subject"` // the CA certificate's subject
	Serial  string `json:"serial"`
	// NotAfter is when the CA certificate expires (RFC 3339, UTC).
	NotAfter string `json:"not_after"`
}

// InitReport says what Init did.
type InitReport struct {
	Steps []Step    `json:"steps"`
	CRLs  []CRLInfo `json:"crls"`
	Files Files     `json:"files"`
}

// Init creates the CA: for each of root, customer and services CA it
// generates the key in the HSM unless present, creates and stores the CA
// certificate unless present, records it in the database and audits it;
// then it publishes a CRL for each CA that has none and exports the files.
// Running it again reuses everything and changes nothing but the exported
// files.
func Init(ctx context.Context, keys Keys, db *store.DB, opts Options, actor string) (_ *Authority, _ InitReport, err error) {
	defer derrors.Wrap(&err, "authority.Init")
	a := &Authority{db: db, keys: keys, opts: opts}
	var rep InitReport
	for _, slot := range a.slots() {
		step := Step{CA: slot.name, Key: "reused", Cert: "reused"}
		signer, err := keys.Signer(ctx, slot.label)
		if errors.Is(err, ErrNotFound) {
			signer, err = keys.Generate(ctx, slot.label)
			step.Key = "created"
		}
		if err != nil {
			return nil, rep, fmt.Errorf("%s CA key %q: %w", slot.name, slot.label, err)
		}
		cert, err := keys.Certificate(ctx, slot.label)
		if errors.Is(err, ErrNotFound) {
			cert, err = a.newCACert(slot, signer)
			if err == nil {
				err = keys.PutCertificate(ctx, slot.label, cert)
			}
			step.Cert = "created"
		}
		if err != nil {
			return nil, rep, fmt.Errorf("%s CA certificate: %w", slot.name, err)
		}
		ca, err := pki.NewCA(cert, signer)
		if err != nil {
			return nil, rep, fmt.Errorf("%s CA: the certificate on the HSM does not match key %q: %w", slot.name, slot.label, err)
		}
		if got := pki.RoleOf(cert); got != slot.role {
			return nil, rep, fmt.Errorf("%s CA: certificate %q has role %s, want %s", slot.name, slot.label, got, slot.role)
		}
		if slot.role != pki.RoleRoot {
			ca.CRLURL = opts.CRLURL
		}
		*slot.ca = ca

		issuer := cert
		if slot.role != pki.RoleRoot {
			issuer = a.Root.Cert
		}
		// A reused CA is recorded too when the database does not know it (a
		// fresh database next to an existing HSM), so revocations and CRLs
		// can refer to it; a known one is left alone.
		known, err := a.IsKnown(ctx, SerialHex(cert))
		if err != nil {
			return nil, rep, err
		}
		if !known {
			if err := a.recordCertificate(ctx, cert, store.KindCA, issuer, actor, map[string]any{"ca": slot.name, "key": step.Key, "cert": step.Cert}); err != nil {
				return nil, rep, err
			}
		}
		step.Subject, step.Serial = cert.Subject.String(), SerialHex(cert)
		step.NotAfter = cert.NotAfter.UTC().Format("2006-01-02T15:04:05Z")
		rep.Steps = append(rep.Steps, step)
	}

	for _, ca := range a.CAs() {
		info, err := a.crlInfo(ctx, ca)
		if errors.Is(err, store.ErrNotFound) {
			info, err = a.PublishCRL(ctx, ca, actor)
		}
		if err != nil {
			return nil, rep, err
		}
		rep.CRLs = append(rep.CRLs, info)
	}
	files, err := a.Export(ctx)
	if err != nil {
		return nil, rep, err
	}
	rep.Files = files
	return a, rep, nil
}

func (a *Authority) newCACert(slot caSlot, signer crypto.Signer) (*x509.Certificate, error) {
	now := a.opts.now()
	if slot.role == pki.RoleRoot {
		return pki.NewRoot(signer, pki.RootOptions{
			CommonName:   "GridPay Root CA",
			Organization: a.opts.Organization,
			Country:      a.opts.Country,
			Validity:     a.opts.RootValidity,
			Now:          now,
		})
	}
	name := map[pki.Role]string{pki.RoleCustomer: "GridPay Customer CA", pki.RoleServices: "GridPay Services CA"}[slot.role]
	return pki.NewIssuing(a.Root, signer.Public(), pki.IssuingOptions{
		CommonName: name,
		Role:       slot.role,
		Validity:   a.opts.IssuingValidity,
		Now:        now,
	})
}

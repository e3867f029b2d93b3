// Package authority is GridPay's running certificate authority: the CA keys
// live in the HSM, the certificates, revocations and CRLs are recorded in
// PostgreSQL (store), every act is written to the audit log, and the CA
// certificates and CRLs are exported as files for external tools and for
// publication. pki does the X.509 work; this package keeps the books.
//
// Init is the set-up ceremony (adminctl ca init): it creates what is missing
// and reuses what exists, so running it twice changes nothing. Open loads a
// CA that Init created, for the programs that issue and revoke.
package authority

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gridpay/gridpay/internal/derrors"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/store"
)

// ErrNotInitialised means the CA keys or certificates are not in the HSM.
var ErrNotInitialised = errors.New("the CA is not initialised: run \"adminctl ca init\"")

// ErrNotFound is returned by Keys when a key or certificate is absent.
var ErrNotFound = errors.New("not found")

// Keys is what the CA needs from the HSM. HSMKeys adapts an *hsm.Token.
type Keys interface {
	// Signer returns the private key with that label, or ErrNotFound.
	Signer(ctx context.Context, label string) (crypto.Signer, error)
	// Generate creates a non-extractable ECDSA P-256 key with that label.
	Generate(ctx context.Context, label string) (crypto.Signer, error)
	// Certificate returns the certificate stored with that label, or ErrNotFound.
	Certificate(ctx context.Context, label string) (*x509.Certificate, error)
	// PutCertificate stores cert under label, next to its key.
	PutCertificate(ctx context.Context, label string, cert *x509.Certificate) error
}

// Options describes the CA. config.PKI carries the same fields.
type Options struct {
	Organization string
	Country      string

	RootLabel, CustomerLabel, ServicesLabel string

	RootValidity, IssuingValidity time.Duration
	CustomerValidity              time.Duration
	ServerValidity                time.Duration
	CRLValidity                   time.Duration

	// CRLURL is the distribution point written into issued certificates.
	CRLURL string
	// Dir receives the exported certificates and CRLs; empty exports nothing.
	Dir string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now().UTC()
	}
	return time.Now().UTC()
}

// Authority is an opened CA. It is safe for concurrent use.
type Authority struct {
	db   *store.DB
	keys Keys
	opts Options

	Root     *pki.CA
	Customer *pki.CA
	Services *pki.CA
}

// IssuerID is how the store names an issuing CA: the hex of its subject key
// identifier.
func IssuerID(ca *x509.Certificate) string { return hex.EncodeToString(ca.SubjectKeyId) }

// SerialHex is how the store names a certificate.
func SerialHex(c *x509.Certificate) string { return pki.SerialHex(c.SerialNumber) }

// Open loads the CA that Init created. It fails with ErrNotInitialised when a
// key or certificate is missing from the HSM.
func Open(ctx context.Context, keys Keys, db *store.DB, opts Options) (_ *Authority, err error) {
	defer derrors.Wrap(&err, "authority.Open")
	a := &Authority{db: db, keys: keys, opts: opts}
	for _, slot := range a.slots() {
		signer, err := keys.Signer(ctx, slot.label)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w (key %q missing)", ErrNotInitialised, slot.label)
		}
		if err != nil {
			return nil, err
		}
		cert, err := keys.Certificate(ctx, slot.label)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w (certificate %q missing)", ErrNotInitialised, slot.label)
		}
		if err != nil {
			return nil, err
		}
		ca, err := pki.NewCA(cert, signer)
		if err != nil {
			return nil, err
		}
		if slot.role != pki.RoleRoot {
			ca.CRLURL = opts.CRLURL
		}
		*slot.ca = ca
	}
	return a, nil
}

type caSlot struct {
	name  string // for reports and file names: root, customer, services
	label string
	role  pki.Role
	ca    **pki.CA
}

func (a *Authority) slots() []caSlot {
	return []caSlot{
		{"root", a.opts.RootLabel, pki.RoleRoot, &a.Root},
		{"customer", a.opts.CustomerLabel, pki.RoleCustomer, &a.Customer},
		{"services", a.opts.ServicesLabel, pki.RoleServices, &a.Services},
	}
}

// Keys is the key store the CA keys live in.
func (a *Authority) Keys() Keys { return a.keys }

// CAs returns the three CAs, root first.
func (a *Authority) CAs() []*pki.CA { return []*pki.CA{a.Root, a.Customer, a.Services} }

// caFor returns the CA whose subject key identifier is issuer.
func (a *Authority) caFor(issuer string) (*pki.CA, string, error) {
	for _, s := range a.slots() {
		if IssuerID((*s.ca).Cert) == issuer {
			return *s.ca, s.name, nil
		}
	}
	return nil, "", fmt.Errorf("no CA of this authority has key identifier %s", issuer)
}

// recordCertificate inserts an issued certificate (idempotently) and its
// audit entry in one transaction.
func (a *Authority) recordCertificate(ctx context.Context, cert *x509.Certificate, kind store.CertKind, issuer *x509.Certificate, actor string, detail map[string]any) error {
	rec := &store.Certificate{
		Serial:    SerialHex(cert),
		Issuer:    IssuerID(issuer),
		Subject:   cert.Subject.String(),
		Kind:      kind,
		NotBefore: cert.NotBefore.UTC(),
		NotAfter:  cert.NotAfter.UTC(),
		DER:       cert.Raw,
	}
	if id, err := pki.IdentityOf(cert); err == nil && id.Kind == pki.KindCustomer {
		rec.CustomerID, rec.TokenSerial = id.CustomerID, id.TokenSerial
	}
	if detail == nil {
		detail = map[string]any{}
	}
	detail["kind"] = string(kind)
	detail["subject"] = rec.Subject
	detail["issuer"] = rec.Issuer
	detail["not_after"] = rec.NotAfter.Format(time.RFC3339)
	return a.db.Transact(ctx, store.TxOptions{}, func(tx pgx.Tx) error {
		if err := store.InsertCertificate(ctx, tx, rec); err != nil {
			return err
		}
		_, err := store.AppendAudit(ctx, tx, store.AuditRecord{
			Actor: actor, Action: "certificate.issue", Subject: rec.Serial, Outcome: store.OutcomeOK, Detail: detail,
		})
		return err
	})
}

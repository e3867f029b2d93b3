package authority

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gridpay/gridpay/internal/derrors"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/store"
)

// IssueCustomer issues the certificate of a customer's USB key from a CSR
// made on the key (its signature is the proof of possession), records it and
// audits it. A refused CSR is audited too, with the reason.
func (a *Authority) IssueCustomer(ctx context.Context, csrDER []byte, customerID, tokenSerial, actor string) (_ *x509.Certificate, err error) {
	defer derrors.Wrap(&err, "authority.IssueCustomer(customer %q, token %q)", customerID, tokenSerial)
	cert, err := a.Customer.IssueCustomer(csrDER, pki.CustomerRequest{
		CustomerID: customerID, TokenSerial: tokenSerial, Validity: a.opts.CustomerValidity, Now: a.opts.now(),
	})
	if err != nil {
		a.auditRefusal(ctx, actor, "certificate.issue", tokenSerial, err, map[string]any{"customer_id": customerID})
		return nil, err
	}
	if err := a.recordCertificate(ctx, cert, store.KindCustomer, a.Customer.Cert, actor, nil); err != nil {
		return nil, err
	}
	return cert, nil
}

// auditRefusal writes a refused operation to the audit log. A failure to
// audit is reported alongside, never hides the refusal.
func (a *Authority) auditRefusal(ctx context.Context, actor, action, subject string, cause error, detail map[string]any) {
	if detail == nil {
		detail = map[string]any{}
	}
	detail["reason"] = cause.Error()
	_, _ = store.AppendAudit(ctx, a.db, store.AuditRecord{
		Actor: actor, Action: action, Subject: subject, Outcome: store.OutcomeRefused, Detail: detail,
	})
}

// RevokeResult says what Revoke did.
type RevokeResult struct {
	Serial    string     `json:"serial"`
	Reason    pki.Reason `json:"reason"`
	RevokedAt time.Time  `json:"revoked_at"`
	// Already is true when the certificate was revoked before this call.
	Already bool    `json:"already"`
	CRL     CRLInfo `json:"crl"`
}

// Revoke records the revocation of a certificate this CA issued, audits it
// and republishes the issuing CA's CRL. Revoking twice is harmless: the
// first revocation stands and the CRL is republished.
func (a *Authority) Revoke(ctx context.Context, serial string, reason pki.Reason, actor, note string) (_ RevokeResult, err error) {
	defer derrors.Wrap(&err, "authority.Revoke(%s)", serial)
	if !reason.Issuable() {
		return RevokeResult{}, fmt.Errorf("reason %s cannot be used to revoke", reason)
	}
	cert, err := store.GetCertificate(ctx, a.db, serial)
	if err != nil {
		return RevokeResult{}, err
	}
	ca, _, err := a.caFor(cert.Issuer)
	if err != nil {
		return RevokeResult{}, err
	}
	var res RevokeResult
	err = a.db.Transact(ctx, store.TxOptions{}, func(tx pgx.Tx) error {
		rev, now, err := store.RevokeCertificate(ctx, tx, store.Revocation{
			Serial: serial, Reason: store.RevocationReason(reason), RevokedAt: a.opts.now(), RevokedBy: actor, Note: note,
		})
		if err != nil {
			return err
		}
		res = RevokeResult{Serial: serial, Reason: pki.Reason(rev.Reason), RevokedAt: rev.RevokedAt, Already: !now}
		if !now {
			return nil
		}
		_, err = store.AppendAudit(ctx, tx, store.AuditRecord{
			Actor: actor, Action: "certificate.revoke", Subject: serial, Outcome: store.OutcomeOK,
			Detail: map[string]any{"reason": reason.String(), "customer_id": cert.CustomerID, "token_serial": cert.TokenSerial},
		})
		return err
	})
	if err != nil {
		return RevokeResult{}, err
	}
	res.CRL, err = a.PublishCRL(ctx, ca, actor)
	return res, err
}

// IsKnown reports whether the certificate was issued by this CA and recorded.
func (a *Authority) IsKnown(ctx context.Context, serial string) (bool, error) {
	_, err := store.GetCertificate(ctx, a.db, serial)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// ServiceCert asks for a certificate of one of GridPay's own services,
// issued by the services CA for a key in an HSM.
type ServiceCert struct {
	// Server: a TLS server certificate for these names (the gateway).
	// Otherwise a client certificate naming the service (gateway, worker:
	// what the platform's firewall admits).
	Server      bool
	Name        string
	DNSNames    []string
	IPAddresses []net.IP
}

// IssueServiceKey makes sure the key labelled label exists in keys (creating
// it, non-extractable, if missing), issues its certificate from the services
// CA, stores the certificate under the same label (replacing an older one),
// records and audits it. keys may be another HSM than the CA's.
func (a *Authority) IssueServiceKey(ctx context.Context, keys Keys, label string, req ServiceCert, actor string) (_ *x509.Certificate, err error) {
	defer derrors.Wrap(&err, "authority.IssueServiceKey(%q, %q)", label, req.Name)
	signer, err := keys.Signer(ctx, label)
	if errors.Is(err, ErrNotFound) {
		signer, err = keys.Generate(ctx, label)
	}
	if err != nil {
		return nil, err
	}
	var cert *x509.Certificate
	kind := store.KindService
	if req.Server {
		kind = store.KindServer
		cert, err = a.Services.IssueServer(signer.Public(), pki.ServerRequest{
			CommonName: req.Name, DNSNames: req.DNSNames, IPAddresses: req.IPAddresses,
			Validity: a.opts.ServerValidity, Now: a.opts.now(),
		})
	} else {
		cert, err = a.Services.IssueService(signer.Public(), pki.ServiceRequest{
			Name: req.Name, Validity: a.opts.ServerValidity, Now: a.opts.now(),
		})
	}
	if err != nil {
		return nil, err
	}
	if err := a.recordCertificate(ctx, cert, kind, a.Services.Cert, actor, map[string]any{"service": req.Name, "key_label": label}); err != nil {
		return nil, err
	}
	if err := keys.PutCertificate(ctx, label, cert); err != nil {
		return nil, err
	}
	return cert, nil
}

// BoundCertificate is a customer certificate with its binding.
type BoundCertificate struct {
	Cert    *x509.Certificate
	Binding store.Binding
}

// IssueForBinding issues the certificate of a customer's USB key and
// records it together with a pending binding, atomically and idempotently:
// the same requestKey returns the certificate and binding it made before.
// Either both the certificate and the pending binding are recorded or
// neither is, so a crash can never leave a recorded certificate without a
// binding. A live binding of the token or the customer is
// store.ErrAlreadyBound and records nothing.
func (a *Authority) IssueForBinding(ctx context.Context, requestKey string, csrDER []byte, customerID, tokenSerial, actor string) (_ BoundCertificate, err error) {
	defer derrors.Wrap(&err, "authority.IssueForBinding(%q)", requestKey)
	if requestKey == "" {
		return BoundCertificate{}, errors.New("empty request key")
	}
	if bc, err := a.boundForRequest(ctx, requestKey); !errors.Is(err, store.ErrNotFound) {
		return bc, err
	}
	cert, err := a.Customer.IssueCustomer(csrDER, pki.CustomerRequest{
		CustomerID: customerID, TokenSerial: tokenSerial, Validity: a.opts.CustomerValidity, Now: a.opts.now(),
	})
	if err != nil {
		a.auditRefusal(ctx, actor, "certificate.issue", tokenSerial, err, map[string]any{"customer_id": customerID})
		return BoundCertificate{}, err
	}
	rec := &store.Certificate{
		Serial: SerialHex(cert), Issuer: IssuerID(a.Customer.Cert), Subject: cert.Subject.String(),
		CustomerID: customerID, TokenSerial: tokenSerial, Kind: store.KindCustomer,
		NotBefore: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC(), DER: cert.Raw,
	}
	var b store.Binding
	err = a.db.Transact(ctx, store.TxOptions{}, func(tx pgx.Tx) error {
		if err := store.InsertCertificate(ctx, tx, rec); err != nil {
			return err
		}
		var err error
		if b, err = store.CreateBindingForRequest(ctx, tx, requestKey, tokenSerial, customerID, rec.Serial, actor); err != nil {
			return err
		}
		_, err = store.AppendAudit(ctx, tx, store.AuditRecord{
			Actor: actor, Action: "certificate.issue", Subject: rec.Serial, Outcome: store.OutcomeOK,
			Detail: map[string]any{"kind": "customer", "customer_id": customerID, "token_serial": tokenSerial,
				"binding_id": b.ID, "not_after": rec.NotAfter.Format(time.RFC3339)},
		})
		return err
	})
	if errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrAlreadyBound) {
		// A concurrent attempt with the same key won the race.
		return a.boundForRequest(ctx, requestKey)
	}
	if errors.Is(err, store.ErrAlreadyBound) {
		a.auditRefusal(ctx, actor, "binding.create", tokenSerial, err, map[string]any{"customer_id": customerID})
	}
	if err != nil {
		return BoundCertificate{}, err
	}
	return BoundCertificate{Cert: cert, Binding: b}, nil
}

func (a *Authority) boundForRequest(ctx context.Context, requestKey string) (BoundCertificate, error) {
	b, err := store.BindingForRequest(ctx, a.db, requestKey)
	if err != nil {
		return BoundCertificate{}, err
	}
	rec, err := store.GetCertificate(ctx, a.db, b.CertSerial)
	if err != nil {
		return BoundCertificate{}, err
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return BoundCertificate{}, fmt.Errorf("recorded certificate %s does not parse: %w", rec.Serial, err)
	}
	return BoundCertificate{Cert: cert, Binding: b}, nil
}

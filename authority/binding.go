package authority

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gridpay/gridpay/internal/derrors"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/store"
)

// ErrCertificateRevoked means a binding cannot become active because its
// certificate was revoked meanwhile (an unbind raced the proof).
var ErrCertificateRevoked = errors.New("the binding's certificate is revoked")

// LiveBinding returns the pending or active binding of a token, or
// store.ErrNotFound.
func (a *Authority) LiveBinding(ctx context.Context, tokenSerial string) (store.Binding, error) {
	return store.LiveBindingForToken(ctx, a.db, tokenSerial)
}

// ActivateBinding makes a pending binding active once the token proved it
// holds the key. It refuses a binding whose certificate was revoked, so an
// active binding never has a revoked certificate. Idempotent.
func (a *Authority) ActivateBinding(ctx context.Context, bindingID int64, actor string) (_ store.Binding, err error) {
	defer derrors.Wrap(&err, "authority.ActivateBinding(%d)", bindingID)
	var b store.Binding
	err = a.db.Transact(ctx, store.TxOptions{}, func(tx pgx.Tx) error {
		cur, err := store.GetBinding(ctx, tx, bindingID)
		if err != nil {
			return err
		}
		if cur.Status == store.BindingActive {
			b = cur
			return nil
		}
		revoked, err := store.IsRevoked(ctx, tx, cur.CertSerial)
		if err != nil {
			return err
		}
		if revoked {
			return fmt.Errorf("%w: certificate %s of binding %d", ErrCertificateRevoked, cur.CertSerial, bindingID)
		}
		if b, err = store.ActivateBinding(ctx, tx, bindingID, a.opts.now()); err != nil {
			return err
		}
		_, err = store.AppendAudit(ctx, tx, store.AuditRecord{
			Actor: actor, Action: "binding.activate", Subject: b.TokenSerial, Outcome: store.OutcomeOK,
			Detail: map[string]any{"customer_id": b.CustomerID, "cert_serial": b.CertSerial, "binding_id": b.ID},
		})
		return err
	})
	return b, err
}

// EndResult says what EndBinding did.
type EndResult struct {
	Binding   store.Binding `json:"binding"`
	RevokedAt time.Time     `json:"revoked_at"`
	CRL       CRLInfo       `json:"crl"`
}

// EndBinding ends a binding for good: its certificate is revoked with
// reason and the binding deactivated in one transaction (so there is never
// an active binding with a revoked certificate, nor a revoked certificate
// with a live binding), audited, then the CRL is republished. Idempotent:
// ending an ended binding republishes the CRL and changes nothing else.
func (a *Authority) EndBinding(ctx context.Context, bindingID int64, reason pki.Reason, why, actor string) (_ EndResult, err error) {
	defer derrors.Wrap(&err, "authority.EndBinding(%d, %s)", bindingID, reason)
	var res EndResult
	err = a.db.Transact(ctx, store.TxOptions{}, func(tx pgx.Tx) error {
		cur, err := store.GetBinding(ctx, tx, bindingID)
		if err != nil {
			return err
		}
		now := a.opts.now()
		rev, revokedNow, err := store.RevokeCertificate(ctx, tx, store.Revocation{
			Serial: cur.CertSerial, Reason: store.RevocationReason(reason), RevokedAt: now, RevokedBy: actor, Note: why,
		})
		if err != nil {
			return err
		}
		b, err := store.DeactivateBinding(ctx, tx, bindingID, why, now)
		if err != nil {
			return err
		}
		res = EndResult{Binding: b, RevokedAt: rev.RevokedAt}
		if !revokedNow && cur.Status == store.BindingInactive {
			return nil
		}
		_, err = store.AppendAudit(ctx, tx, store.AuditRecord{
			Actor: actor, Action: "binding.end", Subject: b.TokenSerial, Outcome: store.OutcomeOK,
			Detail: map[string]any{"customer_id": b.CustomerID, "cert_serial": b.CertSerial, "binding_id": b.ID,
				"reason": reason.String(), "why": why, "was": string(cur.Status)},
		})
		return err
	})
	if err != nil {
		return EndResult{}, err
	}
	res.CRL, err = a.PublishCRL(ctx, a.Customer, actor)
	return res, err
}

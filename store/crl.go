package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gridpay/gridpay/internal/derrors"
)

// ErrStaleCRL means SaveCRL was given a CRL older than the one already
// saved for its issuer (for example by a slow publisher that lost a race).
var ErrStaleCRL = errors.New("a newer CRL is already saved")

// CRL is the latest certificate revocation list published by an issuer.
type CRL struct {
	Issuer     string
	Number     int64 // its CRL number, from NextCRLNumber
	DER        []byte
	ThisUpdate time.Time
	NextUpdate time.Time
	SavedAt    time.Time // set by SaveCRL
}

// NextCRLNumber hands out the issuer's next CRL number: 1 for an issuer's
// first CRL, then strictly increasing, atomically even under concurrent
// callers. A number handed out and never used leaves a gap, which RFC 5280
// allows.
func NextCRLNumber(ctx context.Context, q Querier, issuer string) (n int64, err error) {
	defer derrors.Wrap(&err, "store.NextCRLNumber(ctx, %q)", issuer)
	if issuer == "" {
		return 0, fmt.Errorf("%w: issuer is empty", ErrInvalid)
	}
	err = q.QueryRow(ctx, `
		INSERT INTO crl_state (issuer, last_number) VALUES ($1, 1)
		ON CONFLICT (issuer) DO UPDATE SET last_number = crl_state.last_number + 1
		RETURNING last_number`, issuer).Scan(&n)
	return n, err
}

// SaveCRL stores c as the issuer's latest CRL. Its number must have come
// from NextCRLNumber and be higher than the saved CRL's, if any
// (ErrStaleCRL otherwise), so the stored CRL never goes back in time.
// Saving the same number again replaces the CRL, which lets a retried
// publication overwrite its own earlier attempt.
func SaveCRL(ctx context.Context, q Querier, c *CRL) (err error) {
	defer derrors.Wrap(&err, "store.SaveCRL(ctx, %q, %d)", c.Issuer, c.Number)
	switch {
	case c.Number <= 0:
		return fmt.Errorf("%w: CRL number %d", ErrInvalid, c.Number)
	case len(c.DER) == 0:
		return fmt.Errorf("%w: DER is empty", ErrInvalid)
	case !c.NextUpdate.After(c.ThisUpdate):
		return fmt.Errorf("%w: next update %v is not after this update %v", ErrInvalid, c.NextUpdate, c.ThisUpdate)
	}
	var savedAt time.Time
	err = q.QueryRow(ctx, `
		UPDATE crl_state
		SET crl_number = $2, crl_der = $3, this_update = $4, next_update = $5, saved_at = now()
		WHERE issuer = $1 AND $2 <= last_number AND (crl_number IS NULL OR crl_number <= $2)
		RETURNING saved_at`,
		c.Issuer, c.Number, c.DER, c.ThisUpdate.UTC(), c.NextUpdate.UTC()).Scan(&savedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		var last int64
		var saved *int64
		err := q.QueryRow(ctx, `SELECT last_number, crl_number FROM crl_state WHERE issuer = $1`, c.Issuer).Scan(&last, &saved)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("%w: no CRL number was ever handed out for this issuer", ErrInvalid)
		case err != nil:
			return err
		case c.Number > last:
			return fmt.Errorf("%w: CRL number %d was never handed out (last is %d)", ErrInvalid, c.Number, last)
		case saved != nil:
			return fmt.Errorf("%w: number %d is saved", ErrStaleCRL, *saved)
		}
		return fmt.Errorf("CRL not saved for an unknown reason")
	}
	if err != nil {
		return err
	}
	c.SavedAt = savedAt.UTC()
	return nil
}

// LatestCRL returns the issuer's latest saved CRL, or ErrNotFound if none
// was saved yet.
func LatestCRL(ctx context.Context, q Querier, issuer string) (_ CRL, err error) {
	defer derrors.Wrap(&err, "store.LatestCRL(ctx, %q)", issuer)
	c := CRL{Issuer: issuer}
	err = q.QueryRow(ctx, `
		SELECT crl_number, crl_der, this_update, next_update, saved_at
		FROM crl_state WHERE issuer = $1 AND crl_number IS NOT NULL`, issuer).
		Scan(&c.Number, &c.DER, &c.ThisUpdate, &c.NextUpdate, &c.SavedAt)
	if err != nil {
		return CRL{}, translate(err)
	}
	c.ThisUpdate, c.NextUpdate, c.SavedAt = c.ThisUpdate.UTC(), c.NextUpdate.UTC(), c.SavedAt.UTC()
	return c, nil
}

package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gridpay/gridpay/internal/derrors"
)

// CertKind says what a certificate is for.
type CertKind string

const (
	KindCustomer CertKind = "customer" // on a customer's USB key
	KindServer   CertKind = "server"   // the gateway's TLS certificate
	KindService  CertKind = "service"  // GridPay's own clients of other services
	KindCA       CertKind = "ca"       // an issuing or root CA
)

func (k CertKind) valid() bool {
	switch k {
	case KindCustomer, KindServer, KindService, KindCA:
		return true
	}
	return false
}

// Certificate is an issued certificate as recorded.
type Certificate struct {
	// Serial is the serial number in lower-case hex without separators or
	// leading zeros beyond what the issuer used.
	Serial string
	// Issuer identifies the issuing CA (its subject key identifier in hex,
	// or its name); Revocations and the CRL state are keyed by it.
	Issuer  string
	Subject string
	// CustomerID and TokenSerial are "" when the certificate belongs to no
	// customer or token.
	CustomerID  string
	TokenSerial string
	Kind        CertKind
	NotBefore   time.Time
	NotAfter    time.Time
	DER         []byte
	// SHA256 is the fingerprint of DER; InsertCertificate computes it.
	SHA256    [32]byte
	CreatedAt time.Time
}

var serialRE = regexp.MustCompile(`^[0-9a-f]{1,64}$`)

func checkSerial(serial string) error {
	if !serialRE.MatchString(serial) {
		return fmt.Errorf("%w: certificate serial %q must be 1 to 64 lower-case hex digits", ErrInvalid, serial)
	}
	return nil
}

// InsertCertificate records an issued certificate and fills in its SHA256
// and CreatedAt. Recording the same certificate again (same serial, same
// DER) is a no-op, so a retried activity does not fail; a different
// certificate under an existing serial is ErrConflict.
func InsertCertificate(ctx context.Context, q Querier, c *Certificate) (err error) {
	defer derrors.Wrap(&err, "store.InsertCertificate(ctx, %q)", c.Serial)
	if err := checkSerial(c.Serial); err != nil {
		return err
	}
	switch {
	case c.Issuer == "":
		return fmt.Errorf("%w: issuer is empty", ErrInvalid)
	case !c.Kind.valid():
		return fmt.Errorf("%w: kind %q", ErrInvalid, c.Kind)
	case len(c.DER) == 0:
		return fmt.Errorf("%w: DER is empty", ErrInvalid)
	case !c.NotAfter.After(c.NotBefore):
		return fmt.Errorf("%w: not_after %v is not after not_before %v", ErrInvalid, c.NotAfter, c.NotBefore)
	}
	sum := sha256.Sum256(c.DER)
	var createdAt time.Time
	err = q.QueryRow(ctx, `
		INSERT INTO certificates
			(serial, issuer, subject, customer_id, token_serial, kind, not_before, not_after, der, sha256)
		VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), $6, $7, $8, $9, $10)
		ON CONFLICT (serial) DO NOTHING
		RETURNING created_at`,
		c.Serial, c.Issuer, c.Subject, c.CustomerID, c.TokenSerial, string(c.Kind),
		c.NotBefore.UTC(), c.NotAfter.UTC(), c.DER, sum[:],
	).Scan(&createdAt)
	if errors.Is(err, pgx.ErrNoRows) {
		existing, gerr := GetCertificate(ctx, q, c.Serial)
		if gerr != nil {
			return gerr
		}
		if !bytes.Equal(existing.DER, c.DER) {
			return fmt.Errorf("%w: serial %s is already recorded for a different certificate", ErrConflict, c.Serial)
		}
		c.SHA256, c.CreatedAt = existing.SHA256, existing.CreatedAt
		return nil
	}
	if err != nil {
		return translate(err)
	}
	c.SHA256, c.CreatedAt = sum, createdAt.UTC()
	return nil
}

const certificateColumns = `serial, issuer, subject, COALESCE(customer_id, ''), COALESCE(token_serial, ''),
	kind, not_before, not_after, der, sha256, created_at`

func scanCertificate(row pgx.Row) (Certificate, error) {
	var (
		c    Certificate
		kind string
		sum  []byte
	)
	err := row.Scan(&c.Serial, &c.Issuer, &c.Subject, &c.CustomerID, &c.TokenSerial,
		&kind, &c.NotBefore, &c.NotAfter, &c.DER, &sum, &c.CreatedAt)
	if err != nil {
		return Certificate{}, err
	}
	c.Kind = CertKind(kind)
	copy(c.SHA256[:], sum)
	c.NotBefore, c.NotAfter, c.CreatedAt = c.NotBefore.UTC(), c.NotAfter.UTC(), c.CreatedAt.UTC()
	return c, nil
}

// GetCertificate returns the certificate with the given serial, or
// ErrNotFound.
func GetCertificate(ctx context.Context, q Querier, serial string) (_ Certificate, err error) {
	defer derrors.Wrap(&err, "store.GetCertificate(ctx, %q)", serial)
	c, err := scanCertificate(q.QueryRow(ctx, `SELECT `+certificateColumns+` FROM certificates WHERE serial = $1`, serial))
	return c, translate(err)
}

// CertificatesForCustomer returns the customer's certificates, oldest
// first (revoked ones included; see IsRevoked).
func CertificatesForCustomer(ctx context.Context, q Querier, customerID string) (_ []Certificate, err error) {
	defer derrors.Wrap(&err, "store.CertificatesForCustomer(ctx, %q)", customerID)
	return listCertificates(ctx, q, "customer_id", customerID)
}

// CertificatesForToken returns the certificates issued for a USB key,
// oldest first (revoked ones included; see IsRevoked).
func CertificatesForToken(ctx context.Context, q Querier, tokenSerial string) (_ []Certificate, err error) {
	defer derrors.Wrap(&err, "store.CertificatesForToken(ctx, %q)", tokenSerial)
	return listCertificates(ctx, q, "token_serial", tokenSerial)
}

// listCertificates selects by column, which is one of two constants above,
// never caller input.
// CertificatesOfKind lists the certificates of one kind (e.g. KindCA),
// oldest first.
func CertificatesOfKind(ctx context.Context, q Querier, kind CertKind) (_ []Certificate, err error) {
	defer derrors.Wrap(&err, "store.CertificatesOfKind(ctx, %q)", kind)
	return listCertificates(ctx, q, "kind", string(kind))
}

func listCertificates(ctx context.Context, q Querier, column, value string) ([]Certificate, error) {
	rows, err := q.Query(ctx, `SELECT `+certificateColumns+` FROM certificates WHERE `+column+` = $1
		ORDER BY not_before, serial`, value)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Certificate, error) { return scanCertificate(r) })
}

// RevocationReason is an RFC 5280 CRLReason code.
type RevocationReason int16

const (
	ReasonUnspecified          RevocationReason = 0
	ReasonKeyCompromise        RevocationReason = 1
	ReasonCACompromise         RevocationReason = 2
	ReasonAffiliationChanged   RevocationReason = 3
	ReasonSuperseded           RevocationReason = 4
	ReasonCessationOfOperation RevocationReason = 5
	ReasonCertificateHold      RevocationReason = 6
	ReasonRemoveFromCRL        RevocationReason = 8
	ReasonPrivilegeWithdrawn   RevocationReason = 9
	ReasonAACompromise         RevocationReason = 10
)

func (r RevocationReason) valid() bool { return r >= 0 && r <= 10 && r != 7 }

// Revocation records that a certificate was revoked.
type Revocation struct {
	Serial    string
	Reason    RevocationReason
	RevokedAt time.Time
	RevokedBy string // the operator or workflow that revoked it
	Note      string // free text for humans; no secrets
}

// RevokeCertificate records a revocation. It is idempotent: revoking an
// already revoked certificate changes nothing and returns the existing
// revocation with revokedNow false. An unknown serial is ErrNotFound.
func RevokeCertificate(ctx context.Context, q Querier, r Revocation) (_ Revocation, revokedNow bool, err error) {
	defer derrors.Wrap(&err, "store.RevokeCertificate(ctx, %q)", r.Serial)
	switch {
	case !r.Reason.valid():
		return Revocation{}, false, fmt.Errorf("%w: reason %d is not an RFC 5280 CRLReason", ErrInvalid, r.Reason)
	case r.RevokedBy == "":
		return Revocation{}, false, fmt.Errorf("%w: revoked_by is empty", ErrInvalid)
	case r.RevokedAt.IsZero():
		return Revocation{}, false, fmt.Errorf("%w: revoked_at is zero", ErrInvalid)
	}
	// Selecting from certificates instead of inserting VALUES turns an
	// unknown serial into "no row" rather than a foreign key violation,
	// which would abort a caller's transaction.
	out, err := scanRevocation(q.QueryRow(ctx, `
		INSERT INTO revocations (serial, reason, revoked_at, revoked_by, note)
		SELECT serial, $2, $3, $4, $5 FROM certificates WHERE serial = $1
		ON CONFLICT (serial) DO NOTHING
		RETURNING serial, reason, revoked_at, revoked_by, note`,
		r.Serial, int16(r.Reason), r.RevokedAt.UTC(), r.RevokedBy, r.Note))
	if err == nil {
		return out, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return Revocation{}, false, translate(err)
	}
	// Either revoked before (possibly by a concurrent caller whose commit
	// ON CONFLICT waited for; this new statement sees it) or unknown.
	out, err = getRevocation(ctx, q, r.Serial)
	if err != nil {
		return Revocation{}, false, err
	}
	return out, false, nil
}

func getRevocation(ctx context.Context, q Querier, serial string) (Revocation, error) {
	r, err := scanRevocation(q.QueryRow(ctx,
		`SELECT serial, reason, revoked_at, revoked_by, note FROM revocations WHERE serial = $1`, serial))
	return r, translate(err)
}

func scanRevocation(row pgx.Row) (Revocation, error) {
	var (
		r      Revocation
		reason int16
	)
	if err := row.Scan(&r.Serial, &reason, &r.RevokedAt, &r.RevokedBy, &r.Note); err != nil {
		return Revocation{}, err
	}
	r.Reason, r.RevokedAt = RevocationReason(reason), r.RevokedAt.UTC()
	return r, nil
}

// GetRevocation returns the revocation of a certificate, or ErrNotFound if
// it is not revoked (or unknown).
func GetRevocation(ctx context.Context, q Querier, serial string) (_ Revocation, err error) {
	defer derrors.Wrap(&err, "store.GetRevocation(ctx, %q)", serial)
	return getRevocation(ctx, q, serial)
}

// IsRevoked reports whether a known certificate is revoked. A serial this
// store never recorded is ErrNotFound, not "not revoked": a caller checking
// a presented certificate must not mistake "never issued by us" for "good".
func IsRevoked(ctx context.Context, q Querier, serial string) (_ bool, err error) {
	defer derrors.Wrap(&err, "store.IsRevoked(ctx, %q)", serial)
	var revoked bool
	err = q.QueryRow(ctx, `
		SELECT r.serial IS NOT NULL
		FROM certificates c LEFT JOIN revocations r USING (serial)
		WHERE c.serial = $1`, serial).Scan(&revoked)
	return revoked, translate(err)
}

// Revocations returns every revoked certificate of an issuer, for building
// its CRL, ordered by revocation time then serial.
func Revocations(ctx context.Context, q Querier, issuer string) (_ []Revocation, err error) {
	defer derrors.Wrap(&err, "store.Revocations(ctx, %q)", issuer)
	rows, err := q.Query(ctx, `
		SELECT r.serial, r.reason, r.revoked_at, r.revoked_by, r.note
		FROM revocations r JOIN certificates c USING (serial)
		WHERE c.issuer = $1
		ORDER BY r.revoked_at, r.serial`, issuer)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Revocation, error) { return scanRevocation(r) })
}

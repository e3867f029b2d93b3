package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gridpay/gridpay/internal/derrors"
)

// BindingStatus is where a binding stands.
type BindingStatus string

const (
	BindingPending  BindingStatus = "pending"  // certificate issued, not yet confirmed by the token
	BindingActive   BindingStatus = "active"   // the key may log in
	BindingInactive BindingStatus = "inactive" // ended: unbound, replaced or never confirmed
)

// Binding ties a USB key (token serial) and its certificate to a customer.
type Binding struct {
	ID            int64
	TokenSerial   string
	CustomerID    string
	CertSerial    string
	Status        BindingStatus
	CreatedBy     string
	RequestKey    string // "" when created without one
	CreatedAt     time.Time
	ActivatedAt   *time.Time
	DeactivatedAt *time.Time
	EndReason     string
}

// ErrAlreadyBound means the token or the customer has a live binding.
var ErrAlreadyBound = errors.New("already bound")

const bindingColumns = `id, token_serial, customer_id, cert_serial, status, created_by, coalesce(request_key, ''), created_at, activated_at, deactivated_at, end_reason`

func scanBinding(row pgx.Row) (Binding, error) {
	var b Binding
	var status string
	err := row.Scan(&b.ID, &b.TokenSerial, &b.CustomerID, &b.CertSerial, &status, &b.CreatedBy, &b.RequestKey, &b.CreatedAt, &b.ActivatedAt, &b.DeactivatedAt, &b.EndReason)
	b.Status = BindingStatus(status)
	return b, translate(err)
}

// CreateBinding records a pending binding for a recorded certificate. A
// live binding of the same token or customer makes it ErrAlreadyBound.
func CreateBinding(ctx context.Context, q Querier, tokenSerial, customerID, certSerial, by string) (Binding, error) {
	return CreateBindingForRequest(ctx, q, "", tokenSerial, customerID, certSerial, by)
}

// CreateBindingForRequest is CreateBinding keyed by the idempotency key of
// the request; BindingForRequest finds it again.
func CreateBindingForRequest(ctx context.Context, q Querier, requestKey, tokenSerial, customerID, certSerial, by string) (_ Binding, err error) {
	defer derrors.Wrap(&err, "store.CreateBinding(ctx, %q, %q)", tokenSerial, customerID)
	var key *string
	if requestKey != "" {
		key = &requestKey
	}
	b, err := scanBinding(q.QueryRow(ctx, `
		INSERT INTO bindings (token_serial, customer_id, cert_serial, status, created_by, request_key)
		VALUES ($1, $2, $3, 'pending', $4, $5)
		RETURNING `+bindingColumns, tokenSerial, customerID, certSerial, by, key))
	switch constraintOf(err) {
	case "bindings_live_token":
		return Binding{}, fmt.Errorf("%w: token %s has a pending or active binding", ErrAlreadyBound, tokenSerial)
	case "bindings_live_customer":
		return Binding{}, fmt.Errorf("%w: customer %s has a pending or active binding", ErrAlreadyBound, customerID)
	case "bindings_request_key_key":
		return Binding{}, fmt.Errorf("%w: request %s already made a binding", ErrConflict, requestKey)
	}
	return b, err
}

// BindingForRequest returns the binding a request created, or ErrNotFound.
func BindingForRequest(ctx context.Context, q Querier, requestKey string) (Binding, error) {
	return scanBinding(q.QueryRow(ctx, `SELECT `+bindingColumns+` FROM bindings WHERE request_key = $1`, requestKey))
}

// ActivateBinding turns a pending binding active. Activating an active one
// is a no-op; an inactive one cannot come back (ErrConflict).
func ActivateBinding(ctx context.Context, q Querier, id int64, at time.Time) (_ Binding, err error) {
	defer derrors.Wrap(&err, "store.ActivateBinding(ctx, %d)", id)
	b, err := scanBinding(q.QueryRow(ctx, `
		UPDATE bindings SET status = 'active', activated_at = $2
		WHERE id = $1 AND status = 'pending'
		RETURNING `+bindingColumns, id, at.UTC()))
	if !errors.Is(err, ErrNotFound) {
		return b, err
	}
	b, err = GetBinding(ctx, q, id)
	if err != nil {
		return Binding{}, err
	}
	if b.Status != BindingActive {
		return Binding{}, fmt.Errorf("%w: binding %d is %s", ErrConflict, id, b.Status)
	}
	return b, nil
}

// DeactivateBinding ends a pending or active binding. Ending an ended one
// is a no-op that returns it unchanged.
func DeactivateBinding(ctx context.Context, q Querier, id int64, reason string, at time.Time) (_ Binding, err error) {
	defer derrors.Wrap(&err, "store.DeactivateBinding(ctx, %d)", id)
	b, err := scanBinding(q.QueryRow(ctx, `
		UPDATE bindings SET status = 'inactive', deactivated_at = $2, end_reason = $3
		WHERE id = $1 AND status IN ('pending', 'active')
		RETURNING `+bindingColumns, id, at.UTC(), reason))
	if errors.Is(err, ErrNotFound) {
		return GetBinding(ctx, q, id)
	}
	return b, err
}

// GetBinding returns a binding by ID.
func GetBinding(ctx context.Context, q Querier, id int64) (Binding, error) {
	return scanBinding(q.QueryRow(ctx, `SELECT `+bindingColumns+` FROM bindings WHERE id = $1`, id))
}

// ActiveBindingForCert returns the active binding of the certificate with
// that serial, or ErrNotFound: the gateway's check on every request.
func ActiveBindingForCert(ctx context.Context, q Querier, certSerial string) (Binding, error) {
	return scanBinding(q.QueryRow(ctx, `SELECT `+bindingColumns+` FROM bindings WHERE cert_serial = $1 AND status = 'active'`, certSerial))
}

// LiveBindingForToken returns the pending or active binding of a token, or
// ErrNotFound.
func LiveBindingForToken(ctx context.Context, q Querier, tokenSerial string) (Binding, error) {
	return scanBinding(q.QueryRow(ctx, `SELECT `+bindingColumns+` FROM bindings WHERE token_serial = $1 AND status IN ('pending', 'active')`, tokenSerial))
}

// BindingsForCustomer lists a customer's bindings, newest first.
func BindingsForCustomer(ctx context.Context, q Querier, customerID string) ([]Binding, error) {
	return listBindings(ctx, q, `customer_id`, customerID)
}

// BindingsForToken lists a token's bindings, newest first.
func BindingsForToken(ctx context.Context, q Querier, tokenSerial string) ([]Binding, error) {
	return listBindings(ctx, q, `token_serial`, tokenSerial)
}

func listBindings(ctx context.Context, q Querier, column, value string) (_ []Binding, err error) {
	defer derrors.Wrap(&err, "store.listBindings(ctx, %s=%q)", column, value)
	rows, err := q.Query(ctx, `SELECT `+bindingColumns+` FROM bindings WHERE `+column+` = $1 ORDER BY id DESC`, value)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []Binding
	for rows.Next() {
		b, err := scanBinding(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, translate(rows.Err())
}

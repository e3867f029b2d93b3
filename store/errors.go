package store

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

var (
	// ErrNotFound means the row asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a row with the same key exists with different
	// content, so the write was not an idempotent repeat.
	ErrConflict = errors.New("conflicts with an existing record")
	// ErrInvalid means the caller passed a value the store will not record.
	ErrInvalid = errors.New("invalid argument")
)

// SQLSTATE codes this package reacts to.
const (
	sqlstateSerializationFailure = "40001"
	sqlstateDeadlockDetected     = "40P01"
	sqlstateUniqueViolation      = "23505"
	sqlstateForeignKeyViolation  = "23503"
)

// translate maps driver errors to this package's sentinels at the boundary.
// A missing row carries no further information, so ErrNotFound replaces it;
// a constraint violation keeps the server's message, which names the
// constraint.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound
	case sqlState(err) == sqlstateUniqueViolation:
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

// constraintOf names the constraint a server error violated, or "".
func constraintOf(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.ConstraintName
	}
	return ""
}

// sqlState returns the SQLSTATE of a server error anywhere in err's chain,
// or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// retryable reports whether a transaction that failed with err may succeed
// if simply run again: PostgreSQL aborted it to keep serializability or to
// break a deadlock, not because of anything it did wrong.
func retryable(err error) bool {
	switch sqlState(err) {
	case sqlstateSerializationFailure, sqlstateDeadlockDetected:
		return true
	}
	return false
}

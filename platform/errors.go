package platform

import (
	"errors"
	"fmt"
)

// Code names what went wrong, as the web service reports it.
type Code string

// Error codes of the contract. Permanent ones mean a retry cannot help.
const (
	CodeUnknownCustomer   Code = "unknown_customer"   // permanent
	CodeBillNotFound      Code = "bill_not_found"     // permanent; also for another customer's bill
	CodeAlreadySettled    Code = "already_settled"    // permanent: the bill was paid (elsewhere)
	CodeAmountMismatch    Code = "amount_mismatch"    // permanent: allocation exceeds what is due, or sums disagree
	CodeInsufficientFunds Code = "insufficient_funds" // permanent: prepaid balance too low for the debit
	CodeConflict          Code = "conflict"           // permanent: idempotency key reused with other content
	CodeNotFound          Code = "not_found"          // permanent: payment reference or entry unknown
	CodeInvalidRequest    Code = "invalid_request"    // permanent: malformed request
	CodeUnavailable       Code = "unavailable"        // temporary: retry with backoff
)

// Error is an error answered by the platform (or the failure to reach it).
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// Err is the underlying failure when the platform could not be reached
	// or its answer could not be read (Code is CodeUnavailable): a network
	// error, a timeout, a TLS alert. Nil for errors the platform answered.
	// It is not part of the wire form.
	Err error `json:"-"`
}

func (e *Error) Error() string { return fmt.Sprintf("platform: %s: %s", e.Code, e.Message) }

// Unwrap returns the underlying failure, if any, for errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether trying again later can succeed.
func (e *Error) Retryable() bool { return e.Code == CodeUnavailable }

// Is matches the sentinels below by code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is.
var (
	ErrUnknownCustomer   = &Error{Code: CodeUnknownCustomer}
	ErrBillNotFound      = &Error{Code: CodeBillNotFound}
	ErrAlreadySettled    = &Error{Code: CodeAlreadySettled}
	ErrAmountMismatch    = &Error{Code: CodeAmountMismatch}
	ErrInsufficientFunds = &Error{Code: CodeInsufficientFunds}
	ErrConflict          = &Error{Code: CodeConflict}
	ErrNotFound          = &Error{Code: CodeNotFound}
	ErrInvalidRequest    = &Error{Code: CodeInvalidRequest}
	ErrUnavailable       = &Error{Code: CodeUnavailable}
)

// Retryable reports whether err is worth retrying: a platform error that
// says so, or any error that is not a platform answer (network failures).
func Retryable(err error) bool {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Retryable()
	}
	return err != nil
}

package pki

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Errors returned while issuing certificates and CRLs. Check them with
// errors.Is; the message around them says what exactly was wrong.
var (
	// ErrBadCSR reports a certificate signing request that cannot be used.
	ErrBadCSR = errors.New("bad certificate signing request")
	// ErrCSRSignature reports a CSR whose self-signature does not verify, so
	// it proves nothing about who holds the private key. It matches ErrBadCSR
	// too.
	ErrCSRSignature = fmt.Errorf("%w: signature does not verify (no proof of possession of the private key)", ErrBadCSR)
	// ErrCSRMismatch reports a CSR whose subject names another customer,
	// token or service than the request. It matches ErrBadCSR too.
	ErrCSRMismatch = fmt.Errorf("%w: subject does not match the request", ErrBadCSR)
	// ErrWeakKey reports a key whose type, curve or size is not allowed.
	ErrWeakKey = errors.New("key type or size not allowed")
	// ErrInvalidRequest reports a request field with a bad value; the error
	// is a *FieldError naming the field.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrSignerMismatch reports a signer whose public key is not the one in
	// the CA certificate.
	ErrSignerMismatch = errors.New("signer's public key does not match the CA certificate")
	// ErrNotCA reports a certificate that cannot act as the CA asked for:
	// not a CA, missing key usages, or the wrong role (for example the
	// services CA asked to issue a customer certificate).
	ErrNotCA = errors.New("not a usable CA for this operation")
	// ErrCAValidity reports a CA asked to sign outside its own validity.
	ErrCAValidity = errors.New("CA certificate is not valid at the requested time")
	// ErrUnknownReason reports a revocation reason that is not recognised.
	ErrUnknownReason = errors.New("unknown revocation reason")
	// ErrPEM reports PEM data that is malformed or holds the wrong kind of
	// block.
	ErrPEM = errors.New("bad PEM data")
)

// Errors returned by Verifier. Verify returns them inside a *VerifyError; the
// sentinel texts are written to be shown to the person holding the
// certificate.
var (
	ErrUnknownCA      = errors.New("certificate was not issued by a trusted GridPay CA")
	ErrExpired        = errors.New("certificate has expired")
	ErrNotYetValid    = errors.New("certificate is not valid yet")
	ErrWrongUsage     = errors.New("certificate is not valid for this purpose")
	ErrRevoked        = errors.New("certificate has been revoked")
	ErrNoCRL          = errors.New("revocation cannot be checked: no revocation list from the CA")
	ErrCRLStale       = errors.New("revocation cannot be checked: the CA's revocation list is out of date")
	ErrBadCertificate = errors.New("certificate does not follow the GridPay profile")
	ErrBadCRL         = errors.New("revocation list is not valid")
	ErrCRLOlder       = errors.New("revocation list is older than the one in use")
)

// FieldError reports a request field with a bad value. It matches
// ErrInvalidRequest.
type FieldError struct {
	Field   string // the Go field name, e.g. "CustomerID"
	Value   string // the offending value, shortened for display
	Problem string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Field, e.Value, e.Problem)
}

// Is makes errors.Is(err, ErrInvalidRequest) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidRequest }

func fieldError(field, value, format string, args ...any) error {
	return &FieldError{Field: field, Value: clip(value), Problem: fmt.Sprintf(format, args...)}
}

// VerifyError is the error Verifier.Verify returns. Err is one of the
// verification sentinels (ErrRevoked, ErrExpired, …); the other fields say
// which certificate and why. Its message is meant to be shown to a client as
// is, so it carries no key material and no internal detail.
type VerifyError struct {
	Err     error    // the sentinel, for errors.Is
	Subject string   // the certificate concerned, e.g. "CN=C1001,OU=Customer,O=GridPay"
	Serial  *big.Int // its serial number, nil if unknown
	// Reason and RevokedAt are set for ErrRevoked.
	Reason    Reason
	RevokedAt time.Time
	Detail    string // extra explanation, may be empty
}

func (e *VerifyError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	if e.Subject != "" {
		b.WriteString(": ")
		b.WriteString(e.Subject)
		if e.Serial != nil {
			b.WriteString(" (serial ")
			b.WriteString(SerialHex(e.Serial))
			b.WriteString(")")
		}
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

func (e *VerifyError) Unwrap() error { return e.Err }

// clip shortens a value before it goes into an error message, so that a
// hostile input cannot blow up logs.
func clip(s string) string {
	const max = 48
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// detailed is a sentinel with an explanation. Verify copies the explanation
// into VerifyError.Detail.
type detailed struct {
	err    error
	detail string
}

func (e *detailed) Error() string { return e.err.Error() + ": " + e.detail }
func (e *detailed) Unwrap() error { return e.err }

func withDetail(sentinel error, format string, args ...any) error {
	return &detailed{err: sentinel, detail: fmt.Sprintf(format, args...)}
}

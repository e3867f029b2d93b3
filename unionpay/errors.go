package unionpay

import (
	"errors"
	"fmt"
)

// Sentinel errors; check them with errors.Is.
var (
	// ErrBadSignature: a response or notification whose signature does
	// not verify with the gateway's certificate: forged or tampered.
	ErrBadSignature = errors.New("unionpay: bad signature")
	// ErrBadCertificate: the gateway certificate sent with a message is
	// missing, unparsable, not chained to a configured root, outside its
	// validity, or of the wrong organisation.
	ErrBadCertificate = errors.New("unionpay: gateway certificate refused")
	// ErrMalformed: a message from the gateway lacks a field, has one
	// twice, or has one that does not parse (amount, time, code...).
	ErrMalformed = errors.New("unionpay: malformed message")
	// ErrInvalid: a request GridPay was about to send is invalid (order
	// ID, amount, times, URLs); nothing was sent.
	ErrInvalid = errors.New("unionpay: invalid request")
	// ErrUnavailable: the gateway could not be reached or did not answer
	// properly (network error, timeout, HTTP status other than 200). The
	// request may or may not have been received: retry, or query.
	ErrUnavailable = errors.New("unionpay: gateway unavailable")
	// ErrNoFile: the gateway has no reconciliation file for that date
	// (respCode 98).
	ErrNoFile = errors.New("unionpay: no reconciliation file")
	// ErrRefused: the gateway answered a file download with a refusal
	// (see RespError for the code).
	ErrRefused = errors.New("unionpay: request refused")
)

// FieldError says which field of a message is wrong, and how. Its kind is
// one of the sentinels (ErrMalformed, ErrInvalid, ErrBadSignature,
// ErrBadCertificate), so errors.Is works on it. It never holds the value
// of a card number.
type FieldError struct {
	Kind   error
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%v: %s", e.Kind, e.Reason)
	}
	return fmt.Sprintf("%v: field %s: %s", e.Kind, e.Field, e.Reason)
}

func (e *FieldError) Unwrap() error { return e.Kind }

func fieldErr(kind error, field, format string, args ...any) error {
	return &FieldError{Kind: kind, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// RespError is a gateway refusal of a request whose answer carries no
// outcome of its own (file download).
type RespError struct {
	RespCode string
	RespMsg  string
}

func (e *RespError) Error() string {
	return fmt.Sprintf("unionpay: gateway answered %s (%s)", e.RespCode, clip(e.RespMsg))
}

// Is makes a refusal match ErrNoFile for code 98, ErrUnavailable for the
// codes that mean "try again" and ErrRefused otherwise.
func (e *RespError) Is(target error) bool {
	switch e.RespCode {
	case RespNoFile:
		return target == ErrNoFile
	case RespUnknown03, RespUnknown04, RespUnknown05, RespBusy:
		return target == ErrUnavailable
	}
	return target == ErrRefused
}

// More response codes used by the client and the simulator (the ACP
// appendix's table).
const (
	RespFailed         = "01" // transaction failed
	RespBusy           = "06" // system busy: try again
	RespFormat         = "10" // message format error
	RespSignature      = "11" // signature verification failed
	RespMissing        = "13" // required field missing
	RespAmountLimit    = "33" // amount over the limit (refunds: over what is left)
	RespOrigState      = "35" // original transaction missing or in the wrong state
	RespOrigMismatch   = "36" // does not match the original transaction
	RespOutOfTime      = "39" // outside the acceptance window (pay timeout passed)
	RespAlreadyRefund  = "45" // original transaction already refunded or cancelled
	RespInvalidCardNum = "61" // invalid card number
	RespNoFile         = "98" // no such file
	RespGeneric        = "99" // generic error
)

package hsm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

// Sentinel errors. Test for them with errors.Is; the error returned carries
// more detail (the operation, the CKR code, the token or key asked for).
var (
	// ErrModuleMissing: the PKCS#11 module file does not exist.
	ErrModuleMissing = errors.New("PKCS#11 module not found")
	// ErrTokenAbsent: no token matches the selector, or the token went away
	// (CKR_TOKEN_NOT_PRESENT, CKR_SLOT_ID_INVALID).
	ErrTokenAbsent = errors.New("token not present")
	// ErrDeviceRemoved: the device was removed during the operation.
	ErrDeviceRemoved = errors.New("device removed")
	// ErrWrongPIN: the token refused the PIN (CKR_PIN_INCORRECT).
	ErrWrongPIN = errors.New("wrong PIN")
	// ErrPINLocked: too many wrong PINs; the SO must reset it.
	ErrPINLocked = errors.New("PIN locked")
	// ErrPINLength: the PIN is shorter or longer than the token accepts.
	ErrPINLength = errors.New("PIN length out of range")
	// ErrPINInvalid: the PIN contains characters the token does not accept.
	ErrPINInvalid = errors.New("PIN has invalid characters")
	// ErrPINExpired: the PIN must be changed before the token can be used.
	ErrPINExpired = errors.New("PIN expired")
	// ErrPINNotInitialized: the token has no user PIN yet.
	ErrPINNotInitialized = errors.New("user PIN not initialised")
	// ErrNotLoggedIn: the token dropped the login (for example after all
	// sessions were closed by another party).
	ErrNotLoggedIn = errors.New("not logged in")
	// ErrKeyExists: a key with that label or ID is already on the token.
	ErrKeyExists = errors.New("key already exists")
	// ErrKeyNotFound: no key matches the reference.
	ErrKeyNotFound = errors.New("key not found")
	// ErrObjectExists: a certificate or data object with that name exists.
	ErrObjectExists = errors.New("object already exists")
	// ErrObjectNotFound: no certificate or data object matches.
	ErrObjectNotFound = errors.New("object not found")
	// ErrDecrypt: authenticated decryption failed. Nothing about the
	// plaintext is returned.
	ErrDecrypt = errors.New("message authentication failed")
	// ErrClosed: the Token (or its module) has been closed.
	ErrClosed = errors.New("token closed")
	// ErrNoPINSource: no PIN source is configured and none can be used.
	ErrNoPINSource = errors.New("no PIN source")
)

// Error is a failed PKCS#11 call: Op names the function (C_Login, C_Sign…)
// and Code is the CKR_ value the module returned. errors.Is matches it
// against the package's sentinels (ErrWrongPIN for CKR_PIN_INCORRECT…) and
// against the pkcs11.Error of the same code.
type Error struct {
	Op   string
	Code uint
}

// Error says what went wrong in words where the code has a meaning of its
// own ("C_Login: wrong PIN, CKR_PIN_INCORRECT (0xA0)"), so a person can act on it.
func (e *Error) Error() string {
	if s := sentinelFor(e.Code); s != nil {
		return e.Op + ": " + s.Error() + ", " + ckrName(e.Code)
	}
	return e.Op + ": " + ckrName(e.Code)
}

// Unwrap exposes the raw pkcs11.Error so callers that know PKCS#11 can test
// for any code: errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)).
func (e *Error) Unwrap() error { return pkcs11.Error(e.Code) }

// Is reports whether the CKR code corresponds to target.
func (e *Error) Is(target error) bool {
	s := sentinelFor(e.Code)
	return s != nil && s == target
}

func sentinelFor(code uint) error {
	switch code {
	case pkcs11.CKR_PIN_INCORRECT:
		return ErrWrongPIN
	case pkcs11.CKR_PIN_LOCKED:
		return ErrPINLocked
	case pkcs11.CKR_PIN_LEN_RANGE:
		return ErrPINLength
	case pkcs11.CKR_PIN_INVALID:
		return ErrPINInvalid
	case pkcs11.CKR_PIN_EXPIRED:
		return ErrPINExpired
	case pkcs11.CKR_USER_PIN_NOT_INITIALIZED:
		return ErrPINNotInitialized
	case pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_SLOT_ID_INVALID:
		return ErrTokenAbsent
	case pkcs11.CKR_DEVICE_REMOVED:
		return ErrDeviceRemoved
	case pkcs11.CKR_USER_NOT_LOGGED_IN:
		return ErrNotLoggedIn
	}
	return nil
}

// CodeOf returns the CKR code carried by err, if any.
func CodeOf(err error) (uint, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Code, true
	}
	var pe pkcs11.Error
	if errors.As(err, &pe) {
		return uint(pe), true
	}
	return 0, false
}

// p11err converts what miekg/pkcs11 returned into an *Error naming op. It
// passes nil and non-PKCS#11 errors through unchanged.
func p11err(op string, err error) error {
	if err == nil {
		return nil
	}
	var pe pkcs11.Error
	if errors.As(err, &pe) {
		return &Error{Op: op, Code: uint(pe)}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// hasCode reports whether err is a PKCS#11 error with the given code.
func hasCode(err error, code uint) bool {
	c, ok := CodeOf(err)
	return ok && c == code
}

// sessionFatal reports whether a session that returned err must not be
// handed out again. Besides the codes that say the handle is dead, an
// operation left active (CKR_OPERATION_ACTIVE) would poison the next user.
func sessionFatal(err error) bool {
	c, ok := CodeOf(err)
	if !ok {
		return false
	}
	switch c {
	case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR,
		pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_OPERATION_ACTIVE,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:
		return true
	}
	return false
}

// ckrName turns a code into "CKR_PIN_INCORRECT (0xA0)".
func ckrName(code uint) string {
	// pkcs11.Error formats as "pkcs11: 0xA0: CKR_PIN_INCORRECT"; its name
	// table is unexported, so take the name from the text.
	s := pkcs11.Error(code).Error()
	name := s[strings.LastIndex(s, ": ")+2:]
	if name == "" {
		name = "CKR_VENDOR_OR_UNKNOWN"
	}
	return fmt.Sprintf("%s (0x%X)", name, code)
}

package hsm

import (
	"errors"
	"fmt"
	"testing"

	"github.com/miekg/pkcs11"
)

func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		code uint
		want error
	}{
		{pkcs11.CKR_PIN_INCORRECT, ErrWrongPIN},
		{pkcs11.CKR_PIN_LOCKED, ErrPINLocked},
		{pkcs11.CKR_PIN_LEN_RANGE, ErrPINLength},
		{pkcs11.CKR_PIN_INVALID, ErrPINInvalid},
		{pkcs11.CKR_PIN_EXPIRED, ErrPINExpired},
		{pkcs11.CKR_TOKEN_NOT_PRESENT, ErrTokenAbsent},
		{pkcs11.CKR_SLOT_ID_INVALID, ErrTokenAbsent},
		{pkcs11.CKR_DEVICE_REMOVED, ErrDeviceRemoved},
		{pkcs11.CKR_USER_NOT_LOGGED_IN, ErrNotLoggedIn},
		{pkcs11.CKR_USER_PIN_NOT_INITIALIZED, ErrPINNotInitialized},
	} {
		err := fmt.Errorf("outer: %w", p11err("C_Login", pkcs11.Error(tc.code)))
		if !errors.Is(err, tc.want) {
			t.Errorf("code %#x: errors.Is(%v) = false", tc.code, tc.want)
		}
		if errors.Is(err, ErrKeyNotFound) {
			t.Errorf("code %#x matched an unrelated sentinel", tc.code)
		}
		if !errors.Is(err, pkcs11.Error(tc.code)) {
			t.Errorf("code %#x: the pkcs11.Error is not in the chain", tc.code)
		}
		if c, ok := CodeOf(err); !ok || c != tc.code {
			t.Errorf("CodeOf = %#x, %v; want %#x", c, ok, tc.code)
		}
	}
	if errors.Is(p11err("C_Sign", pkcs11.Error(pkcs11.CKR_GENERAL_ERROR)), ErrWrongPIN) {
		t.Error("CKR_GENERAL_ERROR matched ErrWrongPIN")
	}
}

func TestErrorText(t *testing.T) {
	err := &Error{Op: "C_Login", Code: pkcs11.CKR_PIN_INCORRECT}
	if got, want := err.Error(), "C_Login: wrong PIN, CKR_PIN_INCORRECT (0xA0)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := (&Error{Op: "C_X", Code: 0x80001234}).Error(); got != "C_X: CKR_VENDOR_OR_UNKNOWN (0x80001234)" {
		t.Errorf("unknown code: %q", got)
	}
}

func TestSessionFatal(t *testing.T) {
	for code, want := range map[uint]bool{
		pkcs11.CKR_SESSION_HANDLE_INVALID: true,
		pkcs11.CKR_SESSION_CLOSED:         true,
		pkcs11.CKR_DEVICE_REMOVED:         true,
		pkcs11.CKR_OPERATION_ACTIVE:       true,
		pkcs11.CKR_PIN_INCORRECT:          false,
		pkcs11.CKR_KEY_HANDLE_INVALID:     false,
		pkcs11.CKR_GENERAL_ERROR:          false,
	} {
		if got := sessionFatal(p11err("C_Sign", pkcs11.Error(code))); got != want {
			t.Errorf("sessionFatal(%#x) = %v, want %v", code, got, want)
		}
	}
	if sessionFatal(errors.New("not pkcs11")) {
		t.Error("a non-PKCS#11 error was fatal")
	}
}

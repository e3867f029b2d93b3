package hsm

import (
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

// TokenInfo describes a token as its module reports it. Slot is only
// meaningful while the module stays initialised: SoftHSM2, for one,
// renumbers slots when it is re-initialised. Select tokens by label or
// serial instead.
type TokenInfo struct {
	Slot         uint
	Label        string
	Serial       string
	Manufacturer string
	Model        string

	Initialized        bool // CKF_TOKEN_INITIALIZED
	UserPINInitialized bool // CKF_USER_PIN_INITIALIZED
	LoginRequired      bool // CKF_LOGIN_REQUIRED
	WriteProtected     bool // CKF_WRITE_PROTECTED

	UserPINCountLow    bool // CKF_USER_PIN_COUNT_LOW: a wrong PIN was entered since the last success
	UserPINFinalTry    bool // CKF_USER_PIN_FINAL_TRY: one more wrong PIN locks it
	UserPINLocked      bool // CKF_USER_PIN_LOCKED
	UserPINToBeChanged bool // CKF_USER_PIN_TO_BE_CHANGED

	SOPINCountLow    bool // CKF_SO_PIN_COUNT_LOW
	SOPINFinalTry    bool // CKF_SO_PIN_FINAL_TRY
	SOPINLocked      bool // CKF_SO_PIN_LOCKED
	SOPINToBeChanged bool // CKF_SO_PIN_TO_BE_CHANGED

	MinPINLen, MaxPINLen uint
	Flags                uint // the raw CK_TOKEN_INFO flags
}

func tokenInfoFrom(slot uint, ti pkcs11.TokenInfo) TokenInfo {
	f := ti.Flags
	has := func(bit uint) bool { return f&bit != 0 }
	return TokenInfo{
		Slot:         slot,
		Label:        ti.Label,
		Serial:       ti.SerialNumber,
		Manufacturer: ti.ManufacturerID,
		Model:        ti.Model,

		Initialized:        has(pkcs11.CKF_TOKEN_INITIALIZED),
		UserPINInitialized: has(pkcs11.CKF_USER_PIN_INITIALIZED),
		LoginRequired:      has(pkcs11.CKF_LOGIN_REQUIRED),
		WriteProtected:     has(pkcs11.CKF_WRITE_PROTECTED),

		UserPINCountLow:    has(pkcs11.CKF_USER_PIN_COUNT_LOW),
		UserPINFinalTry:    has(pkcs11.CKF_USER_PIN_FINAL_TRY),
		UserPINLocked:      has(pkcs11.CKF_USER_PIN_LOCKED),
		UserPINToBeChanged: has(pkcs11.CKF_USER_PIN_TO_BE_CHANGED),

		SOPINCountLow:    has(pkcs11.CKF_SO_PIN_COUNT_LOW),
		SOPINFinalTry:    has(pkcs11.CKF_SO_PIN_FINAL_TRY),
		SOPINLocked:      has(pkcs11.CKF_SO_PIN_LOCKED),
		SOPINToBeChanged: has(pkcs11.CKF_SO_PIN_TO_BE_CHANGED),

		MinPINLen: ti.MinPinLen,
		MaxPINLen: ti.MaxPinLen,
		Flags:     f,
	}
}

// Selector chooses a token by label, serial or both. The zero Selector
// matches any initialised token, which is only useful when there is exactly
// one (a desk with one USB key).
type Selector struct {
	Label  string
	Serial string
}

// Matches reports whether ti is an initialised token that s selects.
func (s Selector) Matches(ti TokenInfo) bool {
	if !ti.Initialized {
		return false
	}
	if s.Label != "" && s.Label != ti.Label {
		return false
	}
	if s.Serial != "" && !strings.EqualFold(s.Serial, ti.Serial) {
		return false
	}
	return true
}

func (s Selector) String() string {
	switch {
	case s.Label != "" && s.Serial != "":
		return fmt.Sprintf("label %q serial %q", s.Label, s.Serial)
	case s.Label != "":
		return fmt.Sprintf("label %q", s.Label)
	case s.Serial != "":
		return fmt.Sprintf("serial %q", s.Serial)
	}
	return "any label"
}

package hsm

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// Module is a handle on a loaded and initialised PKCS#11 module. Handles
// returned by OpenModule for the same library share one underlying module,
// which is loaded and C_Initialize'd once per process and finalised when the
// last handle (and the last Token opened through it) is closed.
type Module struct {
	m      *module
	closed atomic.Bool
}

// module is the per-process state of one PKCS#11 library.
type module struct {
	path string // symlinks resolved: the registry key
	ctx  p11
	refs int // guarded by registry.mu
	// ownsInit is false when something else in the process had already
	// called C_Initialize; we then must not C_Finalize it under them.
	ownsInit bool

	// adminMu serialises token administration (InitToken needs to compare
	// the slot list before and after).
	adminMu sync.Mutex

	loginMu sync.Mutex
	logins  map[uint]*loginState // by slot ID
}

// loginState records that this process is logged in as the user to a slot.
// PKCS#11 keeps login state per application and token, not per session, so
// several Tokens on one slot share it and only the last one logs out.
type loginState struct {
	refs int
	ours bool // we called C_Login (false: CKR_USER_ALREADY_LOGGED_IN)
	// pinMAC lets a second OpenToken on the same slot check its PIN: the
	// token itself answers CKR_USER_ALREADY_LOGGED_IN without looking at it.
	// It is keyed with a random per-process key and never leaves memory.
	pinMAC []byte
}

var registry = struct {
	mu      sync.Mutex
	modules map[string]*module
}{modules: map[string]*module{}}

// loadModule dlopens a library; unit tests replace it with a fake.
var loadModule = func(path string) (p11, error) {
	c := pkcs11.New(path)
	if c == nil {
		return nil, fmt.Errorf("hsm: cannot load PKCS#11 module %s (dlopen failed: wrong architecture or missing dependency?)", path)
	}
	return c, nil
}

// OpenModule loads the PKCS#11 library at path, or takes another reference
// on it if this process has already loaded it. A missing file gives
// ErrModuleMissing. Close the Module when done.
func OpenModule(path string) (*Module, error) {
	m, err := acquireModule(path)
	if err != nil {
		return nil, err
	}
	return &Module{m: m}, nil
}

func acquireModule(path string) (*module, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: no module path given", ErrModuleMissing)
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrModuleMissing, path)
		}
		return nil, fmt.Errorf("hsm: module %s: %w", path, err)
	}
	// Two paths may name one library (Debian ships a symlink); dlopen
	// would then hand back the same, already initialised, library.
	key, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("hsm: module %s: %w", path, err)
	}
	if key, err = filepath.Abs(key); err != nil {
		return nil, fmt.Errorf("hsm: module %s: %w", path, err)
	}

	registry.mu.Lock()
	defer registry.mu.Unlock()
	if m := registry.modules[key]; m != nil {
		m.refs++
		return m, nil
	}
	ctx, err := loadModule(key)
	if err != nil {
		return nil, err
	}
	m := &module{path: key, ctx: ctx, refs: 1, ownsInit: true, logins: map[uint]*loginState{}}
	if err := ctx.Initialize(); err != nil {
		if !hasCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			ctx.Destroy()
			return nil, fmt.Errorf("hsm: module %s: %w", path, p11err("C_Initialize", err))
		}
		m.ownsInit = false
	}
	registry.modules[key] = m
	return m, nil
}

// release drops one reference; the last one finalises and unloads.
func (m *module) release() error {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	m.refs--
	if m.refs > 0 {
		return nil
	}
	delete(registry.modules, m.path)
	var err error
	if m.ownsInit {
		err = p11err("C_Finalize", m.ctx.Finalize())
	}
	m.ctx.Destroy()
	return err
}

// Close releases this handle. Tokens opened through it stay usable: each
// holds its own reference.
func (h *Module) Close() error {
	if !h.closed.CompareAndSwap(false, true) {
		return nil
	}
	return h.m.release()
}

// Path is the library's path with symlinks resolved.
func (h *Module) Path() string { return h.m.path }

func (h *Module) check() error {
	if h.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Tokens lists the slots that have a token present, including a blank
// (uninitialised) one if the module offers it.
func (h *Module) Tokens() ([]TokenInfo, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	return h.m.tokens()
}

func (m *module) tokens() ([]TokenInfo, error) {
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return nil, p11err("C_GetSlotList", err)
	}
	out := make([]TokenInfo, 0, len(slots))
	for _, s := range slots {
		ti, err := m.ctx.GetTokenInfo(s)
		if err != nil {
			// A token pulled out between the two calls is simply absent.
			if hasCode(err, pkcs11.CKR_TOKEN_NOT_PRESENT) || hasCode(err, pkcs11.CKR_SLOT_ID_INVALID) {
				continue
			}
			return nil, p11err("C_GetTokenInfo", err)
		}
		out = append(out, tokenInfoFrom(s, ti))
	}
	return out, nil
}

// FindToken returns the one initialised token sel matches. None gives
// ErrTokenAbsent naming the selector; several give an error asking for a
// narrower selector.
func (h *Module) FindToken(sel Selector) (TokenInfo, error) {
	if err := h.check(); err != nil {
		return TokenInfo{}, err
	}
	return h.m.findToken(sel)
}

func (m *module) findToken(sel Selector) (TokenInfo, error) {
	all, err := m.tokens()
	if err != nil {
		return TokenInfo{}, err
	}
	var found []TokenInfo
	for _, ti := range all {
		if sel.Matches(ti) {
			found = append(found, ti)
		}
	}
	switch len(found) {
	case 0:
		return TokenInfo{}, fmt.Errorf("%w: no initialised token with %s in %s (%d token(s) present)", ErrTokenAbsent, sel, m.path, len(all))
	case 1:
		return found[0], nil
	}
	return TokenInfo{}, fmt.Errorf("hsm: %d tokens match %s in %s; select by serial", len(found), sel, m.path)
}

// InitToken initialises the first uninitialised token with label and the
// Security Officer PIN, and returns the new token's information (with the
// serial the module assigned). On SoftHSM2 this turns the spare slot into a
// token and a new spare slot appears. A token already labelled label makes it
// refuse, because selection by label would become ambiguous.
func (h *Module) InitToken(label string, soPIN []byte) (TokenInfo, error) {
	if err := h.check(); err != nil {
		return TokenInfo{}, err
	}
	// The label is blank-padded to 32 bytes on the token and read back
	// trimmed, so surrounding spaces would not survive.
	if label == "" || len(label) > 32 || strings.TrimSpace(label) != label {
		return TokenInfo{}, fmt.Errorf("hsm: InitToken: label %q must be 1 to 32 bytes without surrounding spaces", label)
	}
	if len(soPIN) == 0 {
		return TokenInfo{}, fmt.Errorf("hsm: InitToken(%q): %w", label, ErrPINLength)
	}
	m := h.m
	m.adminMu.Lock()
	defer m.adminMu.Unlock()

	before, err := m.tokens()
	if err != nil {
		return TokenInfo{}, fmt.Errorf("hsm: InitToken(%q): %w", label, err)
	}
	known := map[string]bool{}
	var blank *TokenInfo
	for i, ti := range before {
		if ti.Initialized {
			known[ti.Serial] = true
			if ti.Label == label {
				return TokenInfo{}, fmt.Errorf("hsm: InitToken(%q): a token with that label exists (serial %s)", label, ti.Serial)
			}
		} else if blank == nil {
			blank = &before[i]
		}
	}
	if blank == nil {
		return TokenInfo{}, fmt.Errorf("hsm: InitToken(%q): no uninitialised token in %s", label, m.path)
	}
	if err := m.ctx.InitToken(blank.Slot, pinString(soPIN), label); err != nil {
		return TokenInfo{}, fmt.Errorf("hsm: InitToken(%q): %w", label, p11err("C_InitToken", err))
	}
	// The slot may have been renumbered; find the token by what is new.
	after, err := m.tokens()
	if err != nil {
		return TokenInfo{}, fmt.Errorf("hsm: InitToken(%q): %w", label, err)
	}
	for _, ti := range after {
		if ti.Initialized && ti.Label == label && !known[ti.Serial] {
			return ti, nil
		}
	}
	return TokenInfo{}, fmt.Errorf("hsm: InitToken(%q): token initialised but not found in the slot list afterwards", label)
}

// InitUserPIN sets the user PIN of the selected token as its Security
// Officer (C_Login as SO, then C_InitPIN). It also unlocks a locked user
// PIN. It fails with CKR_USER_ANOTHER_ALREADY_LOGGED_IN while this process
// has the token open as the user.
func (h *Module) InitUserPIN(sel Selector, soPIN, userPIN []byte) (err error) {
	defer wrapErr(&err, "InitUserPIN(%s)", sel)
	if err := h.check(); err != nil {
		return err
	}
	if len(userPIN) == 0 {
		return ErrPINLength
	}
	m := h.m
	m.adminMu.Lock()
	defer m.adminMu.Unlock()
	ti, err := m.findToken(sel)
	if err != nil {
		return err
	}
	sh, err := m.ctx.OpenSession(ti.Slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return p11err("C_OpenSession", err)
	}
	defer m.ctx.CloseSession(sh)
	if err := m.ctx.Login(sh, pkcs11.CKU_SO, pinString(soPIN)); err != nil {
		return p11err("C_Login(SO)", err)
	}
	defer m.ctx.Logout(sh)
	if err := m.ctx.InitPIN(sh, pinString(userPIN)); err != nil {
		return p11err("C_InitPIN", err)
	}
	return nil
}

// ChangeUserPIN changes the user PIN of the selected token (C_SetPIN, which
// checks oldPIN itself).
func (h *Module) ChangeUserPIN(sel Selector, oldPIN, newPIN []byte) (err error) {
	defer wrapErr(&err, "ChangeUserPIN(%s)", sel)
	if err := h.check(); err != nil {
		return err
	}
	if len(newPIN) == 0 {
		return ErrPINLength
	}
	m := h.m
	ti, err := m.findToken(sel)
	if err != nil {
		return err
	}
	sh, err := m.ctx.OpenSession(ti.Slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return p11err("C_OpenSession", err)
	}
	defer m.ctx.CloseSession(sh)
	if err := m.ctx.SetPIN(sh, pinString(oldPIN), pinString(newPIN)); err != nil {
		return p11err("C_SetPIN", err)
	}
	m.loginMu.Lock()
	if l := m.logins[ti.Slot]; l != nil && l.pinMAC != nil {
		l.pinMAC = pinMAC(newPIN)
	}
	m.loginMu.Unlock()
	return nil
}

// login logs the user in to slot through sh unless this process already is.
func (m *module) login(slot uint, sh pkcs11.SessionHandle, pin []byte) error {
	m.loginMu.Lock()
	defer m.loginMu.Unlock()
	mac := pinMAC(pin)
	if l := m.logins[slot]; l != nil {
		if l.pinMAC != nil && !hmac.Equal(l.pinMAC, mac) {
			return fmt.Errorf("%w (not the PIN this process is logged in with; the token was not asked)", ErrWrongPIN)
		}
		l.refs++
		return nil
	}
	err := m.ctx.Login(sh, pkcs11.CKU_USER, pinString(pin))
	switch {
	case err == nil:
		m.logins[slot] = &loginState{refs: 1, ours: true, pinMAC: mac}
	case hasCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN):
		// Someone else in this process logged in; we cannot check the PIN.
		m.logins[slot] = &loginState{refs: 1}
	default:
		return p11err("C_Login", err)
	}
	return nil
}

// logout drops one login reference, logging out with the last one.
func (m *module) logout(slot uint, sh pkcs11.SessionHandle) error {
	m.loginMu.Lock()
	defer m.loginMu.Unlock()
	l := m.logins[slot]
	if l == nil {
		return nil
	}
	l.refs--
	if l.refs > 0 {
		return nil
	}
	delete(m.logins, slot)
	if !l.ours {
		return nil
	}
	if err := m.ctx.Logout(sh); err != nil && !hasCode(err, pkcs11.CKR_USER_NOT_LOGGED_IN) {
		return p11err("C_Logout", err)
	}
	return nil
}

var (
	macKeyOnce sync.Once
	macKey     [32]byte
)

func pinMAC(pin []byte) []byte {
	macKeyOnce.Do(func() {
		if _, err := rand.Read(macKey[:]); err != nil {
			panic("hsm: crypto/rand failed: " + err.Error())
		}
	})
	h := hmac.New(sha256.New, macKey[:])
	h.Write(pin)
	return h.Sum(nil)
}

// pinString lets a PIN held in a []byte reach miekg/pkcs11, whose API takes
// strings, without leaving an unzeroable copy on the Go heap: the string
// aliases pin and must not outlive the call it is passed to (miekg copies it
// into C memory and does not keep it).
func pinString(pin []byte) string {
	if len(pin) == 0 {
		return ""
	}
	return unsafe.String(&pin[0], len(pin))
}

// wrapErr prefixes *errp with the operation, keeping the chain.
func wrapErr(errp *error, format string, args ...any) {
	if *errp != nil {
		*errp = fmt.Errorf("hsm: "+format+": %w", append(args, *errp)...)
	}
}

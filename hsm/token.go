package hsm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/miekg/pkcs11"
	"go.uber.org/zap"
)

// Options tune a Token. The zero value is ready to use.
type Options struct {
	// PoolSize caps the sessions the Token opens; 0 means
	// 2 × GOMAXPROCS. Sessions are opened as concurrent callers need them.
	PoolSize int
	// Logger receives session and lifecycle events (never a PIN, a key or
	// data). nil logs nothing.
	Logger *zap.Logger
	// NoLogin opens the token without logging in: only public objects are
	// reachable (the PIN-failure record a client keeps on a USB key must be
	// read before, and written after, a failed login). The pin is ignored.
	NoLogin bool
	// NoSessionKeyCopies makes signers use the token key object directly
	// instead of an in-token session copy (see Token.signingHandle).
	NoSessionKeyCopies bool
}

// Token is a logged-in token with a pool of sessions. Its methods are safe
// for concurrent use.
type Token struct {
	mod    *module
	info   TokenInfo
	pool   *pool
	log    *zap.Logger
	anchor pkcs11.SessionHandle // holds the login and the key copies; never handed out to the pool
	login  bool                 // this Token logged in (and logs out on Close)

	// copies maps a private key on the token to its in-memory copy (see
	// signingHandle); copyMu also serialises calls on the anchor session.
	copyMu sync.Mutex
	copies map[pkcs11.ObjectHandle]pkcs11.ObjectHandle
	noCopy bool

	// createMu serialises "check that no object has this name, then
	// create it" within the process. PKCS#11 has no way to make that
	// atomic against other processes.
	createMu sync.Mutex

	closeOnce sync.Once
	closeErr  error
}

// OpenToken loads the module at modulePath (once per process), selects a
// token and logs in with pin. The caller keeps ownership of pin and should
// zero it afterwards (see Zero); the Token does not retain it.
func OpenToken(modulePath string, sel Selector, pin []byte, opts Options) (*Token, error) {
	m, err := OpenModule(modulePath)
	if err != nil {
		return nil, fmt.Errorf("hsm: OpenToken(%s): %w", sel, err)
	}
	defer m.Close() // the Token takes its own reference
	return m.OpenToken(sel, pin, opts)
}

// OpenURI opens the token a PKCS#11 URI names, reading the PIN from the URI's
// pin-source (or, if it has none, prompting on a terminal; see PINSource).
// The URI must carry module-path unless defaultModule is given.
func OpenURI(u *URI, defaultModule string, opts Options) (*Token, error) {
	path := u.ModulePath
	if path == "" {
		path = defaultModule
	}
	pin, err := u.PINSource.Read()
	if err != nil {
		return nil, fmt.Errorf("hsm: OpenURI(%s): %w", u, err)
	}
	defer Zero(pin)
	return OpenToken(path, u.Selector(), pin, opts)
}

// OpenToken selects a token of this module and logs in with pin.
//
// PKCS#11 keeps one login per process and token. A second OpenToken of the
// same token in this process shares it; its PIN is checked against the one
// the first login used (ErrWrongPIN if it differs) because the token itself
// would accept anything with CKR_USER_ALREADY_LOGGED_IN.
func (h *Module) OpenToken(sel Selector, pin []byte, opts Options) (_ *Token, err error) {
	defer wrapErr(&err, "OpenToken(%s)", sel)
	if err := h.check(); err != nil {
		return nil, err
	}
	ti, err := h.m.findToken(sel)
	if err != nil {
		return nil, err
	}
	login := ti.LoginRequired && !opts.NoLogin
	if len(pin) == 0 && login {
		return nil, fmt.Errorf("%w: empty PIN", ErrPINLength)
	}
	size := opts.PoolSize
	if size <= 0 {
		size = 2 * runtime.GOMAXPROCS(0)
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String("token_label", ti.Label), zap.String("token_serial", ti.Serial))

	m, err := acquireModule(h.m.path)
	if err != nil {
		return nil, err
	}
	anchor, err := m.ctx.OpenSession(ti.Slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		_ = m.release()
		return nil, p11err("C_OpenSession", err)
	}
	if login {
		if err := m.login(ti.Slot, anchor, pin); err != nil {
			_ = m.ctx.CloseSession(anchor)
			_ = m.release()
			return nil, err
		}
	}
	t := &Token{
		mod:    m,
		info:   ti,
		pool:   newPool(m.ctx, ti.Slot, size, log),
		log:    log,
		anchor: anchor,
		login:  login,
		noCopy: opts.NoSessionKeyCopies,
		copies: map[pkcs11.ObjectHandle]pkcs11.ObjectHandle{},
	}
	log.Debug("hsm: token opened", zap.Int("pool_size", size))
	return t, nil
}

// Info is the token's information as of OpenToken. Use Refresh for current
// PIN-count flags.
func (t *Token) Info() TokenInfo { return t.info }

// Refresh re-reads the token's information (flags change with PIN tries).
func (t *Token) Refresh() (TokenInfo, error) {
	if t.pool.shut.Load() {
		return TokenInfo{}, fmt.Errorf("hsm: Refresh(%q): %w", t.info.Label, ErrClosed)
	}
	ti, err := t.mod.ctx.GetTokenInfo(t.info.Slot)
	if err != nil {
		return TokenInfo{}, fmt.Errorf("hsm: Refresh(%q): %w", t.info.Label, p11err("C_GetTokenInfo", err))
	}
	return tokenInfoFrom(t.info.Slot, ti), nil
}

// Close waits for operations in progress, closes the sessions, logs out
// (when this is the last Token of that token in the process) and releases
// the module. Signers and AEADs of the Token stop working.
func (t *Token) Close() error {
	t.closeOnce.Do(func() {
		t.pool.close()
		var errs []error
		if t.login {
			errs = append(errs, t.mod.logout(t.info.Slot, t.anchor))
		}
		errs = append(errs, p11err("C_CloseSession", t.mod.ctx.CloseSession(t.anchor)))
		errs = append(errs, t.mod.release())
		t.closeErr = errors.Join(errs...)
		if t.closeErr != nil {
			t.closeErr = fmt.Errorf("hsm: Close(%q): %w", t.info.Label, t.closeErr)
		}
		t.log.Debug("hsm: token closed")
	})
	return t.closeErr
}

// findObjects returns the handles of up to max objects matching tmpl.
func (t *Token) findObjects(ctx context.Context, tmpl []*pkcs11.Attribute, max int) ([]pkcs11.ObjectHandle, error) {
	var out []pkcs11.ObjectHandle
	err := t.pool.do(ctx, func(sh pkcs11.SessionHandle) error {
		out = nil
		if err := t.mod.ctx.FindObjectsInit(sh, tmpl); err != nil {
			return p11err("C_FindObjectsInit", err)
		}
		var err error
		for len(out) < max {
			var hs []pkcs11.ObjectHandle
			hs, _, err = t.mod.ctx.FindObjects(sh, min(max-len(out), 32))
			if err != nil {
				err = p11err("C_FindObjects", err)
				break
			}
			if len(hs) == 0 {
				break
			}
			out = append(out, hs...)
		}
		if ferr := t.mod.ctx.FindObjectsFinal(sh); ferr != nil && err == nil {
			err = p11err("C_FindObjectsFinal", ferr)
		}
		return err
	})
	return out, err
}

// attrs reads attribute values of h; the result is in the order of types.
func (t *Token) attrs(ctx context.Context, h pkcs11.ObjectHandle, types ...uint) ([][]byte, error) {
	tmpl := make([]*pkcs11.Attribute, len(types))
	for i, typ := range types {
		tmpl[i] = pkcs11.NewAttribute(typ, nil)
	}
	var got []*pkcs11.Attribute
	err := t.pool.do(ctx, func(sh pkcs11.SessionHandle) error {
		var err error
		got, err = t.mod.ctx.GetAttributeValue(sh, h, tmpl)
		return p11err("C_GetAttributeValue", err)
	})
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(types))
	for i := range types {
		if i < len(got) {
			out[i] = got[i].Value
		}
	}
	return out, nil
}

func (t *Token) destroy(ctx context.Context, hs ...pkcs11.ObjectHandle) error {
	return t.pool.do(ctx, func(sh pkcs11.SessionHandle) error {
		var errs []error
		for _, h := range hs {
			if err := t.mod.ctx.DestroyObject(sh, h); err != nil {
				errs = append(errs, p11err("C_DestroyObject", err))
			}
		}
		return errors.Join(errs...)
	})
}

func (t *Token) create(ctx context.Context, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	var h pkcs11.ObjectHandle
	err := t.pool.do(ctx, func(sh pkcs11.SessionHandle) error {
		var err error
		h, err = t.mod.ctx.CreateObject(sh, tmpl)
		return p11err("C_CreateObject", err)
	})
	return h, err
}

func boolAttr(b []byte) bool { return len(b) > 0 && b[0] != 0 }

// ulongAttr decodes a CK_ULONG attribute (native byte order and size).
func ulongAttr(b []byte) uint {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b))
	case 4:
		return uint(binary.NativeEndian.Uint32(b))
	}
	return 0
}

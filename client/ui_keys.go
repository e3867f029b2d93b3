package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/client/pinlock"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/logging"
)

// uiKeys holds the USB key for the web UI: at most one unlocked session,
// opened with the PIN typed on the login page, kept open between pages (the
// key signs each new TLS handshake with the gateway) and closed on logout,
// after the idle timeout, when the key is pulled out, when the gateway
// refuses the key, and when the UI stops.
type uiKeys struct {
	a    *app
	idle time.Duration
	now  func() time.Time

	// unlock logs in to the key with pin, as "client login" does; inspect
	// finds the key and reads its PIN-failure record without logging in;
	// present says whether the key with that serial is still inserted.
	// Tests replace them.
	unlock  func(ctx context.Context, pin []byte, allowFinalTry bool) (*unlockedKey, error)
	inspect func(ctx context.Context) (keyInfo, error)
	present func(serial string) (bool, error)

	// attempt serialises PIN attempts: each one counts against the key.
	attempt sync.Mutex

	mu    sync.Mutex
	cur   *uiSession
	ended *sessionEnd // why the last session ended; shown on the login page

	modMu sync.Mutex
	mod   *hsm.Module // kept loaded for polling; nil until first used
}

// uiSession is an unlocked, verified key with its gateway client.
type uiSession struct {
	*session
	// inUse is read-locked by every request using the session, so closing
	// it waits for them.
	inUse    sync.RWMutex
	me       atomic.Pointer[api.Me] // the latest profile, for the page header
	openedAt time.Time
	lastUsed time.Time // guarded by uiKeys.mu
}

// Reasons a session ends.
const (
	endLogout  = "logout"
	endIdle    = "idle"
	endRemoved = "removed"
	endRefused = "refused"
	endStopped = "stopped"
)

type sessionEnd struct {
	reason string
	err    error // what the gateway said, for endRefused
}

func newUIKeys(a *app, idle time.Duration) *uiKeys {
	k := &uiKeys{a: a, idle: idle, now: a.now}
	k.unlock = a.unlockWithPIN
	k.inspect = k.inspectUSB
	k.present = k.presentUSB
	return k
}

// unlockWithPIN opens the key through openUSBKeyWith, the CLI's own path
// (lockout rule, token flags, login, certificates), with the PIN typed on
// the page. It runs on a copy of the app so that the confirmation of a
// final try applies to this attempt alone, and so that the CLI's warnings,
// which the page shows itself, stay off the terminal.
func (a *app) unlockWithPIN(ctx context.Context, pin []byte, allowFinalTry bool) (*unlockedKey, error) {
	attempt := *a
	attempt.allowFinalTry = a.allowFinalTry || allowFinalTry
	attempt.stderr = io.Discard
	used := false
	return attempt.openUSBKeyWith(ctx, func(context.Context, hsm.TokenInfo) ([]byte, error) {
		if used {
			return nil, errors.New("the PIN typed on the page was used already")
		}
		used = true
		return pin, nil
	})
}

// current is the unlocked session, or nil.
func (k *uiKeys) current() *uiSession {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cur
}

// acquire returns the unlocked session for one request, counting it as
// use, or nil. The caller must call release before ending the session.
func (k *uiKeys) acquire() (s *uiSession, release func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cur == nil {
		return nil, func() {}
	}
	s = k.cur
	s.lastUsed = k.now()
	// Never blocks: end removes a session from cur before write-locking it.
	s.inUse.RLock()
	return s, s.inUse.RUnlock
}

// lastEnd is why the last session ended, nil if one is open or none was.
func (k *uiKeys) lastEnd() *sessionEnd {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ended
}

// login unlocks the key with pin, verifies its certificate, connects to the
// gateway and fetches the profile. A gateway that refuses the key ends it
// at once; one that is unavailable does not (the pages retry).
func (k *uiKeys) login(ctx context.Context, pin []byte, allowFinalTry bool) (*uiSession, error) {
	a := k.a
	// Configuration problems are found before the key is touched, so they
	// never cost a PIN attempt.
	roots, err := loadRoots(a.cfg.CAFile)
	if err != nil {
		return nil, err
	}
	key, err := k.unlock(ctx, pin, allowFinalTry)
	if err != nil {
		return nil, err
	}
	closeKey := func() {
		if err := key.Close(); err != nil {
			a.log.Warn("closing the USB key", zap.Error(err))
		}
	}
	id, err := a.verifyKey(key, roots)
	if err != nil {
		closeKey()
		return nil, err
	}
	gw, err := newGateway(a.cfg.GatewayURL, a.cfg.Timeout, roots, key, a.log)
	if err != nil {
		closeKey()
		return nil, err
	}
	s := &uiSession{session: &session{key: key, id: id, gw: gw}, openedAt: k.now(), lastUsed: k.now()}
	a.reportPINFailures(ctx, s.session)
	// As every session of the key does: a load left open is settled by
	// the wallet's state.
	a.quiet().settleOpenLoad(ctx, s.session)
	var me api.Me
	switch err := gw.get(ctx, api.PathMe, nil, &me); {
	case err == nil:
		s.me.Store(&me)
	case sessionFatal(err):
		gw.Close()
		closeKey()
		return nil, err
	default:
		a.log.Warn("the gateway did not give the profile at login; the pages will ask again", zap.Error(err))
	}
	k.mu.Lock()
	old := k.cur
	k.cur, k.ended = s, nil
	k.mu.Unlock()
	if old != nil {
		k.closeSession(old)
	}
	a.log.Info("USB key unlocked for the web UI", zap.String(logging.KeyTokenSerial, key.TokenSerial), zap.String(logging.KeyCustomerID, id.CustomerID))
	return s, nil
}

// end closes s (nil: whatever is open) and records why.
func (k *uiKeys) end(s *uiSession, reason string, err error) {
	k.mu.Lock()
	if s == nil {
		s = k.cur
	}
	if s == nil || k.cur != s {
		k.mu.Unlock()
		return
	}
	k.cur = nil
	k.ended = &sessionEnd{reason: reason, err: err}
	k.mu.Unlock()
	k.closeSession(s)
	k.a.log.Info("USB key locked again", zap.String(logging.KeyTokenSerial, s.key.TokenSerial), zap.String("reason", reason))
}

// closeSession waits for the requests using s, then logs out of the key.
func (k *uiKeys) closeSession(s *uiSession) {
	s.inUse.Lock()
	defer s.inUse.Unlock()
	s.gw.Close()
	if err := s.key.Close(); err != nil {
		k.a.log.Warn("closing the USB key", zap.Error(err))
	}
}

// watch locks the key after the idle timeout or when it is pulled out,
// checking every interval until ctx ends.
func (k *uiKeys) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			k.check()
		}
	}
}

func (k *uiKeys) check() {
	k.mu.Lock()
	s := k.cur
	idle := s != nil && k.now().Sub(s.lastUsed) >= k.idle
	k.mu.Unlock()
	switch {
	case s == nil:
	case idle:
		k.end(s, endIdle, nil)
	default:
		if ok, err := k.present(s.key.TokenSerial); err == nil && !ok {
			k.end(s, endRemoved, nil)
		}
	}
}

// close ends the session and unloads the module: the UI is stopping.
func (k *uiKeys) close() {
	k.end(nil, endStopped, nil)
	k.modMu.Lock()
	defer k.modMu.Unlock()
	if k.mod != nil {
		if err := k.mod.Close(); err != nil {
			k.a.log.Warn("closing the PKCS#11 module", zap.Error(err))
		}
		k.mod = nil
	}
}

// module is the PKCS#11 module of the USB keys, loaded once and kept: the
// login page polls for the key every two seconds.
func (k *uiKeys) module() (*hsm.Module, error) {
	k.modMu.Lock()
	defer k.modMu.Unlock()
	if k.mod != nil {
		return k.mod, nil
	}
	path := k.a.cfg.Token.Module
	mod, err := hsm.OpenModule(path)
	if errors.Is(err, hsm.ErrModuleMissing) {
		return nil, fail(cli.ExitConfig, err, "the PKCS#11 module for USB keys is missing (%s): install it (OpenSC's opensc-pkcs11.so for most keys) or set token.module", path)
	}
	if err != nil {
		return nil, fail(cli.ExitUnavailable, err, "cannot load the PKCS#11 module %s: %v", path, err)
	}
	k.mod = mod
	return mod, nil
}

// keyInfo is what can be learnt about the key without its PIN.
type keyInfo struct {
	Token hsm.TokenInfo
	// OnToken says the key holds a PIN-failure record, TokenRecord.
	OnToken     bool
	TokenRecord pinlock.Record
}

// inspectUSB selects the key as the CLI does and reads the PIN-failure
// record on it. It only reads: Guard.Check, which also writes, runs at the
// actual attempt.
func (k *uiKeys) inspectUSB(ctx context.Context) (keyInfo, error) {
	mod, err := k.module()
	if err != nil {
		return keyInfo{}, err
	}
	ti, err := k.a.selectToken(mod)
	if err != nil {
		return keyInfo{}, err
	}
	info := keyInfo{Token: ti}
	pub, err := openPublicObjects(mod, ti)
	if err != nil {
		k.a.log.Debug("cannot open a session to read the PIN-failure record on the key", zap.Error(err))
		return info, nil
	}
	defer pub.Close()
	rec, found, err := pinlock.ReadToken(ctx, pub)
	switch {
	case errors.Is(err, pinlock.ErrBadRecord):
		// As Guard.Check does: unreadable counts as locked.
		info.OnToken, info.TokenRecord = true, pinlock.Record{Version: pinlock.FormatVersion, Locked: true}
	case err != nil:
		k.a.log.Debug("cannot read the PIN-failure record on the key", zap.Error(err))
	default:
		info.OnToken, info.TokenRecord = found, rec
	}
	return info, nil
}

func (k *uiKeys) presentUSB(serial string) (bool, error) {
	mod, err := k.module()
	if err != nil {
		return false, err
	}
	_, err = mod.FindToken(hsm.Selector{Serial: serial})
	if errors.Is(err, hsm.ErrTokenAbsent) {
		return false, nil
	}
	return err == nil, err
}

// States of the key on the login page (and in /status).
const (
	keyAbsent   = "absent"   // no key inserted
	keyProblem  = "error"    // no module, several keys, unreadable state...
	keyLocked   = "locked"   // locked by GridPay's count or by the key itself
	keyReady    = "ready"    // waiting for the PIN
	keyUnlocked = "unlocked" // logged in
)

// keyStatus is the key as the login page shows it.
type keyStatus struct {
	State  string
	Label  string
	Serial string
	// Failures is the wrong PINs in a row, Remaining the tries left before
	// GridPay locks the key, Max the limit.
	Failures, Remaining, Max int
	// The key's own flags.
	FinalTry, CountLow, TokenLocked bool
	// Problem says why the key is absent or unusable.
	Problem error
}

// status finds the key and its lockout state, without logging in.
func (k *uiKeys) status(ctx context.Context) keyStatus {
	max := k.a.cfg.MaxPINFailures
	if s := k.current(); s != nil {
		return keyStatus{State: keyUnlocked, Label: s.key.TokenLabel, Serial: s.key.TokenSerial, Max: max, Remaining: max}
	}
	info, err := k.inspect(ctx)
	switch {
	case errors.Is(err, hsm.ErrTokenAbsent):
		return keyStatus{State: keyAbsent, Problem: err, Max: max}
	case err != nil:
		return keyStatus{State: keyProblem, Problem: err, Max: max}
	}
	ti := info.Token
	st := keyStatus{State: keyReady, Label: ti.Label, Serial: ti.Serial, Max: max,
		FinalTry: ti.UserPINFinalTry, CountLow: ti.UserPINCountLow, TokenLocked: ti.UserPINLocked}
	local, err := k.a.local.Record(ti.Serial)
	if errors.Is(err, pinlock.ErrBadRecord) {
		local, err = pinlock.Record{Version: pinlock.FormatVersion, Locked: true}, nil
	}
	if err != nil {
		st.State, st.Problem = keyProblem, fmt.Errorf("cannot read the PIN-failure count in %s: %w", k.a.local.Dir(), err)
		return st
	}
	eff, _ := pinlock.Merge(local, info.TokenRecord, info.OnToken)
	st.Failures, st.Remaining = eff.Failures, eff.Remaining(max)
	if eff.IsLocked(max) || ti.UserPINLocked {
		st.State = keyLocked
	}
	return st
}

// sessionFatal says err means the key cannot be used with the gateway any
// more: its certificate was refused (revoked, not bound, expired...), or
// the key went away.
func sessionFatal(err error) bool {
	return cli.ExitCode(err) == cli.ExitAuth ||
		errors.Is(err, hsm.ErrDeviceRemoved) || errors.Is(err, hsm.ErrTokenAbsent) || errors.Is(err, hsm.ErrClosed)
}

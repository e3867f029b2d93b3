package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/gridpay/gridpay/client/pinlock"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/logging"
)

// unlockedKey is a USB key after login: what TLS needs from it.
type unlockedKey struct {
	TokenSerial string
	TokenLabel  string
	// Leaf is the customer certificate (label token.key_label); CA the
	// customer CA certificate found on the key (nil if absent).
	Leaf   *x509.Certificate
	CA     *x509.Certificate
	Signer crypto.Signer
	close  func() error
}

// Close logs out and releases the key.
func (k *unlockedKey) Close() error {
	if k.close == nil {
		return nil
	}
	return k.close()
}

// openUSBKey selects the key, applies the PIN-failure lock, logs in and
// reads the certificates. It reads the PIN only once the key has passed the
// lock checks, and never keeps it.
func (a *app) openUSBKey(ctx context.Context) (*unlockedKey, error) {
	return a.openUSBKeyWith(ctx, a.readPIN)
}

// openUSBKeyWith is openUSBKey with the PIN from readPIN (the web UI passes
// the PIN typed on its page); the PIN it returns is zeroed after use.
func (a *app) openUSBKeyWith(ctx context.Context, readPIN func(context.Context, hsm.TokenInfo) ([]byte, error)) (_ *unlockedKey, err error) {
	mod, err := hsm.OpenModule(a.cfg.Token.Module)
	if errors.Is(err, hsm.ErrModuleMissing) {
		return nil, fail(cli.ExitConfig, err, "the PKCS#11 module for USB keys is missing (%s): install it (OpenSC's opensc-pkcs11.so for most keys) or set token.module", a.cfg.Token.Module)
	}
	if err != nil {
		return nil, fail(cli.ExitUnavailable, err, "cannot load the PKCS#11 module %s: %v", a.cfg.Token.Module, err)
	}
	// Released in reverse order on failure, or by unlockedKey.Close: the
	// public session must end before hsm may finalise the module.
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		closers = nil
		return errors.Join(errs...)
	}
	closers = append(closers, mod.Close)
	defer func() {
		if err != nil {
			_ = closeAll()
		}
	}()

	ti, err := a.selectToken(mod)
	if err != nil {
		return nil, err
	}
	log := a.log.With(zap.String(logging.KeyTokenSerial, ti.Serial))

	guard := &pinlock.Guard{Max: a.cfg.MaxPINFailures, Serial: ti.Serial, Local: a.local, Now: a.now, Log: log}
	if pub, perr := openPublicObjects(mod, ti); perr != nil {
		log.Warn("cannot open a session to read the PIN-failure record on the key; counting on this computer only", zap.Error(perr))
	} else {
		closers = append(closers, pub.Close)
		guard.Token = pub
	}
	st, err := guard.Check(ctx)
	if errors.Is(err, pinlock.ErrLocked) {
		return nil, cli.WithCode(cli.ExitAuth, err)
	}
	if err != nil {
		return nil, err
	}
	if err := a.checkTokenFlags(ti, st.Record.Failures > 0); err != nil {
		return nil, err
	}
	if msg := pinlock.RemainingMessage(st.Record, a.cfg.MaxPINFailures); msg != "" {
		a.warn("%s", msg)
	}

	pin, err := readPIN(ctx, ti)
	if err != nil {
		return nil, err
	}
	tok, err := mod.OpenToken(hsm.Selector{Label: ti.Label, Serial: ti.Serial}, pin, hsm.Options{PoolSize: 2, Logger: log})
	hsm.Zero(pin)
	switch {
	case errors.Is(err, hsm.ErrWrongPIN):
		r, lerr := guard.Failed(ctx, st)
		if lerr != nil {
			log.Error("recording the wrong PIN", zap.Error(lerr))
		}
		log.Info("wrong PIN", zap.Int("failures", r.Failures), zap.Bool("locked", r.Locked))
		return nil, fail(cli.ExitAuth, errors.Join(err, lerr), "%s", pinlock.WrongPINMessage(r, a.cfg.MaxPINFailures))
	case errors.Is(err, hsm.ErrPINLocked):
		return nil, fail(cli.ExitAuth, err, "the USB key has locked its PIN itself after too many wrong PINs; ask the power company to reset it")
	case errors.Is(err, hsm.ErrPINLength), errors.Is(err, hsm.ErrPINInvalid):
		return nil, fail(cli.ExitAuth, err, "the key does not accept a PIN of that form (length or characters); check the PIN source")
	case errors.Is(err, hsm.ErrPINExpired):
		return nil, fail(cli.ExitAuth, err, "the key's PIN has expired and must be changed first")
	case err != nil:
		return nil, fail(cli.ExitUnavailable, err, "cannot log in to the USB key: %v", err)
	}
	closers = append(closers, tok.Close)
	if err := guard.Succeeded(ctx, st); err != nil {
		log.Warn("clearing the local PIN-failure count", zap.Error(err))
	}

	key, err := readKeyObjects(ctx, tok, a.cfg.Token.KeyLabel)
	if err != nil {
		return nil, err
	}
	key.TokenSerial, key.TokenLabel = ti.Serial, ti.Label
	key.close = closeAll
	return key, nil
}

// selectToken finds the key: by token.label / token.serial when set, else
// the only key present.
func (a *app) selectToken(mod *hsm.Module) (hsm.TokenInfo, error) {
	sel := hsm.Selector{Label: a.cfg.Token.Label, Serial: a.cfg.Token.Serial}
	if sel.Label != "" || sel.Serial != "" {
		ti, err := mod.FindToken(sel)
		if errors.Is(err, hsm.ErrTokenAbsent) {
			return ti, fail(cli.ExitUnavailable, err, "no USB key with %s is present: insert your USB key", sel)
		}
		if err != nil {
			return ti, fail(cli.ExitUsage, err, "%v", err)
		}
		return ti, nil
	}
	all, err := mod.Tokens()
	if err != nil {
		return hsm.TokenInfo{}, fail(cli.ExitUnavailable, err, "cannot list USB keys: %v", err)
	}
	var keys []hsm.TokenInfo
	for _, ti := range all {
		if ti.Initialized {
			keys = append(keys, ti)
		}
	}
	switch len(keys) {
	case 0:
		return hsm.TokenInfo{}, fail(cli.ExitUnavailable, hsm.ErrTokenAbsent, "no USB key found: insert your USB key")
	case 1:
		return keys[0], nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d USB keys are present; choose one with --token-serial:", len(keys))
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  --token-serial %-20s (label %q)", k.Serial, k.Label)
	}
	return hsm.TokenInfo{}, fail(cli.ExitUsage, nil, "%s", b.String())
}

// checkTokenFlags applies what the key itself reports about PIN tries.
// counted says our own count already warns about earlier wrong PINs.
func (a *app) checkTokenFlags(ti hsm.TokenInfo, counted bool) error {
	switch {
	case ti.UserPINLocked:
		return fail(cli.ExitAuth, hsm.ErrPINLocked, "the USB key is locked: too many wrong PINs were entered; ask the power company to reset it")
	case ti.UserPINFinalTry && !a.allowFinalTry:
		return fail(cli.ExitAuth, nil, "one try left: a wrong PIN will lock the key. Run again with --allow-final-try if you are sure of the PIN")
	case ti.UserPINFinalTry:
		a.warn("one try left: a wrong PIN will lock the key")
	case ti.UserPINCountLow && !counted:
		a.warn("a wrong PIN was entered before on this key")
	}
	return nil
}

// readPIN takes the PIN from token.pin (file or environment) or else asks
// on the terminal, without echo; never when stdin is not a terminal.
func (a *app) readPIN(ctx context.Context, ti hsm.TokenInfo) ([]byte, error) {
	if a.cfg.Token.PIN.Provided() {
		pin, err := a.cfg.Token.PIN.Read("token.pin")
		if err != nil {
			return nil, cli.WithCode(cli.ExitConfig, err)
		}
		return pin, nil
	}
	pin, err := promptPIN(ctx, hsm.PINFromPrompt().WithPrompt(fmt.Sprintf("PIN of USB key %q (serial %s): ", ti.Label, ti.Serial)))
	if errors.Is(err, hsm.ErrNoPINSource) {
		return nil, fail(cli.ExitConfig, err, "no PIN given and stdin is not a terminal, so it cannot be asked: set token.pin.file or the environment variable %s", pinEnv(a.cfg.Token.PIN.Env))
	}
	var ue *userError
	if errors.As(err, &ue) {
		return nil, err // interrupted
	}
	if err != nil {
		return nil, fail(cli.ExitUsage, err, "reading the PIN: %v", err)
	}
	return pin, nil
}

// promptPIN reads the PIN on the terminal, giving up when ctx ends: main
// catches Ctrl-C to end the run cleanly, so without this the prompt would
// ignore it. Echo is switched back on before returning.
func promptPIN(ctx context.Context, src hsm.PINSource) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return src.Read() // refuses at once: no terminal to ask on
	}
	state, err := term.GetState(fd)
	if err != nil {
		return nil, fmt.Errorf("reading the terminal state: %w", err)
	}
	type answer struct {
		pin []byte
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		pin, err := src.Read()
		ch <- answer{pin, err}
	}()
	select {
	case a := <-ch:
		return a.pin, a.err
	case <-ctx.Done():
		_ = term.Restore(fd, state)
		fmt.Fprintln(os.Stderr)
		return nil, fail(cli.ExitError, ctx.Err(), "interrupted")
	}
}

func pinEnv(env string) string {
	if env == "" {
		return "GRIDPAY_TOKEN_PIN"
	}
	return env
}

// readKeyObjects reads the signer, the customer certificate and, among the
// certificates on the key, the CA certificate that issued it.
func readKeyObjects(ctx context.Context, tok *hsm.Token, keyLabel string) (*unlockedKey, error) {
	ref := hsm.KeyRef{Label: keyLabel}
	signer, err := tok.Signer(ctx, ref)
	if errors.Is(err, hsm.ErrKeyNotFound) {
		return nil, fail(cli.ExitAuth, err, "this USB key holds no GridPay key (label %q): it has not been issued to a customer", keyLabel)
	}
	if err != nil {
		return nil, fail(cli.ExitUnavailable, err, "reading the key on the USB key: %v", err)
	}
	leaf, err := tok.Certificate(ctx, ref)
	if errors.Is(err, hsm.ErrObjectNotFound) {
		return nil, fail(cli.ExitAuth, err, "this USB key holds no certificate (label %q): ask the power company to issue one", keyLabel)
	}
	if err != nil {
		return nil, fail(cli.ExitUnavailable, err, "reading the certificate on the USB key: %v", err)
	}
	all, err := tok.Certificates(ctx, hsm.KeyRef{})
	if err != nil {
		return nil, fail(cli.ExitUnavailable, err, "reading the certificates on the USB key: %v", err)
	}
	return &unlockedKey{Leaf: leaf, CA: issuerOf(leaf, all), Signer: signer}, nil
}

// issuerOf picks the certificate whose subject is leaf's issuer and whose
// key signed it.
func issuerOf(leaf *x509.Certificate, certs []hsm.CertObject) *x509.Certificate {
	for _, c := range certs {
		if c.Cert.IsCA && bytes.Equal(c.Cert.RawSubject, leaf.RawIssuer) && leaf.CheckSignatureFrom(c.Cert) == nil {
			return c.Cert
		}
	}
	return nil
}

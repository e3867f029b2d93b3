//go:build integration

package hsm_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/gridpay/gridpay/hsm"
)

// BenchmarkECDSASign compares P-256 signing through hsm.Signer with the
// same C_SignInit + C_Sign done directly with miekg/pkcs11 on one session,
// with the token key object (the baseline the targets refer to). The /2
// variants run two goroutines; ns/op is wall time per signature, so a lower
// figure at /2 than at /1 means the work ran in parallel. raw/2 shares its
// one session under a mutex, as a session must only be used by one thread at
// a time; rawsess/2 gives each goroutine a raw session of its own; hsm/N
// gets sessions from the pool and signs with the Token's in-token session
// copy of the key; hsm-nocopy/N uses the token key object in place.
//
// Why the copy: on SoftHSM 2.6.1 (Debian, file object store, OpenSSL 3.0)
// every C_SignInit on a persistent key re-validates it from disk under the
// token's mutex (an open, fcntl lock, read and close of token.object and of
// the key's file), so rawsess/2 and hsm-nocopy/2 reach only about 1.25×
// raw/1 on two free cores. Session objects live in memory and skip that.
func BenchmarkECDSASign(b *testing.B) {
	ctx := context.Background()
	tok := openToken(b, main1, hsm.Options{})
	signer, err := tok.Signer(ctx, hsm.KeyRef{Label: "bench-ecdsa"})
	if err != nil {
		signer, err = tok.GenerateECDSAKey(ctx, "bench-ecdsa", []byte{0xbe, 0x01})
	}
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("benchmark"))

	raw := openRaw(b, softhsm.ModulePath(), main1.Serial, main1.UserPIN, "bench-ecdsa")
	raw2 := openRaw(b, softhsm.ModulePath(), main1.Serial, main1.UserPIN, "bench-ecdsa")
	var rawMu sync.Mutex
	rawSign := func() error {
		rawMu.Lock()
		defer rawMu.Unlock()
		if err := raw.ctx.SignInit(raw.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, raw.key); err != nil {
			return err
		}
		_, err := raw.ctx.Sign(raw.sh, digest[:])
		return err
	}
	// rawsess/2 is the ceiling for hsm/2: each goroutine has a session of
	// its own, with no pool in between.
	var turn sync.Mutex
	next := 0
	rawOwn := func() func() error {
		turn.Lock()
		r := []*rawSession{raw, raw2}[next%2]
		next++
		turn.Unlock()
		return func() error {
			if err := r.ctx.SignInit(r.sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, r.key); err != nil {
				return err
			}
			_, err := r.ctx.Sign(r.sh, digest[:])
			return err
		}
	}
	shared := func(fn func() error) func() func() error { return func() func() error { return fn } }
	hsmSign := func() error {
		_, err := signer.Sign(nil, digest[:], crypto.SHA256)
		return err
	}
	noCopyTok := openToken(b, main1, hsm.Options{NoSessionKeyCopies: true})
	noCopy, err := noCopyTok.Signer(ctx, hsm.KeyRef{Label: "bench-ecdsa"})
	if err != nil {
		b.Fatal(err)
	}
	noCopySign := func() error {
		_, err := noCopy.Sign(nil, digest[:], crypto.SHA256)
		return err
	}

	for _, bc := range []struct {
		name       string
		goroutines int
		sign       func() func() error // called once per goroutine
	}{
		{"raw/1", 1, shared(rawSign)},
		{"raw/2", 2, shared(rawSign)},
		{"rawsess/2", 2, rawOwn},
		{"hsm/1", 1, shared(hsmSign)},
		{"hsm/2", 2, shared(hsmSign)},
		{"hsm-nocopy/1", 1, shared(noCopySign)},
		{"hsm-nocopy/2", 2, shared(noCopySign)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			next = 0
			runConcurrently(b, bc.goroutines, bc.sign)
		})
	}
}

// runConcurrently splits b.N calls over n goroutines, each calling the
// function newFn gave it.
func runConcurrently(b *testing.B, n int, newFn func() func() error) {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	b.ResetTimer()
	for g := range n {
		fn := newFn()
		count := b.N / n
		if g < b.N%n {
			count++
		}
		wg.Go(func() {
			for range count {
				if err := fn(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sig/s")
}

type rawSession struct {
	ctx *pkcs11.Ctx
	sh  pkcs11.SessionHandle
	key pkcs11.ObjectHandle
}

// openRaw is the baseline: miekg/pkcs11 used directly. The library is
// already initialised and logged in by hsm in this process, so
// CKR_CRYPTOKI_ALREADY_INITIALIZED and CKR_USER_ALREADY_LOGGED_IN are
// expected.
func openRaw(b testing.TB, module, serial, pin, label string) *rawSession {
	b.Helper()
	c := pkcs11.New(module)
	if c == nil {
		b.Fatalf("cannot load %s", module)
	}
	if err := c.Initialize(); err != nil && err != pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		b.Fatal(err)
	}
	slots, err := c.GetSlotList(true)
	if err != nil {
		b.Fatal(err)
	}
	slot, found := uint(0), false
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err == nil && ti.SerialNumber == serial {
			slot, found = s, true
		}
	}
	if !found {
		b.Fatalf("token %s not found", serial)
	}
	sh, err := c.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.CloseSession(sh) }) // no Finalize or Destroy: hsm owns the library
	if err := c.Login(sh, pkcs11.CKU_USER, pin); err != nil && err != pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		b.Fatal(err)
	}
	if err := c.FindObjectsInit(sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), // the key itself, never hsm's session copy
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}); err != nil {
		b.Fatal(err)
	}
	hs, _, err := c.FindObjects(sh, 1)
	c.FindObjectsFinal(sh)
	if err != nil || len(hs) != 1 {
		b.Fatalf("key %q: %v, %d found", label, err, len(hs))
	}
	return &rawSession{ctx: c, sh: sh, key: hs[0]}
}

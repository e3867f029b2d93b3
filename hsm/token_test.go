package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

func openFake(t *testing.T, f *fakeCtx, opts Options) *Token {
	t.Helper()
	tok, err := OpenToken(installFake(t, f), Selector{Label: "fake"}, []byte(f.userPIN), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	return tok
}

func TestModuleMissingNamesPath(t *testing.T) {
	_, err := OpenModule("/nonexistent/libnothing.so")
	if !errors.Is(err, ErrModuleMissing) {
		t.Fatalf("err = %v, want ErrModuleMissing", err)
	}
	if !strings.Contains(err.Error(), "/nonexistent/libnothing.so") {
		t.Errorf("error %q does not name the path", err)
	}
}

func TestTokenAbsentNamesSelector(t *testing.T) {
	f := newFake()
	_, err := OpenToken(installFake(t, f), Selector{Label: "no-such-label"}, []byte("123456"), Options{})
	if !errors.Is(err, ErrTokenAbsent) {
		t.Fatalf("err = %v, want ErrTokenAbsent", err)
	}
	if !strings.Contains(err.Error(), "no-such-label") {
		t.Errorf("error %q does not name the label", err)
	}
}

func TestModuleInitialisedOnceAndFinalisedLast(t *testing.T) {
	f := newFake()
	path := installFake(t, f)
	m1, err := OpenModule(path)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := OpenModule(path)
	if err != nil {
		t.Fatal(err)
	}
	if m1.m != m2.m {
		t.Fatal("two OpenModule calls loaded the library twice")
	}
	tok, err := m1.OpenToken(Selector{}, []byte(f.userPIN), Options{})
	if err != nil {
		t.Fatal(err)
	}
	m1.Close()
	m1.Close() // a second Close of the same handle must not drop another reference
	m2.Close()
	if f.finalized != 0 {
		t.Fatal("module finalised while a Token still uses it")
	}
	if _, err := m1.Tokens(); !errors.Is(err, ErrClosed) {
		t.Errorf("Tokens on a closed handle: err = %v, want ErrClosed", err)
	}
	tok.Close()
	if f.finalized != 1 {
		t.Fatalf("finalized = %d after the last Close, want 1", f.finalized)
	}
}

func TestAlreadyInitializedTolerated(t *testing.T) {
	f := newFake()
	f.initErr = ckr(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)
	m, err := OpenModule(installFake(t, f))
	if err != nil {
		t.Fatalf("CKR_CRYPTOKI_ALREADY_INITIALIZED not tolerated: %v", err)
	}
	m.Close()
	if f.finalized != 0 {
		t.Error("finalised a module someone else initialised")
	}
}

func TestLoginErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"wrong", ckr(pkcs11.CKR_PIN_INCORRECT), ErrWrongPIN},
		{"locked", ckr(pkcs11.CKR_PIN_LOCKED), ErrPINLocked},
		{"length", ckr(pkcs11.CKR_PIN_LEN_RANGE), ErrPINLength},
		{"absent", ckr(pkcs11.CKR_TOKEN_NOT_PRESENT), ErrTokenAbsent},
		{"removed", ckr(pkcs11.CKR_DEVICE_REMOVED), ErrDeviceRemoved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.loginErrs = []error{tc.err}
			const secret = "987654"
			_, err := OpenToken(installFake(t, f), Selector{Label: "fake"}, []byte(secret), Options{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var he *Error
			if !errors.As(err, &he) || he.Op != "C_Login" {
				t.Errorf("err = %#v, want an *Error for C_Login", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q contains the PIN", err)
			}
			if n := f.openSessions(); n != 0 {
				t.Errorf("%d sessions left open after a failed login", n)
			}
		})
	}
}

func TestSecondOpenChecksPIN(t *testing.T) {
	f := newFake()
	path := installFake(t, f)
	tok1, err := OpenToken(path, Selector{Label: "fake"}, []byte(f.userPIN), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tok1.Close()
	logins := f.logins
	_, err = OpenToken(path, Selector{Label: "fake"}, []byte("000000"), Options{})
	if !errors.Is(err, ErrWrongPIN) {
		t.Fatalf("second open with another PIN: err = %v, want ErrWrongPIN", err)
	}
	tok2, err := OpenToken(path, Selector{Serial: "f00d"}, []byte(f.userPIN), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f.logins != logins {
		t.Errorf("C_Login called %d more times; the login should be shared", f.logins-logins)
	}
	tok2.Close()
	if f.logouts != 0 || !f.loggedIn {
		t.Fatal("closing one of two Tokens logged the process out")
	}
	tok1.Close()
	if f.logouts != 1 {
		t.Errorf("logouts = %d after the last Close, want 1", f.logouts)
	}
}

func TestAlreadyLoggedInTolerated(t *testing.T) {
	f := newFake()
	f.loginErrs = []error{ckr(pkcs11.CKR_USER_ALREADY_LOGGED_IN)}
	tok := openFake(t, f, Options{})
	if err := tok.Close(); err != nil {
		t.Fatal(err)
	}
	if f.logouts != 0 {
		t.Error("logged out a login this package did not make")
	}
}

func TestSignerECDSAOverFake(t *testing.T) {
	f := newFake()
	k := f.addECKey(t, "k1", []byte{1, 2})
	tok := openFake(t, f, Options{PoolSize: 4})
	ctx := context.Background()
	s, err := tok.Signer(ctx, KeyRef{Label: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	if !k.PublicKey.Equal(s.Public()) {
		t.Fatal("Public() differs from the key on the token")
	}
	d := sha256.Sum256([]byte("payment instruction"))
	sig, err := s.Sign(nil, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(&k.PublicKey, d[:], sig) {
		t.Fatal("signature does not verify")
	}
	if _, err := s.Sign(nil, d[:20], crypto.SHA256); err == nil {
		t.Error("a 20-byte digest for SHA-256 was signed")
	}
	if _, err := tok.Signer(ctx, KeyRef{Label: "absent"}); !errors.Is(err, ErrKeyNotFound) || !strings.Contains(err.Error(), "absent") {
		t.Errorf("missing key: err = %v, want ErrKeyNotFound naming it", err)
	}
}

func TestSensitiveAttributeMapped(t *testing.T) {
	f := newFake()
	f.addECKey(t, "k1", []byte{1})
	tok := openFake(t, f, Options{})
	s, err := tok.Signer(context.Background(), KeyRef{ID: []byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tok.attrs(context.Background(), s.handle, pkcs11.CKA_VALUE)
	if !errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)) {
		t.Fatalf("err = %v, want CKR_ATTRIBUTE_SENSITIVE", err)
	}
}

func TestPoolDiscardsBrokenSession(t *testing.T) {
	f := newFake()
	f.addECKey(t, "k1", []byte{1})
	tok := openFake(t, f, Options{PoolSize: 1})
	s, err := tok.Signer(context.Background(), KeyRef{Label: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(nil)
	f.signErrs = []error{ckr(pkcs11.CKR_SESSION_HANDLE_INVALID)}
	if _, err := s.Sign(nil, d[:], crypto.SHA256); !hasCode(err, pkcs11.CKR_SESSION_HANDLE_INVALID) {
		t.Fatalf("err = %v, want CKR_SESSION_HANDLE_INVALID", err)
	}
	if got := tok.pool.stats.discarded.Load(); got != 1 {
		t.Fatalf("discarded = %d, want 1", got)
	}
	opened := tok.pool.stats.opened.Load()
	if _, err := s.Sign(nil, d[:], crypto.SHA256); err != nil {
		t.Fatalf("sign after a discarded session: %v", err)
	}
	if tok.pool.stats.opened.Load() != opened+1 {
		t.Error("the broken session was not replaced by a new one")
	}
	// A non-fatal error keeps the session.
	f.signErrs = []error{ckr(pkcs11.CKR_DATA_LEN_RANGE)}
	s.Sign(nil, d[:], crypto.SHA256)
	if tok.pool.stats.discarded.Load() != 1 {
		t.Error("a session was discarded after a non-fatal error")
	}
}

func TestPoolConcurrency(t *testing.T) {
	f := newFake()
	f.addECKey(t, "k1", []byte{1})
	const size = 3
	tok := openFake(t, f, Options{PoolSize: size})
	s, err := tok.Signer(context.Background(), KeyRef{Label: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("x"))
	var wg sync.WaitGroup
	errs := make(chan error, 16*50)
	for range 16 {
		wg.Go(func() {
			for range 50 {
				sig, err := s.Sign(nil, d[:], crypto.SHA256)
				if err == nil && !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
					err = errors.New("bad signature")
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if f.concurrent != 0 {
		t.Fatalf("a session was used by two goroutines at once %d times", f.concurrent)
	}
	if got := tok.pool.stats.opened.Load(); got > size {
		t.Fatalf("opened %d sessions, pool size is %d", got, size)
	}
}

func TestPoolWaitHonoursContext(t *testing.T) {
	f := newFake()
	tok := openFake(t, f, Options{PoolSize: 1})
	held, err := tok.pool.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := tok.pool.get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded while the only session is held", err)
	}
	tok.pool.put(held, nil)
	sh, err := tok.pool.get(context.Background())
	if err != nil || sh != held {
		t.Fatalf("get after put = %v, %v; want the idle session %v back", sh, err, held)
	}
	tok.pool.put(sh, nil)
}

func TestCloseWaitsAndClosesEverything(t *testing.T) {
	f := newFake()
	f.addECKey(t, "k1", []byte{1})
	tok := openFake(t, f, Options{PoolSize: 2})
	held, err := tok.pool.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error)
	go func() { closed <- tok.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a session was in use")
	case <-time.After(20 * time.Millisecond):
	}
	tok.pool.put(held, nil)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if n := f.openSessions(); n != 0 {
		t.Errorf("%d sessions open after Close", n)
	}
	if f.loggedIn {
		t.Error("still logged in after Close")
	}
	if _, err := tok.Signer(context.Background(), KeyRef{Label: "k1"}); !errors.Is(err, ErrClosed) {
		t.Errorf("use after Close: err = %v, want ErrClosed", err)
	}
}

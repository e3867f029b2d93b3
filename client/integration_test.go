//go:build integration

package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridpay/gridpay/client/pinlock"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const keyLabel = "gridpay-client"

// usbKey is a SoftHSM2 token provisioned as a customer's USB key: an ECDSA
// key generated on it by hsm, its certificate issued with pki, and the
// customer CA certificate beside it.
type usbKey struct {
	testenv.TestToken
	leaf *x509.Certificate
}

func provisionKey(t *testing.T, s *testenv.SoftHSM, label string, p *testPKI, issuedAt time.Time, validity time.Duration) usbKey {
	t.Helper()
	tt := s.NewTestToken(t, label)
	tok, err := hsm.OpenToken(s.ModulePath(), tt.Selector(), []byte(tt.UserPIN), hsm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	ctx := context.Background()
	signer, err := tok.GenerateECDSAKey(ctx, keyLabel, []byte{0x01})
	if err != nil {
		t.Fatal(err)
	}
	leaf := p.issueCustomer(t, signer, tt.Serial, issuedAt, validity)
	if err := tok.WriteCertificate(ctx, keyLabel, []byte{0x01}, leaf); err != nil {
		t.Fatal(err)
	}
	if err := tok.WriteCertificate(ctx, "gridpay-customer-ca", []byte{0xCA}, p.customer.Cert); err != nil {
		t.Fatal(err)
	}
	return usbKey{TestToken: tt, leaf: leaf}
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// clientBinary builds the client once per test binary.
func clientBinary(t *testing.T, s *testenv.SoftHSM) string {
	t.Helper()
	buildOnce.Do(func() {
		binPath = filepath.Join(s.Dir(), "bin", "client")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// tokenFixture runs the built client against SoftHSM2 tokens and a fake
// TLS gateway.
type tokenFixture struct {
	s   *testenv.SoftHSM
	pki *testPKI
	gw  *fakeGateway
	bin string
}

func newTokenFixture(t *testing.T) *tokenFixture {
	t.Helper()
	s := testenv.SoftHSMForTest(t)
	p := newTestPKI(t, "Integration", time.Now().Add(-3*365*24*time.Hour))
	return &tokenFixture{s: s, pki: p, gw: newFakeGateway(t, p), bin: clientBinary(t, s)}
}

// config writes a configuration for key k; tokenExtra goes into the token
// section ("pin: {file: /x}").
func (f *tokenFixture) config(t *testing.T, k usbKey, stateDir string, tokenExtra ...string) string {
	t.Helper()
	token := append([]string{"module: " + f.s.ModulePath(), fmt.Sprintf("serial: %q", k.Serial)}, tokenExtra...)
	return writeConfig(t, t.TempDir(),
		"log: {level: warn, format: console}",
		"token: {"+strings.Join(token, ", ")+"}",
		"gateway_url: "+f.gw.srv.URL,
		"ca_file: "+f.pki.rootFile,
		"state_dir: "+stateDir,
		"timeout: 10s",
	)
}

// exec runs the client binary. env adds variables to a clean environment
// (no GRIDPAY_* from the caller's); stdin nil is /dev/null.
func (f *tokenFixture) exec(t *testing.T, stdin io.Reader, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bin, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "GRIDPAY_") && !strings.HasPrefix(e, "SOFTHSM2_CONF=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(append(cmd.Env, f.s.Env()...), env...)
	cmd.Stdin = stdin
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("client %v did not finish within a minute (hung?)\nstderr:\n%s", args, errb.String())
	}
	r := result{stdout: out.String(), stderr: errb.String(), err: err}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running the client: %v", err)
	}
	return r
}

func pinFile(t *testing.T, pin string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(p, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tokenRecord reads the PIN-failure record on the key the way the client
// does, without login.
func (f *tokenFixture) tokenRecord(t *testing.T, k usbKey) (pinlock.Record, bool, hsm.TokenInfo) {
	t.Helper()
	mod, err := hsm.OpenModule(f.s.ModulePath())
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Close()
	ti, err := mod.FindToken(k.Selector())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := openPublicObjects(mod, ti)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	r, found, err := pinlock.ReadToken(context.Background(), pub)
	if err != nil {
		t.Fatal(err)
	}
	return r, found, ti
}

func TestLoginWithTokenPIN(t *testing.T) {
	f := newTokenFixture(t)
	k := provisionKey(t, f.s, "login-key", f.pki, time.Now().Add(-time.Hour), 0)
	state := t.TempDir()

	check := func(t *testing.T, r result) {
		t.Helper()
		if r.code != 0 {
			t.Fatal(r)
		}
		var out loginOutput
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("login --json: %v\n%s", err, r.stdout)
		}
		if out.Customer.ID != testCustomer || out.Token.Serial != k.Serial || out.Certificate.TokenSerial != k.Serial || len(out.Alerts) != 2 {
			t.Fatalf("login output %+v", out)
		}
		f.gw.mu.Lock()
		defer f.gw.mu.Unlock()
		if len(f.gw.peers) == 0 || !f.gw.peers[len(f.gw.peers)-1].Equal(k.leaf) {
			t.Fatal("the gateway did not receive the certificate on the token")
		}
		if strings.Contains(r.stderr, k.UserPIN) || strings.Contains(r.stdout, k.UserPIN) {
			t.Fatal("the PIN appears in the output")
		}
	}

	t.Run("PIN from a file", func(t *testing.T) {
		cfg := f.config(t, k, state, "pin: {file: "+pinFile(t, k.UserPIN)+"}")
		check(t, f.exec(t, nil, nil, "--config", cfg, "login", "--json"))
	})
	t.Run("PIN from GRIDPAY_TOKEN_PIN", func(t *testing.T) {
		check(t, f.exec(t, nil, []string{"GRIDPAY_TOKEN_PIN=" + k.UserPIN}, "--config", f.config(t, k, state), "login", "--json"))
	})
	t.Run("human output and a query", func(t *testing.T) {
		r := f.exec(t, nil, []string{"GRIDPAY_TOKEN_PIN=" + k.UserPIN}, "--config", f.config(t, k, state), "bills")
		if r.code != 0 || !strings.Contains(r.stdout, "¥178,425.34 due in total") {
			t.Fatal(r)
		}
	})
	t.Run("the record on the key is untouched by successes", func(t *testing.T) {
		if _, found, _ := f.tokenRecord(t, k); found {
			t.Fatal("a record was written on a key that never saw a wrong PIN")
		}
	})
}

func TestWrongPINLockoutAndReset(t *testing.T) {
	f := newTokenFixture(t)
	k := provisionKey(t, f.s, "lockout-key", f.pki, time.Now().Add(-time.Hour), 0)
	state := t.TempDir()
	cfg := f.config(t, k, state)
	wrong := []string{"GRIDPAY_TOKEN_PIN=" + k.UserPIN + "0"}
	right := []string{"GRIDPAY_TOKEN_PIN=" + k.UserPIN}
	local, err := pinlock.OpenLocal(state)
	if err != nil {
		t.Fatal(err)
	}
	connsBefore := f.gw.connections()

	for i := 1; i <= 5; i++ {
		r := f.exec(t, nil, wrong, "--config", cfg, "login")
		if r.code != cli.ExitAuth {
			t.Fatalf("wrong PIN %d: %v", i, r)
		}
		want := fmt.Sprintf("client: wrong PIN: %d tries left before the key is locked", 5-i)
		if i == 4 {
			want = "client: wrong PIN: 1 try left before the key is locked"
		}
		if i == 5 {
			want = "client: the key is locked after 5 wrong PINs; ask the power company to reset it"
		}
		if !strings.Contains(r.stderr, want) {
			t.Fatalf("wrong PIN %d: stderr lacks %q:\n%s", i, want, r.stderr)
		}
		if i > 1 && !strings.Contains(r.stderr, fmt.Sprintf("warning: %d wrong PIN", i-1)) {
			t.Fatalf("wrong PIN %d: no warning about the earlier ones:\n%s", i, r.stderr)
		}
		// Counted on the key, without login, as a public object...
		rec, found, _ := f.tokenRecord(t, k)
		if !found || rec.Failures != i || rec.Locked != (i == 5) {
			t.Fatalf("wrong PIN %d: record on the key %+v (found %v)", i, rec, found)
		}
		// ...and on this computer.
		lr, err := local.Record(k.Serial)
		if err != nil || lr.Failures != i {
			t.Fatalf("wrong PIN %d: local record %+v, %v", i, lr, err)
		}
		un, err := local.Unreported(k.Serial)
		if err != nil || len(un) != i || un[i-1].Count != i {
			t.Fatalf("wrong PIN %d: local log %+v, %v", i, un, err)
		}
	}

	// The object on the key is public: a logged-in reader sees CKA_PRIVATE false.
	func() {
		tok, err := hsm.OpenToken(f.s.ModulePath(), k.Selector(), []byte(k.UserPIN), hsm.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer tok.Close()
		obj, err := tok.ReadData(context.Background(), pinlock.Application, pinlock.Label)
		if err != nil || obj.Private {
			t.Fatalf("record read through hsm.Token: %+v, %v", obj, err)
		}
	}()
	// That login cleared SoftHSM's count-low flag; one more wrong PIN
	// attempt made directly sets it again, so the next step can show the
	// client does not touch the token.
	func() {
		_, err := hsm.OpenToken(f.s.ModulePath(), k.Selector(), []byte("not-the-pin"), hsm.Options{})
		if !errors.Is(err, hsm.ErrWrongPIN) {
			t.Fatalf("direct wrong PIN: %v", err)
		}
	}()
	if _, _, ti := f.tokenRecord(t, k); !ti.UserPINCountLow {
		t.Fatal("SoftHSM2 did not set CKF_USER_PIN_COUNT_LOW after a wrong PIN")
	}

	// Locked: the right PIN is refused, and the PIN is not even read (the
	// file named does not exist) nor tried (the count-low flag stays).
	locked := f.exec(t, nil, right, "--config", cfg, "login")
	if locked.code != cli.ExitAuth || !strings.Contains(locked.stderr, "the key is locked after 5 wrong PINs; ask the power company to reset it") {
		t.Fatalf("right PIN on a locked key: %v", locked)
	}
	cfgNoFile := f.config(t, k, state, "pin: {file: /nonexistent/pin}")
	if r := f.exec(t, nil, nil, "--config", cfgNoFile, "login"); r.code != cli.ExitAuth || !strings.Contains(r.stderr, "locked") {
		t.Fatalf("locked key with an unreadable PIN file: %v", r)
	}
	if _, _, ti := f.tokenRecord(t, k); !ti.UserPINCountLow {
		t.Fatal("the client logged in to a locked key (SoftHSM's count-low flag was cleared)")
	}
	if f.gw.connections() != connsBefore {
		t.Fatal("the client connected to the gateway while the key was wrong or locked")
	}

	// Deleting the object on the key does not unlock this computer.
	func() {
		mod, err := hsm.OpenModule(f.s.ModulePath())
		if err != nil {
			t.Fatal(err)
		}
		defer mod.Close()
		ti, _ := mod.FindToken(k.Selector())
		pub, err := openPublicObjects(mod, ti)
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		// Overwrite with a clean record of the same generation, as a
		// careless (or hostile) tool might.
		if err := pinlock.WriteToken(context.Background(), pub, pinlock.Record{}); err != nil {
			t.Fatal(err)
		}
	}()
	if r := f.exec(t, nil, right, "--config", cfg, "login"); r.code != cli.ExitAuth {
		t.Fatalf("zeroing the record on the key unlocked it: %v", r)
	}

	// The administrator's reset, as adminctl pin reset will do it: logged
	// in to the key on the desk, through hsm.Token.
	var reset pinlock.Record
	func() {
		tok, err := hsm.OpenToken(f.s.ModulePath(), k.Selector(), []byte(k.UserPIN), hsm.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer tok.Close()
		reset, err = pinlock.ResetToken(context.Background(), tok, time.Now())
		if err != nil {
			t.Fatal(err)
		}
	}()
	if rec, _, _ := f.tokenRecord(t, k); rec.Failures != 0 || rec.Locked || rec.ResetGeneration != reset.ResetGeneration || rec.ResetGeneration == 0 {
		t.Fatalf("record on the key after reset: %+v", rec)
	}

	ok := f.exec(t, nil, right, "--config", cfg, "login")
	if ok.code != 0 {
		t.Fatalf("login after reset: %v", ok)
	}
	if lr, _ := local.Record(k.Serial); lr.Failures != 0 || lr.Locked || lr.ResetGeneration != reset.ResetGeneration {
		t.Fatalf("local record after reset and login: %+v", lr)
	}
	// The five wrong PINs were reported to the gateway, once.
	f.gw.mu.Lock()
	reports := f.gw.reports
	f.gw.mu.Unlock()
	if len(reports) != 1 || len(reports[0].Failures) != 5 || !reports[0].Failures[4].Locked || reports[0].Failures[0].Count != 1 {
		t.Fatalf("reports to the gateway: %+v", reports)
	}
	if un, _ := local.Unreported(k.Serial); len(un) != 0 {
		t.Fatalf("unreported after login: %+v", un)
	}
	// A wrong PIN after the reset counts from zero again.
	r := f.exec(t, nil, wrong, "--config", cfg, "login")
	if r.code != cli.ExitAuth || !strings.Contains(r.stderr, "wrong PIN: 4 tries left") {
		t.Fatalf("wrong PIN after reset: %v", r)
	}
	if rec, _, _ := f.tokenRecord(t, k); rec.Failures != 1 || rec.ResetGeneration != reset.ResetGeneration {
		t.Fatalf("record on the key after a wrong PIN following the reset: %+v", rec)
	}
}

func TestExpiredCertificateOnToken(t *testing.T) {
	f := newTokenFixture(t)
	// Issued two years ago for one year.
	k := provisionKey(t, f.s, "expired-key", f.pki, time.Now().Add(-2*365*24*time.Hour), 365*24*time.Hour)
	before := f.gw.connections()
	r := f.exec(t, nil, []string{"GRIDPAY_TOKEN_PIN=" + k.UserPIN}, "--config", f.config(t, k, t.TempDir()), "login")
	want := "client: the certificate on your USB key expired on " + shanghaiTime(k.leaf.NotAfter) + "; ask the power company for a new one"
	if r.code != cli.ExitAuth || !strings.Contains(r.stderr, want) {
		t.Fatalf("expired certificate: %v\nwant %q", r, want)
	}
	if f.gw.connections() != before {
		t.Fatal("the client connected to the gateway with an expired certificate")
	}
}

func TestPINPromptRefusedWithoutTerminal(t *testing.T) {
	f := newTokenFixture(t)
	k := provisionKey(t, f.s, "prompt-key", f.pki, time.Now().Add(-time.Hour), 0)
	state := t.TempDir()
	cfg := f.config(t, k, state)
	for name, stdin := range map[string]io.Reader{
		"stdin /dev/null": nil,
		"stdin a pipe":    strings.NewReader(k.UserPIN + "\n"),
	} {
		t.Run(name, func(t *testing.T) {
			t0 := time.Now()
			r := f.exec(t, stdin, nil, "--config", cfg, "login")
			if r.code != cli.ExitConfig {
				t.Fatal(r)
			}
			if !strings.Contains(r.stderr, "no PIN given and stdin is not a terminal, so it cannot be asked: set token.pin.file or the environment variable GRIDPAY_TOKEN_PIN") {
				t.Fatalf("message:\n%s", r.stderr)
			}
			if time.Since(t0) > 20*time.Second {
				t.Fatalf("took %s", time.Since(t0))
			}
		})
	}
	if lr, _ := pinlock.OpenLocal(state); lr != nil {
		if rec, _ := lr.Record(k.Serial); rec.Failures != 0 {
			t.Fatalf("a refused prompt counted as a wrong PIN: %+v", rec)
		}
	}
}

func TestTokenSelection(t *testing.T) {
	f := newTokenFixture(t)
	a := provisionKey(t, f.s, "select-a", f.pki, time.Now().Add(-time.Hour), 0)
	provisionKey(t, f.s, "select-b", f.pki, time.Now().Add(-time.Hour), 0)
	cfg := writeConfig(t, t.TempDir(),
		"log: {level: warn, format: console}",
		"token: {module: "+f.s.ModulePath()+"}",
		"gateway_url: "+f.gw.srv.URL,
		"ca_file: "+f.pki.rootFile,
		"state_dir: "+t.TempDir(),
	)
	env := []string{"GRIDPAY_TOKEN_PIN=" + a.UserPIN}
	r := f.exec(t, nil, env, "--config", cfg, "login")
	if r.code != cli.ExitUsage || !strings.Contains(r.stderr, "USB keys are present; choose one with --token-serial") ||
		!strings.Contains(r.stderr, "--token-serial "+a.Serial) {
		t.Fatalf("several keys: %v", r)
	}
	if r := f.exec(t, nil, env, "--config", cfg, "--token-serial", a.Serial, "info"); r.code != 0 || !strings.Contains(r.stdout, "Metering points:") {
		t.Fatalf("--token-serial: %v", r)
	}
	if r := f.exec(t, nil, env, "--config", cfg, "--token-label", "select-a", "arrears", "--json"); r.code != 0 {
		t.Fatalf("--token-label: %v", r)
	}
	if r := f.exec(t, nil, env, "--config", cfg, "--token-serial", "0000000000000000", "login"); r.code != cli.ExitUnavailable ||
		!strings.Contains(r.stderr, "insert your USB key") {
		t.Fatalf("absent key: %v", r)
	}
}

func TestMissingModule(t *testing.T) {
	f := newTokenFixture(t)
	cfg := writeConfig(t, t.TempDir(),
		"token: {module: /nonexistent/opensc-pkcs11.so}",
		"gateway_url: "+f.gw.srv.URL,
		"ca_file: "+f.pki.rootFile,
		"state_dir: "+t.TempDir(),
	)
	r := f.exec(t, nil, nil, "--config", cfg, "login")
	if r.code != cli.ExitConfig || !strings.Contains(r.stderr, "the PKCS#11 module for USB keys is missing") {
		t.Fatal(r)
	}
}

func TestBinaryHelp(t *testing.T) {
	f := newTokenFixture(t)
	r := f.exec(t, nil, nil, "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "Exit codes:") || !strings.Contains(r.stdout, "history") {
		t.Fatal(r)
	}
	r = f.exec(t, nil, nil, "login", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "Exit codes:") || !strings.Contains(r.stdout, "--allow-final-try") {
		t.Fatal(r)
	}
}

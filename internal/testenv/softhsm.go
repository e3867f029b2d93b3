package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gridpay/gridpay/hsm"
)

// SoftHSMModuleEnv overrides where the SoftHSM2 PKCS#11 module is looked for.
const SoftHSMModuleEnv = "GRIDPAY_SOFTHSM_MODULE"

// softHSMModulePaths are where distributions install the module.
var softHSMModulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// SoftHSM is a SoftHSM2 configuration whose tokens live in a directory of
// their own.
//
// SoftHSM2 reads its configuration (the SOFTHSM2_CONF environment variable)
// when the module is initialised, and hsm initialises a module once per
// process. So a process can use one SoftHSM only, created before anything
// opens the module: NewSoftHSM refuses a second directory, and a test
// package should create it in TestMain or get the shared one from
// SoftHSMForTest. Child processes (pkcs11-tool, GridPay programs) get the
// same tokens through Env.
type SoftHSM struct {
	dir    string
	conf   string
	module string
}

// active is the process's SoftHSM, once one is made.
var (
	activeMu sync.Mutex
	active   *SoftHSM
	tempDir  string // made by SoftHSMForTest, removed by RemoveSoftHSMForTest
)

// NewSoftHSM writes dir/softhsm2.conf with its token directory dir/tokens,
// points SOFTHSM2_CONF at it for this process and finds the module. It must
// run before the SoftHSM2 module is first opened in this process. Calling it
// again with the same dir returns the same SoftHSM; another dir is an error.
func NewSoftHSM(dir string) (*SoftHSM, error) {
	activeMu.Lock()
	defer activeMu.Unlock()
	return newSoftHSMLocked(dir)
}

func newSoftHSMLocked(dir string) (*SoftHSM, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("testenv: NewSoftHSM: %w", err)
	}
	module, err := findSoftHSMModule()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "softhsm2.conf")

	if active != nil {
		if active.conf == conf {
			return active, nil
		}
		return nil, fmt.Errorf("testenv: NewSoftHSM(%s): this process already uses %s; SOFTHSM2_CONF is process-wide and read once, so use one SoftHSM per process (SoftHSMForTest)", dir, active.conf)
	}

	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return nil, fmt.Errorf("testenv: NewSoftHSM: %w", err)
	}
	// objectstore.backend = file keeps each object in a file under tokens,
	// where tests can look; the alternative (db) needs SoftHSM built with
	// SQLite.
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, fmt.Errorf("testenv: NewSoftHSM: %w", err)
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return nil, fmt.Errorf("testenv: NewSoftHSM: %w", err)
	}
	active = &SoftHSM{dir: dir, conf: conf, module: module}
	return active, nil
}

func findSoftHSMModule() (string, error) {
	if p := os.Getenv(SoftHSMModuleEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("testenv: %s=%s: %w", SoftHSMModuleEnv, p, err)
		}
		return p, nil
	}
	for _, p := range softHSMModulePaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("testenv: SoftHSM2 PKCS#11 module not found (looked in %v); run `make deps` or `apt-get install softhsm2`, or set %s", softHSMModulePaths, SoftHSMModuleEnv)
}

// ModulePath is the SoftHSM2 PKCS#11 module.
func (s *SoftHSM) ModulePath() string { return s.module }

// ConfPath is the softhsm2.conf this SoftHSM wrote.
func (s *SoftHSM) ConfPath() string { return s.conf }

// Dir is the directory holding the configuration and the tokens.
func (s *SoftHSM) Dir() string { return s.dir }

// Env is the environment entry that gives a child process these tokens:
// append it to os.Environ() for exec.Cmd.Env.
func (s *SoftHSM) Env() []string { return []string{"SOFTHSM2_CONF=" + s.conf} }

// InitToken initialises a new token labelled label, with the Security
// Officer PIN soPIN and the user PIN userPIN, and returns its serial. It goes
// through PKCS#11 (hsm.Module.InitToken and InitUserPIN), not softhsm2-util,
// so it works after the module is loaded in this process.
func (s *SoftHSM) InitToken(label, soPIN, userPIN string) (serial string, err error) {
	m, err := hsm.OpenModule(s.module)
	if err != nil {
		return "", fmt.Errorf("testenv: InitToken(%q): %w", label, err)
	}
	defer func() {
		if cerr := m.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("testenv: InitToken(%q): %w", label, cerr)
		}
	}()
	ti, err := m.InitToken(label, []byte(soPIN))
	if err != nil {
		return "", fmt.Errorf("testenv: InitToken(%q): %w", label, err)
	}
	if err := m.InitUserPIN(hsm.Selector{Serial: ti.Serial}, []byte(soPIN), []byte(userPIN)); err != nil {
		return "", fmt.Errorf("testenv: InitToken(%q): %w", label, err)
	}
	return ti.Serial, nil
}

// TestToken is a token initialised for a test.
type TestToken struct {
	Label, Serial  string
	SOPIN, UserPIN string
}

// Selector selects this token.
func (t TestToken) Selector() hsm.Selector { return hsm.Selector{Label: t.Label, Serial: t.Serial} }

// NewTestToken initialises a token labelled label with random PINs, failing
// tb on error. Labels must be unique within the SoftHSM.
func (s *SoftHSM) NewTestToken(tb testing.TB, label string) TestToken {
	tb.Helper()
	t := TestToken{Label: label, SOPIN: randomPIN(), UserPIN: randomPIN()}
	serial, err := s.InitToken(label, t.SOPIN, t.UserPIN)
	if err != nil {
		tb.Fatal(err)
	}
	t.Serial = serial
	return t
}

func randomPIN() string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// SoftHSMForTest returns the process's SoftHSM: the one a TestMain made
// with NewSoftHSM, or else a new one in a fresh temporary directory. Every
// test of a package must use it (or that TestMain one) because the
// configuration is process-wide and read once. A temporary directory made
// here outlives the test that caused it; a TestMain can call
// RemoveSoftHSMForTest after m.Run to delete it.
func SoftHSMForTest(tb testing.TB) *SoftHSM {
	tb.Helper()
	activeMu.Lock()
	defer activeMu.Unlock()
	if active != nil {
		return active
	}
	dir, err := os.MkdirTemp("", "gridpay-softhsm-")
	if err != nil {
		tb.Fatalf("testenv: SoftHSMForTest: %v", err)
	}
	s, err := newSoftHSMLocked(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		tb.Fatal(err)
	}
	tempDir = dir
	return s
}

// RemoveSoftHSMForTest deletes the temporary directory SoftHSMForTest made,
// if it made one. Call it from TestMain after m.Run.
func RemoveSoftHSMForTest() error {
	activeMu.Lock()
	defer activeMu.Unlock()
	if tempDir == "" {
		return nil
	}
	return os.RemoveAll(tempDir)
}

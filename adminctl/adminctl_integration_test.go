//go:build integration

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stack is a database and an HSM token for one test, and a config file
// pointing adminctl at them.
type stack struct {
	bin, config string
	env         []string
}

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "adminctl")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func newStack(t *testing.T, label string) stack {
	t.Helper()
	dsn := testenv.NewDatabase(t)
	soft := testenv.SoftHSMForTest(t)
	tok := soft.NewTestToken(t, label)
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "hsm.pin")
	if err := os.WriteFile(pinFile, []byte(tok.UserPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`log: {level: warn, format: json}
database: {dsn: %q}
hsm: {module: %q, token_label: %q, pin: {file: %q}}
pki: {dir: %q}
`, dsn, soft.ModulePath(), label, pinFile, filepath.Join(dir, "pki"))
	cfgFile := filepath.Join(dir, "gridpay.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return stack{bin: adminctlBin, config: cfgFile, env: append(os.Environ(), soft.Env()...)}
}

var adminctlBin string

// run runs adminctl and returns stdout, stderr and the exit code.
func (s stack) run(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(s.bin, append([]string{"--config", s.config}, args...)...)
	cmd.Env = append(append([]string{}, s.env...), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func TestAdminctl(t *testing.T) {
	adminctlBin = build(t)
	s := newStack(t, "adminctl-hsm")

	// A program refuses an older schema and names the missing migration.
	_, stderr, code := s.run(t, nil, "ca", "show")
	if code != cli.ExitUnavailable || !strings.Contains(stderr, "0001_certificates not applied") || !strings.Contains(stderr, "adminctl db migrate") {
		t.Fatalf("ca show on an empty database: exit %d, %s", code, stderr)
	}

	out, stderr, code := s.run(t, nil, "db", "migrate", "--json")
	var migrated struct{ Applied []string }
	if code != 0 || json.Unmarshal([]byte(out), &migrated) != nil || len(migrated.Applied) < 2 {
		t.Fatalf("db migrate: exit %d, out %q, err %s", code, out, stderr)
	}
	out, _, code = s.run(t, nil, "db", "migrate", "--json")
	if code != 0 || !strings.Contains(out, `"applied": []`) {
		t.Fatalf("second db migrate should apply nothing: exit %d, %s", code, out)
	}

	// The CA: created once, then reused.
	out, stderr, code = s.run(t, nil, "ca", "init", "--json")
	var rep struct {
		Steps []struct{ CA, Key, Cert string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Steps) != 3 || rep.Steps[0].Key != "created" {
		t.Fatalf("ca init: exit %d, out %s, err %s", code, out, stderr)
	}
	out, _, code = s.run(t, nil, "ca", "init", "--json")
	if code != 0 || strings.Contains(out, `"created"`) {
		t.Fatalf("second ca init must reuse everything: exit %d\n%s", code, out)
	}
	out, _, code = s.run(t, nil, "ca", "crl")
	if code != 0 || !strings.Contains(out, "customer  CRL #2") {
		t.Fatalf("ca crl: exit %d\n%s", code, out)
	}
	// Service certificates: keys made in the HSM, kept while current.
	issue := []string{"ca", "issue", "--server", "--name", "gateway", "--dns", "localhost", "--ip", "127.0.0.1", "--key-label", "gw-tls", "--json"}
	out, stderr, code = s.run(t, nil, issue...)
	if code != 0 || !strings.Contains(out, `"outcome": "issued"`) {
		t.Fatalf("ca issue --server: exit %d\n%s%s", code, out, stderr)
	}
	out, _, code = s.run(t, nil, issue...)
	if code != 0 || !strings.Contains(out, `"outcome": "kept"`) {
		t.Fatalf("second ca issue should keep the certificate: exit %d\n%s", code, out)
	}
	out, _, code = s.run(t, nil, append(issue, "--renew")...)
	if code != 0 || !strings.Contains(out, `"outcome": "issued"`) {
		t.Fatalf("ca issue --renew: exit %d\n%s", code, out)
	}
	out, stderr, code = s.run(t, nil, "ca", "issue", "--name", "worker", "--key-label", "worker-platform")
	if code != 0 || !strings.Contains(out, "CN=worker") {
		t.Fatalf("ca issue (service): exit %d\n%s%s", code, out, stderr)
	}
	_, _, code = s.run(t, nil, "ca", "issue", "--server", "--name", "gateway", "--key-label", "x")
	if code != cli.ExitUsage {
		t.Fatalf("server certificate without names: exit %d", code)
	}

	// Development fixture: a blank token becomes a customer's USB key.
	pins := t.TempDir()
	for name, v := range map[string]string{"so": "so-secret-1", "user": "user-secret-1"} {
		if err := os.WriteFile(filepath.Join(pins, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	prov := []string{"dev", "provision-key", "--customer", "C00000042", "--token-label", "usb-42",
		"--so-pin-file", filepath.Join(pins, "so"), "--pin-file", filepath.Join(pins, "user"), "--json"}
	out, stderr, code = s.run(t, nil, prov...)
	if code != 0 || !strings.Contains(out, `"customer_id": "C00000042"`) {
		t.Fatalf("dev provision-key: exit %d\n%s%s", code, out, stderr)
	}
	_, stderr, code = s.run(t, nil, prov...)
	if code != cli.ExitConflict {
		t.Fatalf("provisioning the same key twice: exit %d, %s", code, stderr)
	}

	out, _, code = s.run(t, nil, "audit", "verify", "--json")
	if code != 0 || !strings.Contains(out, `"checked"`) {
		t.Fatalf("audit verify: exit %d\n%s", code, out)
	}

	// Wrong PIN: authentication exit code, and the PIN is not echoed.
	bad := filepath.Join(t.TempDir(), "bad.pin")
	if err := os.WriteFile(bad, []byte("000000"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = s.run(t, []string{"GRIDPAY_HSM_PIN_FILE=" + bad}, "ca", "show")
	if code != cli.ExitAuth || !strings.Contains(stderr, "wrong PIN") || strings.Contains(stderr, "000000") {
		t.Fatalf("wrong PIN: exit %d, %s", code, stderr)
	}

	// Configuration errors name the key and exit 3.
	_, stderr, code = s.run(t, []string{"GRIDPAY_HSM_SESSIONS=lots"}, "db", "status")
	if code != cli.ExitConfig || !strings.Contains(stderr, "hsm.sessions") {
		t.Fatalf("bad config value: exit %d, %s", code, stderr)
	}
	_, stderr, code = s.run(t, nil, "db", "status", "extra")
	if code != cli.ExitUsage {
		t.Fatalf("extra argument: exit %d, %s", code, stderr)
	}

	// config show prints the secret sources, never the PIN.
	out, _, code = s.run(t, []string{"GRIDPAY_HSM_PIN=424242"}, "config", "show")
	if code != 0 || !strings.Contains(out, `"pin"`) || strings.Contains(out, "424242") {
		t.Fatalf("config show: exit %d\n%s", code, out)
	}
}

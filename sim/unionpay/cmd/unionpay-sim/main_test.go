package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/unionpay"
)

func run(t *testing.T, env map[string]string, args ...string) (int, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out bytes.Buffer
	cmd := newCommand(&out, &out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	if err != nil {
		out.WriteString(err.Error())
	}
	return cli.ExitCode(err), out.String()
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"merchant-cert", "--help"}} {
		code, out := run(t, nil, args...)
		if code != cli.ExitOK || !strings.Contains(out, "Exit codes:") || !strings.Contains(out, "Usage:") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
	_, out := run(t, nil, "serve", "--help")
	for _, want := range []string{"--dsn", "--state-dir", "--listen", "--admin-listen", "--merchant-cert", "--time-scale",
		"--auto-approve", "--drop-notifications", "--duplicate-notifications", "--delay-notifications", "--reorder-notifications",
		"--query-unknown", "--refund-failures", "--refund-failure-mode", "root.pem"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --help does not mention %s", want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
	}{
		{"no command", nil, nil, cli.ExitUsage},
		{"unknown flag", nil, []string{"serve", "--no-such-flag"}, cli.ExitUsage},
		{"stray argument", nil, []string{"serve", "extra"}, cli.ExitUsage},
		{"bad fault code", nil, []string{"serve", "--query-unknown-code", "34"}, cli.ExitUsage},
		{"bad refund mode", nil, []string{"serve", "--refund-failure-mode", "boom"}, cli.ExitUsage},
		{"zero time scale", nil, []string{"serve", "--time-scale", "0"}, cli.ExitUsage},
		{"missing merchant cert", nil, []string{"serve", "--merchant-cert", "/nonexistent.pem"}, cli.ExitConfig},
		{"bad env", map[string]string{"GRIDPAY_UNIONPAY_SIM_TIME_SCALE": "fast"}, []string{"serve"}, cli.ExitConfig},
		{"bad merchant ID", nil, []string{"merchant-cert", "--mer-id", "bad/id"}, cli.ExitUsage},
		{"bad log level", nil, []string{"serve", "--log-level", "loud"}, cli.ExitConfig},
	} {
		if code, out := run(t, tc.env, tc.args...); code != tc.code {
			t.Errorf("%s: exit %d, want %d\n%s", tc.name, code, tc.code, out)
		}
	}
}

func TestMerchantCert(t *testing.T) {
	state, out := t.TempDir(), t.TempDir()
	code, text := run(t, nil, "merchant-cert", "--state-dir", state, "--out-dir", out, "--mer-id", "898310048160007", "--json", "--log-level", "warn")
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s", code, text)
	}
	var res struct {
		MerID  string `json:"mer_id"`
		CertID string `json:"cert_id"`
	}
	if err := json.Unmarshal([]byte(text), &res); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if _, err := unionpay.LoadKeyFile(filepath.Join(out, "merchant-key.pem")); err != nil {
		t.Errorf("key: %v", err)
	}
	cert, err := unionpay.LoadCertificateFile(filepath.Join(out, "merchant.pem"))
	if err != nil || unionpay.CertID(cert) != res.CertID || cert.Subject.CommonName != "898310048160007" {
		t.Errorf("cert: %v %+v", err, res)
	}
	if _, err := os.Stat(filepath.Join(state, "root.pem")); err != nil {
		t.Errorf("root: %v", err)
	}
}

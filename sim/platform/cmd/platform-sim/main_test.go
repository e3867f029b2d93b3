package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/gridpay/gridpay/internal/cli"
)

// run executes the command in-process and returns its exit code and output.
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
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"seed", "--help"}, {"customers", "--help"}} {
		code, out := run(t, nil, args...)
		if code != cli.ExitOK || !strings.Contains(out, "Exit codes:") || !strings.Contains(out, "Usage:") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
	_, out := run(t, nil, "serve", "--help")
	for _, want := range []string{"--client-ca", "--allow-service", "--state-dir", "--listen", "--today", "--dsn", "TLS handshake"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --help does not mention %s", want)
		}
	}
	_, out = run(t, nil, "seed", "--help")
	for _, want := range []string{"--customers", "--months", "--seed", "--today", "--if-empty"} {
		if !strings.Contains(out, want) {
			t.Errorf("seed --help does not mention %s", want)
		}
	}
}

func TestUsageAndConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
	}{
		{"no command", nil, nil, cli.ExitUsage},
		{"unknown flag", nil, []string{"serve", "--no-such-flag"}, cli.ExitUsage},
		{"stray argument", nil, []string{"seed", "extra"}, cli.ExitUsage},
		{"bad --today", nil, []string{"seed", "--today", "2026-13-01"}, cli.ExitConfig},
		{"bad GRIDPAY_SIM_TODAY", map[string]string{"GRIDPAY_SIM_TODAY": "tomorrow"}, []string{"seed"}, cli.ExitConfig},
		{"bad GRIDPAY_SIM_CUSTOMERS", map[string]string{"GRIDPAY_SIM_CUSTOMERS": "many"}, []string{"seed"}, cli.ExitConfig},
		{"zero customers", nil, []string{"seed", "--customers", "0", "--today", "2026-11-21"}, cli.ExitUsage},
		{"bad log level", nil, []string{"seed", "--log-level", "loud"}, cli.ExitConfig},
		{"missing client CA", nil, []string{"serve", "--client-ca", "/nonexistent/services-ca.pem"}, cli.ExitConfig},
		{"missing client CA from the environment", map[string]string{"GRIDPAY_SIM_CLIENT_CA": "/nonexistent/ca.pem"}, []string{"serve"}, cli.ExitConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := run(t, tc.env, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, out)
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridpay/gridpay/internal/cli"
)

func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := command()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestCommandLine(t *testing.T) {
	out, err := execute(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--config", "--listen", "--log-level", "Exit codes:", "6  service unavailable", "TLS 1.3"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
	if _, err := execute(t, "--no-such-flag"); cli.ExitCode(err) != cli.ExitUsage {
		t.Errorf("unknown flag: %v (exit %d)", err, cli.ExitCode(err))
	}
	if _, err := execute(t, "extra"); err == nil {
		t.Error("a positional argument was accepted")
	}
	bad := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(bad, []byte("rate_per_second: -1\nlisten: nowhere\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = execute(t, "--config", bad)
	if cli.ExitCode(err) != cli.ExitConfig || !strings.Contains(err.Error(), "rate_per_second") || !strings.Contains(err.Error(), "listen") {
		t.Errorf("bad configuration: %v (exit %d)", err, cli.ExitCode(err))
	}
	_, err = execute(t, "--config", bad, "--listen", "127.0.0.1:9443")
	if err == nil || strings.Contains(err.Error(), "listen:") {
		t.Errorf("--listen should override the file: %v", err)
	}
}

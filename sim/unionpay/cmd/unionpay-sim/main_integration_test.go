//go:build integration

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/internal/testenv"
	"github.com/gridpay/gridpay/unionpay"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "unionpay-sim")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestProgram(t *testing.T) {
	bin := build(t)
	var out bytes.Buffer
	cmd := exec.Command(bin, "--help")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || !strings.Contains(out.String(), "Usage:") || !strings.Contains(out.String(), "Exit codes:") {
		t.Fatalf("--help: %v\n%s", err, out.String())
	}
	err := exec.Command(bin, "serve", "--no-such-flag").Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != cli.ExitUsage {
		t.Errorf("bad flag: %v", err)
	}

	// merchant-cert, then serve with it, query with GridPay's client, and
	// stop with SIGTERM.
	state, keys := t.TempDir(), t.TempDir()
	if out, err := exec.Command(bin, "merchant-cert", "--state-dir", state, "--out-dir", keys, "--mer-id", "898310048160001").CombinedOutput(); err != nil {
		t.Fatalf("merchant-cert: %v\n%s", err, out)
	}
	dsn := testenv.NewDatabase(t)
	serve := exec.Command(bin, "serve", "--dsn", dsn, "--state-dir", state, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--time-scale", "0.01", "--auto-approve", "--log-level", "warn")
	stdout, _ := serve.StdoutPipe()
	var stderr bytes.Buffer
	serve.Stderr = &stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer serve.Process.Kill()
	urls := map[string]string{}
	sc := bufio.NewScanner(stdout)
	for len(urls) < 3 && sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok {
			urls[k] = strings.TrimSpace(v)
		}
	}
	if len(urls) < 3 {
		t.Fatalf("serve printed %v\n%s", urls, stderr.String())
	}
	go io.Copy(io.Discard, stdout)
	key, err := unionpay.LoadKeyFile(filepath.Join(keys, "merchant-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := unionpay.LoadCertificateFile(filepath.Join(keys, "merchant.pem"))
	roots, err := unionpay.LoadCertPool(urls["root"])
	if err != nil {
		t.Fatal(err)
	}
	gw := urls["gateway"]
	c, err := unionpay.NewClient(unionpay.Config{MerchantID: "898310048160001", FrontURL: gw + "/gateway/api/frontTransReq.do",
		BackURL: gw + "/gateway/api/backTransReq.do", QueryURL: gw + "/gateway/api/queryTrans.do", FileURL: gw + "/gateway/api/fileTransReq.do",
		Signer: key, SignCert: cert, Roots: roots})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Query(context.Background(), "GP00000000000001", time.Now())
	if err != nil || r.RespCode != unionpay.RespNotFound {
		t.Errorf("query: %+v %v", r, err)
	}
	resp, err := http.Get(urls["admin"] + "/faults")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"auto_approve": true`) {
		t.Errorf("GET /faults: %s", b)
	}
	serve.Process.Signal(syscall.SIGTERM)
	if err := serve.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v\n%s", err, stderr.String())
	}
}

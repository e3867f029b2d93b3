//go:build integration

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/internal/testenv"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	simplatform "github.com/gridpay/gridpay/sim/platform"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// build compiles the program once per test.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "platform-sim")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// servicesCA makes GridPay's services CA in memory and writes its
// certificate where --client-ca reads it.
func servicesCA(t *testing.T, path string) *pki.CA {
	t.Helper()
	rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rc, err := pki.NewRoot(rk, pki.RootOptions{CommonName: "GridPay Root CA", Organization: "GridPay"})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := pki.NewCA(rc, rk)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c, err := pki.NewIssuing(root, k.Public(), pki.IssuingOptions{CommonName: "GridPay Services CA", Role: pki.RoleServices})
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := pki.NewCA(c, k)
	if err := os.WriteFile(path, pki.EncodeCertificatesPEM(c), 0o644); err != nil {
		t.Fatal(err)
	}
	return ca
}

func serviceCert(t *testing.T, ca *pki.CA, name string) *tls.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c, err := ca.IssueService(k.Public(), pki.ServiceRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{c.Raw, ca.Cert.Raw}, PrivateKey: k}
}

// runBin runs the program to completion.
func runBin(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatal(err)
	return 0, "", ""
}

func TestProgram(t *testing.T) {
	start := time.Now()
	bin := build(t)
	t.Logf("built in %v", time.Since(start).Round(time.Millisecond))
	dir := t.TempDir()
	env := []string{"GRIDPAY_SIM_DSN=" + testenv.NewDatabase(t), "GRIDPAY_SIM_TODAY=2026-11-21"}

	code, out, errOut := runBin(t, bin, env, "seed", "--customers", "25", "--months", "12", "--seed", "3", "--json")
	if code != 0 {
		t.Fatalf("seed: exit %d\n%s%s", code, out, errOut)
	}
	var report simplatform.SeedReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("seed --json printed %q: %v", out, err)
	}
	ds, _ := simplatform.Generate(simplatform.SeedOptions{Customers: 25, Months: 12, Seed: 3, Today: "2026-11-21"})
	if report.Customers != 25 || report.Bills != 300 || report.Hash != ds.Hash() {
		t.Errorf("seed report %+v; want the library's data (hash %s)", report, ds.Hash())
	}
	if code, out, errOut := runBin(t, bin, env, "seed", "--if-empty", "--seed", "4"); code != 0 || strings.Contains(out, "seeded") {
		t.Errorf("seed --if-empty on a seeded database: exit %d\n%s%s", code, out, errOut)
	}

	code, out, _ = runBin(t, bin, env, "customers", "--overdue", "--limit", "1")
	id := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(id, "C") || strings.Contains(id, "\n") {
		t.Fatalf("customers --overdue --limit 1: exit %d, %q", code, out)
	}
	if code, _, _ := runBin(t, bin, env, "customers", "--type", "agricultural"); code != cli.ExitNotFound {
		t.Errorf("customers matching nothing: exit %d, want %d", code, cli.ExitNotFound)
	}
	if code, _, errOut := runBin(t, bin, env, "seed", "--dsn", "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"); code != cli.ExitUnavailable {
		t.Errorf("unreachable database: exit %d, want %d\n%s", code, cli.ExitUnavailable, errOut)
	}

	// serve, as make demo would start it.
	caFile := filepath.Join(dir, "services-ca.pem")
	ca := servicesCA(t, caFile)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	state := filepath.Join(dir, "state")
	srv := exec.Command(bin, "serve", "--listen", addr, "--client-ca", caFile, "--log-format", "json")
	srv.Env = append(os.Environ(), append(env, "GRIDPAY_SIM_STATE_DIR="+state)...)
	var logs syncBuffer
	srv.Stderr = &logs
	started := time.Now()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	t.Cleanup(func() { srv.Process.Kill() })
	for {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("serve exited: %v\n%s", err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(started) > 30*time.Second {
			t.Fatalf("serve did not listen within 30s\n%s", logs.String())
		}
	}
	t.Logf("serving after %v", time.Since(started).Round(time.Millisecond))
	if fi, err := os.Stat(filepath.Join(state, "ca-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key: %v, %v", fi, err)
	}
	caPEM, err := os.ReadFile(filepath.Join(state, simplatform.CAFileName))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)

	client := func(cert *tls.Certificate) *platform.Client {
		cfg := &tls.Config{RootCAs: roots}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c, err := platform.NewClient("https://"+addr, cfg, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	arr, err := client(serviceCert(t, ca, "gateway")).Arrears(ctx, id)
	if err != nil || arr.OverdueBills == 0 || arr.Total <= 0 {
		t.Errorf("arrears of %s through the program: %+v, %v", id, arr, err)
	}
	if _, err := client(serviceCert(t, ca, "intruder")).Customer(ctx, id); !errors.Is(err, platform.ErrUnavailable) {
		t.Errorf("intruder: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // let the log line land
	if l := logs.String(); !strings.Contains(l, "refused TLS client") || !strings.Contains(l, `service \"intruder\" is not admitted`) {
		t.Errorf("the refusal is not in the program's log:\n%s", l)
	}

	srv.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("serve after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not stop within 20s of SIGTERM")
	}
}

//go:build integration

package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/pki"
)

// opensslClient runs `openssl s_client` against the gateway with stdin as
// its input and returns the combined output and whether it exited 0.
func opensslClient(t *testing.T, stdin string, args ...string) (string, bool) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatalf("openssl is required for this test (apt-get install openssl): %v", err)
	}
	cmd := exec.Command("openssl", append([]string{"s_client"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("running openssl: %v", err)
		}
	}
	t.Logf("openssl s_client %s: exit ok=%v\n%s", strings.Join(args, " "), err == nil, out)
	return string(out), err == nil
}

// openssl, a client that shares no code with the gateway, sees TLS 1.2
// refused, TLS 1.3 without a client certificate refused, and TLS 1.3 with
// a customer's certificate served.
func TestOpenSSLClient(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.softKey("C1001", "50F7KEY01")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(alice.key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := write("key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	certFile := write("cert.pem", pki.EncodeCertificatesPEM(alice.cert, s.ca.Customer.Cert))
	rootFile := write("root.pem", pki.EncodeCertificatesPEM(s.ca.Root.Cert))
	common := []string{"-connect", s.addr, "-CAfile", rootFile, "-verify_return_error", "-servername", "localhost"}
	request := "GET " + api.PathMe + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"

	t.Run("TLS 1.2 is refused", func(t *testing.T) {
		out, ok := opensslClient(t, "", append(common, "-tls1_2", "-cert", certFile, "-key", keyFile)...)
		if ok || !strings.Contains(out, "alert protocol version") {
			t.Errorf("exit ok=%v, output:\n%s", ok, out)
		}
		if strings.Contains(out, "HTTP/1.1") {
			t.Error("got an HTTP answer")
		}
	})
	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		out, ok := opensslClient(t, "", append(common, "-tls1_1", "-cert", certFile, "-key", keyFile)...)
		if ok || strings.Contains(out, "HTTP/1.1") {
			t.Errorf("exit ok=%v, output:\n%s", ok, out)
		}
	})
	t.Run("no client certificate is refused", func(t *testing.T) {
		out, ok := opensslClient(t, request, append(common, "-tls1_3", "-ign_eof")...)
		// The handshake gets as far as the server's certificate (verified),
		// then the server, having asked for a client certificate and got
		// none, aborts with the TLS 1.3 alert certificate_required (116).
		if !strings.Contains(out, "Verify return code: 0 (ok)") {
			t.Errorf("the server's certificate did not verify:\n%s", out)
		}
		if ok || !strings.Contains(out, "alert certificate required") || strings.Contains(out, "HTTP/1.1") {
			t.Errorf("exit ok=%v, output:\n%s", ok, out)
		}
	})
	t.Run("a customer certificate is served", func(t *testing.T) {
		out, ok := opensslClient(t, request, append(common, "-tls1_3", "-ign_eof", "-cert", certFile, "-key", keyFile)...)
		for _, want := range []string{"TLSv1.3", "Verify return code: 0 (ok)", "HTTP/1.1 200 OK", `"id":"C1001"`, "Cache-Control: no-store"} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in the output:\n%s", want, out)
			}
		}
		if !ok {
			t.Errorf("openssl exited with an error:\n%s", out)
		}
	})
}

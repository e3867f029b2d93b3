//go:build integration

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gridpay/gridpay/protocol"
)

// The web UI with a real USB key (a SoftHSM2 token) through the CLI's own
// unlock path, and the fake gateway.
func TestUIWithUSBKey(t *testing.T) {
	f := newTokenFixture(t)
	k := provisionKey(t, f.s, "ui-key", f.pki, time.Now().Add(-time.Hour), 0)
	// No PIN source in the configuration: the page is where it comes from.
	cfg := f.config(t, k, t.TempDir())
	a := newTestApp(t, cfg)
	keys := newUIKeys(a, time.Hour)
	ts := httptest.NewUnstartedServer(nil)
	srv, err := newUIServer(a, ts.Listener.Addr().(*net.TCPAddr), keys)
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = srv
	ts.Start()
	t.Cleanup(ts.Close)
	t.Cleanup(keys.close)
	uf := &uiFixture{a: a, keys: keys, srv: srv, ts: ts, base: ts.URL}
	b := uf.browser(t)

	body := b.page("/login")
	if !strings.Contains(body, `data-state="ready"`) || !strings.Contains(body, "ui-key") || !strings.Contains(body, k.Serial) {
		t.Fatalf("login page with the key inserted:\n%s", body)
	}

	// A wrong PIN is counted on the key and shown with the tries left.
	_, body = b.login(k.UserPIN + "0")
	if !strings.Contains(body, "PIN 错误：锁定前还可尝试 4 次。") || strings.Contains(body, k.UserPIN) {
		t.Fatalf("wrong PIN:\n%s", body)
	}
	if rec, found, _ := f.tokenRecord(t, k); !found || rec.Failures != 1 {
		t.Fatalf("record on the key after a wrong PIN: %+v (found %v)", rec, found)
	}
	if body := b.page("/login"); !strings.Contains(body, "此前已输错 1 次 PIN，锁定前还可尝试 4 次。") {
		t.Fatalf("login page after a wrong PIN:\n%s", body)
	}

	// The right PIN: the key is unlocked and presented to the gateway.
	resp, body := b.login(k.UserPIN)
	if resp.Request.URL.Path != "/overview" || !strings.Contains(body, "华东特钢有限公司") || !strings.Contains(body, "alert-critical") {
		t.Fatalf("login: %s\n%s", resp.Request.URL, body)
	}
	if strings.Contains(body, k.UserPIN) {
		t.Fatal("the PIN is on the page")
	}
	f.gw.mu.Lock()
	presented := len(f.gw.peers) > 0 && f.gw.peers[len(f.gw.peers)-1].Equal(k.leaf)
	reports := len(f.gw.reports)
	f.gw.mu.Unlock()
	if !presented {
		t.Fatal("the gateway did not receive the certificate on the token")
	}
	if reports != 1 {
		t.Fatalf("%d reports of wrong PINs, want 1", reports)
	}
	if rec, _, _ := f.tokenRecord(t, k); rec.Failures != 0 {
		t.Fatalf("the right PIN left %d failures on the key", rec.Failures)
	}
	// The key stays unlocked for the other pages, the PDF included.
	b.page("/consumption")
	b.page("/bills?view=all")
	b.page("/history")
	resp, pdf := b.get("/bills/B-2026-01/pdf")
	if resp.StatusCode != 200 {
		t.Fatalf("PDF: %d", resp.StatusCode)
	}
	checkPDF(t, []byte(pdf))
	f.gw.mu.Lock()
	for _, p := range f.gw.peers {
		if !p.Equal(k.leaf) {
			t.Error("a request without the token's certificate")
		}
	}
	f.gw.mu.Unlock()

	// Log out: the key is locked; logging in again works.
	resp, body = b.post("/logout", url.Values{"csrf": {b.csrf}})
	if resp.Request.URL.Path != "/login" || keys.current() != nil || !strings.Contains(body, `data-state="ready"`) {
		t.Fatalf("logout: %s\n%s", resp.Request.URL, body)
	}
	if resp, _ := b.login(k.UserPIN); resp.Request.URL.Path != "/overview" {
		t.Fatalf("second login at %s", resp.Request.URL)
	}

	// Idle: the watcher locks the key again.
	keys.idle = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go keys.watch(ctx, 20*time.Millisecond)
	for deadline := time.Now().Add(5 * time.Second); keys.current() != nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	if keys.current() != nil {
		t.Fatal("the key is still unlocked after the idle timeout")
	}
	if resp, body := b.get("/overview"); resp.Request.URL.Path != "/login" || !strings.Contains(body, "USB 密钥已自动锁定") {
		t.Fatalf("after the idle timeout: %s\n%s", resp.Request.URL, body)
	}
}

// The built binary: `client ui` prints its link, serves on loopback, lets
// in only with the secret, and stops cleanly on SIGINT.
func TestUIBinary(t *testing.T) {
	f := newTokenFixture(t)
	k := provisionKey(t, f.s, "ui-bin-key", f.pki, time.Now().Add(-time.Hour), 0)
	cfg := f.config(t, k, t.TempDir())
	cmd := exec.Command(f.bin, "--config", cfg, "ui", "--no-open")
	cmd.Env = append(os.Environ(), f.s.Env()...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	re := regexp.MustCompile(`http://127\.0\.0\.1:\d+/launch\?k=[A-Za-z0-9_-]{43}`)
	var link string
	timeout := time.After(30 * time.Second)
	for link == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("client ui ended without printing its link")
			}
			link = re.FindString(l)
		case <-timeout:
			t.Fatal("no link printed within 30 s")
		}
	}
	u, _ := url.Parse(link)
	req, _ := http.NewRequest(http.MethodGet, "http://"+u.Host+"/login", nil)
	if resp, _ := raw(t, req); resp.StatusCode != 403 {
		t.Fatalf("without the secret: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodGet, link, nil)
	resp, _ := raw(t, req)
	if resp.StatusCode != 200 || len(resp.Cookies()) != 1 {
		t.Fatalf("launch: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodGet, "http://"+u.Host+"/login", nil)
	req.AddCookie(resp.Cookies()[0])
	if resp, body := raw(t, req); resp.StatusCode != 200 || !strings.Contains(body, `data-state="ready"`) || !strings.Contains(body, "ui-bin-key") {
		t.Fatalf("login page: %d\n%s", resp.StatusCode, body)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("client ui after SIGINT: %v", err)
	}
	if !strings.Contains(strings.Join(rest, "\n"), "the USB key is locked") {
		t.Fatalf("output after SIGINT: %q", rest)
	}
}

// The Wallet page with real SoftHSM2 tokens: the key unlocked in the
// window, its private wallet object written through a second session that
// shares the page's login, and the meter card (a second token) opened with
// the PIN typed in the form while the key stays logged in.
func TestUIWalletOnSoftHSM(t *testing.T) {
	f := newTokenFixture(t)
	k := provisionKey(t, f.s, "ui-wallet-key", f.pki, time.Now().Add(-time.Hour), 0)
	card := f.s.NewTestToken(t, "Meter card UI")
	loads := newLoadServer(t, f.pki, loadService)
	f.gw.mu.Lock()
	f.gw.loads = loads
	f.gw.mu.Unlock()
	cfg := f.config(t, k, t.TempDir(), "pin: {file: "+pinFile(t, k.UserPIN)+"}")
	// The power company binds the card to the key, with the CLI.
	if r := f.exec(t, nil, []string{"GRIDPAY_CARD_PIN=" + card.UserPIN}, "--config", cfg, "card", "issue",
		"--card-serial", card.Serial, "--card-number", "3301-0001-0042"); r.code != 0 {
		t.Fatalf("card issue: %s", r)
	}

	a := newTestApp(t, cfg)
	keys := newUIKeys(a, time.Hour)
	ts := httptest.NewUnstartedServer(nil)
	srv, err := newUIServer(a, ts.Listener.Addr().(*net.TCPAddr), keys)
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = srv
	ts.Start()
	t.Cleanup(ts.Close)
	t.Cleanup(keys.close)
	b := (&uiFixture{a: a, keys: keys, srv: srv, ts: ts, base: ts.URL}).browser(t)
	if resp, body := b.login(k.UserPIN); resp.Request.URL.Path != "/overview" || !strings.Contains(body, `id="ov-wallet-balance">¥0.00`) {
		t.Fatalf("login: %s\n%s", resp.Request.URL, body)
	}
	wantAll(t, "the wallet", b.page("/wallet"), `id="wallet-amount">¥0.00`, `id="card-number">****0042`, `data-present="true"`)

	token, _ := b.askLoad("300.00")
	_, body := b.confirmLoad(token)
	wantAll(t, "the load", body, `data-outcome="confirmed"`, `id="result-amount">¥300.00`, `id="result-sequence">1`)
	if resp, _ := b.confirmLoad(token); resp.StatusCode != 409 {
		t.Fatalf("replayed confirmation: %d", resp.StatusCode)
	}
	loads.mu.Lock()
	sent := len(loads.raw)
	loads.mu.Unlock()
	if sent != 1 {
		t.Fatalf("%d load requests", sent)
	}
	wantAll(t, "the wallet after the load", b.page("/wallet"), `id="wallet-amount">¥300.00`, `data-verified="true"`, "日志链与签名已验证")

	transfer := func(pin string) string {
		t.Helper()
		_, body := b.post("/wallet/card", url.Values{"csrf": {b.csrf}, "action": {"transfer"}, "amount": {"120.00"}, "card_pin": {pin}})
		if strings.Contains(body, pin) || strings.Contains(body, "3301-0001-0042") {
			t.Fatalf("the card's PIN or number is on the page:\n%s", body)
		}
		return body
	}
	wantAll(t, "a wrong card PIN", transfer(card.UserPIN+"9"), "电表卡 PIN 错误。", `id="wallet-amount">¥300.00`)
	if keys.current() == nil {
		t.Fatal("a wrong card PIN locked the USB key")
	}
	wantAll(t, "the transfer", transfer(card.UserPIN), `id="card-wallet-balance">¥180.00`, `id="card-balance">¥120.00`, `id="card-total">¥300.00`)
	// The key's login outlived the card's: the pages go on.
	wantAll(t, "the history", b.page("/history?kind=loads"), protocol.LoadID(k.Serial, 1), "共 1 笔，存入钱包 ¥300.00")
	if resp, _ := b.post("/logout", url.Values{"csrf": {b.csrf}}); resp.Request.URL.Path != "/login" {
		t.Fatalf("logout: %s", resp.Request.URL)
	}

	// The CLI, another process, reads what the window wrote on the tokens.
	var w walletView
	r := f.exec(t, nil, nil, "--config", cfg, "wallet", "--offline", "--json")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &w) != nil || w.Balance != 180_00 || w.Sequence != 1 || !w.LogOK || w.Card != "****0042" {
		t.Fatalf("client wallet after the window: %s", r)
	}
	var c cardView
	r = f.exec(t, nil, []string{"GRIDPAY_CARD_PIN=" + card.UserPIN}, "--config", cfg, "card", "balance", "--card-serial", card.Serial, "--json")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &c) != nil || c.CardBalance != 120_00 || c.Total != 300_00 {
		t.Fatalf("client card balance after the window: %s", r)
	}
}

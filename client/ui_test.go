package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/client/pinlock"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/protocol"
)

const testPIN = "246810"

// uiFixture is the web UI in this process with an in-memory key behind a
// fake unlock, talking to the fake gateway.
type uiFixture struct {
	mem  *memFixture
	a    *app
	keys *uiKeys
	srv  *uiServer
	ts   *httptest.Server
	// base is http://127.0.0.1:port.
	base string

	mu       sync.Mutex
	clock    time.Time
	absent   bool
	finalTry bool
	removed  bool
	unlocks  int
	lastPIN  []byte // the slice unlock was given, to check it is zeroed
	final    bool   // allowFinalTry of the last unlock
	closed   int    // keys closed
}

// newApp for tests: configuration loaded from cfg as the root command does.
func newTestApp(t *testing.T, cfg string) *app {
	t.Helper()
	a := newApp()
	if err := a.root.ParseFlags([]string{"--config", cfg}); err != nil {
		t.Fatal(err)
	}
	a.configFile = cfg
	if err := a.setup(a.root, nil); err != nil {
		t.Fatal(err)
	}
	return a
}

func newUIFixture(t *testing.T) *uiFixture {
	t.Helper()
	f := &uiFixture{mem: newMemFixture(t)}
	f.clock = f.mem.now
	f.a = newTestApp(t, f.mem.cfg)
	f.a.now = f.now
	f.keys = newUIKeys(f.a, 15*time.Minute)
	f.keys.inspect = func(context.Context) (keyInfo, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.absent {
			return keyInfo{}, fail(cli.ExitUnavailable, hsm.ErrTokenAbsent, "no USB key found: insert your USB key")
		}
		return keyInfo{Token: hsm.TokenInfo{Label: "GridPay Key", Serial: testSerial, Initialized: true, UserPINFinalTry: f.finalTry}}, nil
	}
	f.keys.present = func(string) (bool, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return !f.removed, nil
	}
	f.keys.unlock = f.unlock
	f.ts = httptest.NewUnstartedServer(nil)
	var err error
	f.srv, err = newUIServer(f.a, f.ts.Listener.Addr().(*net.TCPAddr), f.keys)
	if err != nil {
		t.Fatal(err)
	}
	f.ts.Config.Handler = f.srv
	f.ts.Start()
	t.Cleanup(f.ts.Close)
	t.Cleanup(f.keys.close)
	f.base = f.ts.URL
	return f
}

func (f *uiFixture) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock
}

func (f *uiFixture) advance(d time.Duration) {
	f.mu.Lock()
	f.clock = f.clock.Add(d)
	f.mu.Unlock()
}

// unlock stands in for the USB key: the PIN-failure rule is the real one
// (pinlock.Guard on the state directory), the key is in memory.
func (f *uiFixture) unlock(ctx context.Context, pin []byte, allowFinalTry bool) (*unlockedKey, error) {
	f.mu.Lock()
	f.unlocks++
	f.lastPIN = pin
	f.final = allowFinalTry
	f.mu.Unlock()
	g := &pinlock.Guard{Max: f.a.cfg.MaxPINFailures, Serial: testSerial, Local: f.a.local, Now: f.now}
	st, err := g.Check(ctx)
	if err != nil {
		return nil, cli.WithCode(cli.ExitAuth, err)
	}
	if string(pin) != testPIN {
		r, _ := g.Failed(ctx, st)
		return nil, fail(cli.ExitAuth, hsm.ErrWrongPIN, "%s", pinlock.WrongPINMessage(r, g.Max))
	}
	if err := g.Succeeded(ctx, st); err != nil {
		return nil, err
	}
	return &unlockedKey{TokenSerial: testSerial, TokenLabel: "GridPay Key", Leaf: f.mem.leaf, CA: f.mem.pki.customer.Cert, Signer: f.mem.key,
		close: func() error {
			f.mu.Lock()
			f.closed++
			f.mu.Unlock()
			return nil
		}}, nil
}

// browser is an HTTP client that behaves as the launched browser does:
// cookies kept, redirects followed, Origin sent with POSTs.
type browser struct {
	t    *testing.T
	f    *uiFixture
	hc   *http.Client
	csrf string
	// responses seen, to check headers on all of them.
	seen []*http.Response
}

func (f *uiFixture) browser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, f: f, hc: &http.Client{Jar: jar}}
	resp, body := b.get(f.srv.launchURL())
	if resp.StatusCode != 200 || !strings.Contains(body, `http-equiv="refresh" content="0;url=/"`) {
		t.Fatalf("launch: %d\n%s", resp.StatusCode, body)
	}
	b.page("/login")
	return b
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	b.seen = append(b.seen, resp)
	body := string(data)
	if m := csrfField.FindStringSubmatch(body); m != nil {
		b.csrf = m[1]
	}
	return resp, body
}

func (b *browser) get(target string) (*http.Response, string) {
	b.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = b.f.base + target
	}
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// page GETs path and wants 200.
func (b *browser) page(path string) string {
	b.t.Helper()
	resp, body := b.get(path)
	if resp.StatusCode != 200 {
		b.t.Fatalf("GET %s: %d\n%s", path, resp.StatusCode, body)
	}
	return body
}

func (b *browser) post(path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.f.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.f.base)
	return b.do(req)
}

func (b *browser) login(pin string) (*http.Response, string) {
	b.t.Helper()
	return b.post("/login", url.Values{"csrf": {b.csrf}, "pin": {pin}})
}

func (b *browser) loggedIn() string {
	b.t.Helper()
	resp, body := b.login(testPIN)
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/overview" {
		b.t.Fatalf("login: %d at %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	return body
}

// raw sends a request without the browser's cookies or redirects.
func raw(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

func (b *browser) cookie() *http.Cookie {
	u, _ := url.Parse(b.f.base)
	for _, c := range b.hc.Jar.Cookies(u) {
		if c.Name == b.f.srv.cookie {
			return c
		}
	}
	b.t.Fatal("no session cookie")
	return nil
}

func checkSecurityHeaders(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	h := resp.Header
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("%s: CSP %q", what, csp)
	}
	if rp := h.Get("Referrer-Policy"); rp != "same-origin" && rp != "no-referrer" {
		t.Errorf("%s: Referrer-Policy %q", what, rp)
	}
	for k, want := range map[string]string{"X-Frame-Options": "DENY", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %s = %q, want %q", what, k, got, want)
		}
	}
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "access-control-") {
			t.Errorf("%s: CORS header %s: %q", what, k, h.Get(k))
		}
	}
}

func TestUILaunchSecretExchange(t *testing.T) {
	f := newUIFixture(t)
	u, err := url.Parse(f.srv.launchURL())
	if err != nil {
		t.Fatal(err)
	}
	secret := u.Query().Get("k")
	if n := len(secret) * 6 / 8; n < 16 {
		t.Fatalf("launch secret of %d bytes, want at least 16", n)
	}
	if u.Host != strings.TrimPrefix(f.base, "http://") || u.Path != "/launch" {
		t.Fatalf("launch URL %s", u)
	}

	for _, bad := range []string{"", "?k=", "?k=" + secret[:len(secret)-1], "?k=" + secret + "x", "?k=" + strings.ToUpper(secret)} {
		req, _ := http.NewRequest(http.MethodGet, f.base+"/launch"+bad, nil)
		resp, _ := raw(t, req)
		if resp.StatusCode != 403 || len(resp.Cookies()) != 0 {
			t.Errorf("launch with %q: %d, cookies %v", bad, resp.StatusCode, resp.Cookies())
		}
		checkSecurityHeaders(t, "bad launch", resp)
	}
	req, _ := http.NewRequest(http.MethodGet, f.srv.launchURL(), nil)
	resp, body := raw(t, req)
	if resp.StatusCode != 200 {
		t.Fatalf("launch: %d", resp.StatusCode)
	}
	checkSecurityHeaders(t, "launch", resp)
	if rp := resp.Header.Get("Referrer-Policy"); rp != "no-referrer" {
		t.Fatalf("the launch page, whose address holds the secret, has Referrer-Policy %q", rp)
	}
	cs := resp.Cookies()
	if len(cs) != 1 {
		t.Fatalf("launch set %d cookies", len(cs))
	}
	c := cs[0]
	if c.Name != f.srv.cookie || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Value == secret || len(c.Value) < 22 {
		t.Fatalf("session cookie %+v", c)
	}
	if !strings.Contains(resp.Header.Get("Set-Cookie"), "SameSite=Strict") {
		t.Fatalf("Set-Cookie %q", resp.Header.Get("Set-Cookie"))
	}
	// The page moves on to / by itself, and never shows the secret.
	if !strings.Contains(body, `<meta http-equiv="refresh" content="0;url=/">`) || strings.Contains(body, secret) {
		t.Fatalf("launch page:\n%s", body)
	}
	// The cookie alone lets in; each launch mints its own.
	req, _ = http.NewRequest(http.MethodGet, f.base+"/login", nil)
	req.AddCookie(c)
	if resp, _ := raw(t, req); resp.StatusCode != 200 {
		t.Fatalf("with the cookie: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodGet, f.srv.launchURL(), nil)
	resp2, _ := raw(t, req)
	if c2 := resp2.Cookies(); len(c2) != 1 || c2[0].Value == c.Value {
		t.Fatalf("a second launch reused the cookie value")
	}
}

func TestUISecurityChecks(t *testing.T) {
	f := newUIFixture(t)
	b := f.browser(t)
	c := b.cookie()
	port := f.ts.Listener.Addr().(*net.TCPAddr).Port
	request := func(method, path, host, origin string, cookie *http.Cookie, body url.Values) (*http.Response, string) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			rd = strings.NewReader(body.Encode())
		}
		req, err := http.NewRequest(method, f.base+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, text := raw(t, req)
		checkSecurityHeaders(t, method+" "+path, resp)
		return resp, text
	}
	self := fmt.Sprintf("http://127.0.0.1:%d", port)
	forged := &http.Cookie{Name: c.Name, Value: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
	for _, tc := range []struct {
		name          string
		method, path  string
		host, origin  string
		cookie        *http.Cookie
		body          url.Values
		want          int
		wantForbidden bool
	}{
		{name: "no cookie", method: "GET", path: "/overview", wantForbidden: true},
		{name: "no cookie, static file", method: "GET", path: "/static/style.css", wantForbidden: true},
		{name: "no cookie, key status", method: "GET", path: "/status", wantForbidden: true},
		{name: "no cookie, POST login", method: "POST", path: "/login", body: url.Values{"csrf": {b.csrf}, "pin": {testPIN}}, wantForbidden: true},
		{name: "forged cookie", method: "GET", path: "/login", cookie: forged, wantForbidden: true},
		{name: "cookie", method: "GET", path: "/login", cookie: c, want: 200},
		{name: "cookie, static file", method: "GET", path: "/static/ui.js", cookie: c, want: 200},
		{name: "localhost", method: "GET", path: "/login", host: fmt.Sprintf("localhost:%d", port), cookie: c, want: 200},
		{name: "DNS rebinding", method: "GET", path: "/login", host: fmt.Sprintf("attacker.example:%d", port), cookie: c, wantForbidden: true},
		{name: "rebinding without port", method: "GET", path: "/login", host: "attacker.example", cookie: c, wantForbidden: true},
		{name: "other port", method: "GET", path: "/login", host: fmt.Sprintf("127.0.0.1:%d", port+1), cookie: c, wantForbidden: true},
		{name: "launch with a foreign Host", method: "GET", path: "/launch?k=" + f.srv.secret, host: "attacker.example", wantForbidden: true},
		{name: "own Origin", method: "GET", path: "/login", origin: self, cookie: c, want: 200},
		{name: "foreign Origin", method: "GET", path: "/login", origin: "http://attacker.example", cookie: c, wantForbidden: true},
		{name: "foreign Origin on another port", method: "GET", path: "/login", origin: fmt.Sprintf("http://127.0.0.1:%d", port+1), cookie: c, wantForbidden: true},
		{name: "null Origin", method: "GET", path: "/login", origin: "null", cookie: c, wantForbidden: true},
		{name: "https Origin", method: "GET", path: "/login", origin: "https" + strings.TrimPrefix(self, "http"), cookie: c, wantForbidden: true},
		{name: "foreign Origin with the launch secret", method: "GET", path: "/launch?k=" + f.srv.secret, origin: "http://attacker.example", wantForbidden: true},
		{name: "POST without CSRF token", method: "POST", path: "/logout", origin: self, cookie: c, body: url.Values{}, wantForbidden: true},
		{name: "POST with a wrong CSRF token", method: "POST", path: "/logout", origin: self, cookie: c, body: url.Values{"csrf": {b.csrf + "x"}}, wantForbidden: true},
		{name: "POST with two CSRF tokens", method: "POST", path: "/logout", origin: self, cookie: c, body: url.Values{"csrf": {"x", b.csrf}}, wantForbidden: true},
		{name: "POST from a foreign Origin with the token", method: "POST", path: "/logout", origin: "http://attacker.example", cookie: c, body: url.Values{"csrf": {b.csrf}}, wantForbidden: true},
		{name: "POST with the token", method: "POST", path: "/lang", origin: self, cookie: c, body: url.Values{"csrf": {b.csrf}, "lang": {"zh-CN"}, "back": {"/login"}}, want: 303},
		{name: "CORS preflight", method: "OPTIONS", path: "/login", origin: "http://attacker.example", cookie: c, wantForbidden: true},
		{name: "OPTIONS", method: "OPTIONS", path: "/login", origin: self, cookie: c, want: 405},
		{name: "PUT", method: "PUT", path: "/login", cookie: c, want: 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := request(tc.method, tc.path, tc.host, tc.origin, tc.cookie, tc.body)
			want := tc.want
			if tc.wantForbidden {
				want = 403
			}
			if resp.StatusCode != want {
				t.Fatalf("status %d, want %d\n%s", resp.StatusCode, want, body)
			}
			if tc.wantForbidden && (!strings.Contains(body, "403") || strings.Contains(body, f.srv.secret)) {
				t.Fatalf("403 page:\n%s", body)
			}
		})
	}

	// A JSON body is no form: refused even with the cookie.
	req, _ := http.NewRequest(http.MethodPost, f.base+"/logout", strings.NewReader(`{"csrf":"`+b.csrf+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(c)
	if resp, _ := raw(t, req); resp.StatusCode != 403 {
		t.Fatalf("JSON POST: %d", resp.StatusCode)
	}
	// GET never changes state: logging out through GET does nothing.
	b.loggedIn()
	if resp, _ := b.get("/logout"); resp.StatusCode == 200 && f.keys.current() == nil {
		t.Fatal("GET /logout locked the key")
	}
	if f.keys.current() == nil {
		t.Fatal("the key was locked by a GET")
	}
	for _, resp := range b.seen {
		checkSecurityHeaders(t, resp.Request.Method+" "+resp.Request.URL.Path, resp)
	}
}

func TestUILoginWrongPINThenRight(t *testing.T) {
	f := newUIFixture(t)
	b := f.browser(t)
	body := b.page("/login")
	for _, want := range []string{`lang="zh-CN"`, `data-state="ready"`, "已检测到 USB 密钥", "GridPay Key", testSerial, `type="password"`, `src="/static/ui.js"`} {
		if !strings.Contains(body, want) {
			t.Fatalf("login page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, "style=") {
		t.Fatal("inline script or style on the login page (the CSP forbids them)")
	}

	for i := 1; i <= 2; i++ {
		resp, body := b.login("000000")
		if resp.StatusCode != 200 || resp.Request.URL.Path != "/login" {
			t.Fatalf("wrong PIN %d: %d at %s", i, resp.StatusCode, resp.Request.URL)
		}
		want := fmt.Sprintf("PIN 错误：锁定前还可尝试 %d 次。", 5-i)
		if !strings.Contains(body, want) {
			t.Fatalf("wrong PIN %d: page lacks %q:\n%s", i, want, body)
		}
		if strings.Contains(body, "000000") {
			t.Fatal("the page shows the PIN typed")
		}
	}
	f.mu.Lock()
	given := f.lastPIN
	f.mu.Unlock()
	if string(given) != strings.Repeat("\x00", len("000000")) {
		t.Fatalf("the PIN given to unlock was not zeroed after the request: %q", given)
	}
	// The count shows before the next try too.
	if body := b.page("/login"); !strings.Contains(body, "此前已输错 2 次 PIN，锁定前还可尝试 3 次。") {
		t.Fatalf("login page after 2 wrong PINs:\n%s", body)
	}

	body = b.loggedIn()
	for _, want := range []string{"华东特钢有限公司", "C1000001", "大工业用电", "110kV", `class="alert alert-critical"`, "已逾期", "可能被停止供电"} {
		if !strings.Contains(body, want) {
			t.Fatalf("overview lacks %q:\n%s", want, body)
		}
	}
	// After login, the login page names the certificate holder and expiry.
	body = b.page("/login")
	if !strings.Contains(body, `data-state="unlocked"`) || !strings.Contains(body, "华东特钢有限公司 (C1000001)") || !strings.Contains(body, uiInstant(f.mem.leaf.NotAfter)) {
		t.Fatalf("login page when unlocked:\n%s", body)
	}
	// The key stays open between pages: one unlock for many pages.
	b.page("/bills")
	b.page("/history")
	f.mu.Lock()
	unlocks, closed := f.unlocks, f.closed
	f.mu.Unlock()
	if unlocks != 3 || closed != 0 {
		t.Fatalf("%d unlocks, %d keys closed", unlocks, closed)
	}
	if r, _ := f.a.local.Record(testSerial); r.Failures != 0 {
		t.Fatalf("the right PIN left %d failures", r.Failures)
	}

	resp, body := b.post("/logout", url.Values{"csrf": {b.csrf}})
	if resp.Request.URL.Path != "/login" || !strings.Contains(body, "已退出，USB 密钥已锁定。") || !strings.Contains(body, `data-state="ready"`) {
		t.Fatalf("after logout: %s\n%s", resp.Request.URL, body)
	}
	f.mu.Lock()
	closed = f.closed
	f.mu.Unlock()
	if closed != 1 {
		t.Fatalf("logout closed %d keys", closed)
	}
	if resp, _ := b.get("/overview"); resp.Request.URL.Path != "/login" {
		t.Fatalf("overview after logout went to %s", resp.Request.URL)
	}
}

func TestUILockoutAfterFiveWrongPINs(t *testing.T) {
	f := newUIFixture(t)
	b := f.browser(t)
	var body string
	for i := 1; i <= 5; i++ {
		_, body = b.login("1111")
	}
	if !strings.Contains(body, "连续输错 5 次 PIN，密钥已被锁定。请联系供电公司重置。") || !strings.Contains(body, `data-state="locked"`) || strings.Contains(body, `id="pin-form"`) {
		t.Fatalf("after 5 wrong PINs:\n%s", body)
	}
	// The right PIN is not even tried now.
	f.mu.Lock()
	before := f.unlocks
	f.mu.Unlock()
	_, body = b.login(testPIN)
	f.mu.Lock()
	after := f.unlocks
	f.mu.Unlock()
	if after != before || f.keys.current() != nil || !strings.Contains(body, "密钥已被锁定") {
		t.Fatalf("a locked key was tried (%d → %d unlocks):\n%s", before, after, body)
	}
}

func TestUIFinalTryNeedsConfirmation(t *testing.T) {
	f := newUIFixture(t)
	f.finalTry = true
	b := f.browser(t)
	body := b.page("/login")
	if !strings.Contains(body, `name="final_try"`) || !strings.Contains(body, "只剩最后一次尝试机会") {
		t.Fatalf("login page with the final-try flag:\n%s", body)
	}
	_, body = b.login(testPIN)
	if f.unlocks != 0 || !strings.Contains(body, "请勾选确认后再登录") {
		t.Fatalf("final try without confirmation: %d unlocks\n%s", f.unlocks, body)
	}
	resp, _ := b.post("/login", url.Values{"csrf": {b.csrf}, "pin": {testPIN}, "final_try": {"1"}})
	if resp.Request.URL.Path != "/overview" || f.unlocks != 1 || !f.final {
		t.Fatalf("final try confirmed: at %s, %d unlocks, allowFinalTry %v", resp.Request.URL, f.unlocks, f.final)
	}
}

func TestUIKeyAbsent(t *testing.T) {
	f := newUIFixture(t)
	f.absent = true
	b := f.browser(t)
	body := b.page("/login")
	if !strings.Contains(body, `data-state="absent"`) || !strings.Contains(body, "未检测到 USB 密钥，请插入。") || strings.Contains(body, `id="pin-form"`) {
		t.Fatalf("login page without a key:\n%s", body)
	}
	resp, body := b.get("/status")
	if resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(body, `"state":"absent"`) {
		t.Fatalf("status: %s", body)
	}
	f.mu.Lock()
	f.absent = false
	f.mu.Unlock()
	if _, body := b.get("/status"); !strings.Contains(body, `"state":"ready"`) {
		t.Fatalf("status after inserting: %s", body)
	}
}

func TestUIIdleTimeoutAndRemoval(t *testing.T) {
	f := newUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	f.advance(14 * time.Minute)
	f.keys.check()
	if f.keys.current() == nil {
		t.Fatal("locked before the idle timeout")
	}
	b.page("/overview") // use resets the clock
	f.advance(14 * time.Minute)
	f.keys.check()
	if f.keys.current() == nil {
		t.Fatal("locked although used 14 minutes ago")
	}
	f.advance(2 * time.Minute)
	f.keys.check()
	if f.keys.current() != nil || f.closed != 1 {
		t.Fatalf("not locked after 16 idle minutes (%d closed)", f.closed)
	}
	resp, body := b.get("/bills")
	if resp.Request.URL.Path != "/login" || !strings.Contains(body, "闲置超过 15m0s，USB 密钥已自动锁定") {
		t.Fatalf("after the idle timeout: %s\n%s", resp.Request.URL, body)
	}

	b.loggedIn()
	f.mu.Lock()
	f.removed = true
	f.mu.Unlock()
	f.keys.check()
	if f.keys.current() != nil {
		t.Fatal("the session outlived the key's removal")
	}
	if body := b.page("/login"); !strings.Contains(body, "USB 密钥已拔出") {
		t.Fatalf("after removal:\n%s", body)
	}
}

func TestUIOverview(t *testing.T) {
	f := newUIFixture(t)
	b := f.browser(t)
	body := b.loggedIn()
	for _, want := range []string{
		`id="balance-due"`, "¥178,425.34", "2 张未缴账单",
		"¥133,925.34", "其中违约金 ¥1,234.56", "2026-02-20",
		`id="next-due"`, "2026-04-15", `href="/bills/B-2026-03"`,
		"6222-0001-7788", "31,500 kVA", "MP-1", "6,000",
		// The critical alert rebuilt in Chinese from its bill.
		"2026-01 电费账单已逾期", "应缴 ¥133,925.34，其中违约金 ¥1,234.56",
		"2026-03 电费账单将于 2026-04-15 到期",
		// Pay and Wallet are in the navigation; the wallet's card is
		// there even when the key's wallet cannot be read (no PKCS#11
		// module here).
		`href="/pay"`, `href="/wallet" id="nav-wallet"`, `id="wallet-card"`, "无法读取 USB 密钥上的钱包",
		// The prepaid account next to the wallet.
		`id="ov-prepaid-balance">¥8,800.00`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if strings.Contains(body, "随圈存功能上线") || strings.Contains(body, `class="soon"`) {
		t.Error("the wallet is still a placeholder in the navigation")
	}
	// Alerts come first, critical prominent.
	if i, j := strings.Index(body, "alert-critical"), strings.Index(body, `id="balance-due"`); i < 0 || i > j {
		t.Error("the critical alert is not above the figures")
	}
}

// svgRect is a chart segment as rendered.
type svgRect struct {
	kind   string
	period string
	y, h   float64
	kwh    int64
}

var (
	barRE = regexp.MustCompile(`<g class="bar" data-period="([0-9-]+)">(.*?)</g>`)
	segRE = regexp.MustCompile(`<rect class="seg seg-(\w+)" x="[0-9.]+" y="([0-9.]+)" width="[0-9.]+" height="([0-9.]+)" fill="#[0-9a-f]+" data-kwh="(\d+)">`)
)

func chartRects(t *testing.T, page string) (rects []svgRect, scale int64, plotH float64) {
	t.Helper()
	m := regexp.MustCompile(`data-scale="(\d+)" data-plot-height="([0-9.]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no chart in the page:\n%s", page)
	}
	scale, _ = strconv.ParseInt(m[1], 10, 64)
	plotH, _ = strconv.ParseFloat(m[2], 64)
	for _, bar := range barRE.FindAllStringSubmatch(page, -1) {
		for _, s := range segRE.FindAllStringSubmatch(bar[2], -1) {
			y, _ := strconv.ParseFloat(s[2], 64)
			h, _ := strconv.ParseFloat(s[3], 64)
			kwh, _ := strconv.ParseInt(s[4], 10, 64)
			rects = append(rects, svgRect{kind: s[1], period: bar[1], y: y, h: h, kwh: kwh})
		}
	}
	return rects, scale, plotH
}

func TestUIConsumptionChartProportional(t *testing.T) {
	f := newUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	body := b.page("/consumption?from=2026-01&to=2026-03")
	rects, scale, plotH := chartRects(t, body)
	if len(rects) != 9 {
		t.Fatalf("%d segments for 3 months, want 9", len(rects))
	}
	if scale != 2_000_000 || plotH <= 0 {
		t.Fatalf("scale %d, plot height %v", scale, plotH)
	}
	want := map[string]int64{ // summed over both metering points
		"2026-01/peak": 600_000, "2026-01/flat": 800_000, "2026-01/valley": 600_000,
		"2026-02/peak": 400_000, "2026-02/flat": 500_000, "2026-02/valley": 300_000,
		"2026-03/peak": 0, "2026-03/flat": 0, "2026-03/valley": 0,
	}
	perKWh := plotH / float64(scale)
	tops := map[string]float64{}
	bottoms := map[string]float64{}
	for _, r := range rects {
		key := r.period + "/" + r.kind
		if r.kwh != want[key] {
			t.Errorf("%s: %d kWh, want %d", key, r.kwh, want[key])
		}
		// Every height is kWh × the same factor (to the 0.01 px printed).
		if d := r.h - float64(r.kwh)*perKWh; d > 0.006 || d < -0.006 {
			t.Errorf("%s: height %v for %d kWh, want %v", key, r.h, r.kwh, float64(r.kwh)*perKWh)
		}
		if _, ok := bottoms[r.period]; !ok {
			bottoms[r.period] = r.y + r.h
		}
		tops[r.period] = r.y
	}
	// Stacked: the whole bar is the month's total, on one baseline.
	for _, p := range []string{"2026-01", "2026-02"} {
		total := want[p+"/peak"] + want[p+"/flat"] + want[p+"/valley"]
		if d := (bottoms[p] - tops[p]) - float64(total)*perKWh; d > 0.02 || d < -0.02 {
			t.Errorf("%s: bar height %v, want %v", p, bottoms[p]-tops[p], float64(total)*perKWh)
		}
		if bottoms[p] != bottoms["2026-01"] {
			t.Errorf("%s: bar does not stand on the baseline", p)
		}
	}
	// January's bar is 2,000,000 / 1,200,000 times February's.
	jan, feb := bottoms["2026-01"]-tops["2026-01"], bottoms["2026-02"]-tops["2026-02"]
	if r := jan / feb; r < 1.666 || r > 1.668 {
		t.Errorf("January/February bar ratio %v, want 5/3", r)
	}
	// The table, with the total row.
	for _, want := range []string{"<td>2026-01</td>", "2,000,000", "1,200,000", `id="use-total">3,200,000`} {
		if !strings.Contains(body, want) {
			t.Errorf("consumption table lacks %q", want)
		}
	}
	f.mem.gw.mu.Lock()
	last := f.mem.gw.requests[len(f.mem.gw.requests)-1]
	f.mem.gw.mu.Unlock()
	if last != "GET /v1/consumption?from=2026-01&to=2026-03" {
		t.Errorf("gateway asked %q", last)
	}
}

func TestUIConsumptionRangeChecked(t *testing.T) {
	f := newUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	f.mem.gw.mu.Lock()
	before := len(f.mem.gw.requests)
	f.mem.gw.mu.Unlock()
	for q, want := range map[string]string{
		"from=2026-13":                   "月份格式应为 YYYY-MM。",
		"from=2026-05&to=2026-01":        "开始不能晚于结束。",
		"from=2020-01&to=2026-01":        "一次最多查询 36 个月。",
		"from=<script>alert(1)</script>": "月份格式应为 YYYY-MM。",
	} {
		resp, body := b.get("/consumption?" + q)
		if resp.StatusCode != 400 || !strings.Contains(body, want) || strings.Contains(body, "<script>alert") {
			t.Errorf("%s: %d\n%s", q, resp.StatusCode, body)
		}
	}
	f.mem.gw.mu.Lock()
	after := len(f.mem.gw.requests)
	f.mem.gw.mu.Unlock()
	if after != before {
		t.Errorf("a bad range reached the gateway")
	}
}

func TestUIBills(t *testing.T) {
	f := newUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	body := b.page("/bills")
	if !strings.Contains(body, "B-2026-01") || !strings.Contains(body, "B-2026-03") || strings.Contains(body, "B-2025-12") ||
		!strings.Contains(body, "共 2 张，应缴合计 ¥178,425.34") || !strings.Contains(body, `href="/bills/B-2026-01/pdf"`) {
		t.Fatalf("unpaid bills:\n%s", body)
	}
	body = b.page("/bills?view=all")
	if !strings.Contains(body, "B-2025-12") || !strings.Contains(body, "已结清") {
		t.Fatalf("all bills:\n%s", body)
	}
	body = b.page("/bills/B-2026-01")
	for _, want := range []string{"账单 B-2026-01", "¥123,456.78", "¥94,500.00", "¥1,234.56", `id="amount-due">¥133,925.34`, "已逾期", "2,000,000"} {
		if !strings.Contains(body, want) {
			t.Errorf("bill detail lacks %q", want)
		}
	}
	body = b.page("/bills/B-2026-03")
	if !strings.Contains(body, "-¥50,000.00") {
		t.Errorf("a paid amount is not shown as a deduction")
	}
	resp, body := b.get("/bills/B-1999-01")
	if resp.StatusCode != 404 || !strings.Contains(body, "未找到：该记录不存在或不属于您。") || !strings.Contains(body, "req-404") {
		t.Fatalf("unknown bill: %d\n%s", resp.StatusCode, body)
	}
}

func TestUIHistory(t *testing.T) {
	f := newUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	body := b.page("/history?from=2025-12-01&to=2026-04-30")
	for _, want := range []string{"GP-7F3A", "GP-7F39", "GP-7F38", "银联在线", "已冲正", "预付费账户", "2026-04-04 01:30", "共 3 笔，已入账 ¥50,800.00"} {
		if !strings.Contains(body, want) {
			t.Errorf("history lacks %q", want)
		}
	}
	f.mem.gw.mu.Lock()
	asked := slices.Clone(f.mem.gw.requests)
	f.mem.gw.mu.Unlock()
	if !slices.Contains(asked, "GET /v1/payments?from=2025-12-01&to=2026-04-30") || !slices.Contains(asked, "GET /v1/loads") {
		t.Errorf("gateway asked %q", asked)
	}
	// A load GridPay recorded from another computer: its status, no
	// balance (this computer has no log of it).
	if !regexp.MustCompile(`load-OTHERKEY-3</td><td class="num">¥2,000.00</td>\s*<td><span class="status status-load-[a-z]+">未存入</span></td><td class="num">—</td><td class="small">the USB key had not taken`).MatchString(body) {
		t.Errorf("history lacks GridPay's record of load-OTHERKEY-3:\n%s", body)
	}
	// Search by reference, by bill, and the status filter.
	for q, want := range map[string][]string{
		"q=7f39":             {"GP-7F39"},
		"q=B-2026-03":        {"GP-7F3A"},
		"status=reversed":    {"GP-7F38"},
		"q=GP&status=posted": {"GP-7F3A", "GP-7F39"},
	} {
		body := b.page("/history?" + q)
		got := regexp.MustCompile(`<td class="ref">([^<]+)</td>`).FindAllStringSubmatch(body, -1)
		var refs []string
		for _, g := range got {
			refs = append(refs, g[1])
		}
		if strings.Join(refs, ",") != strings.Join(want, ",") {
			t.Errorf("%s: %v, want %v", q, refs, want)
		}
	}
	if body := b.page("/history?q=nothing-like-this"); !strings.Contains(body, "没有符合条件的缴费记录。") {
		t.Error("an empty search says nothing")
	}
	if resp, body := b.get("/history?from=2026-02-30"); resp.StatusCode != 400 || !strings.Contains(body, "日期格式应为 YYYY-MM-DD。") {
		t.Errorf("bad date: %d", resp.StatusCode)
	}
}

func TestUIEnglish(t *testing.T) {
	f := newUIFixture(t)
	b := f.browser(t)
	if body := b.page("/login"); !strings.Contains(body, `lang="zh-CN"`) || !strings.Contains(body, "插入 USB 密钥并输入 PIN") {
		t.Fatal("the default language is not Chinese")
	}
	resp, body := b.post("/lang", url.Values{"csrf": {b.csrf}, "lang": {"en"}, "back": {"/login"}})
	if resp.Request.URL.Path != "/login" || !strings.Contains(body, `lang="en"`) || !strings.Contains(body, "Insert your USB key and enter its PIN") {
		t.Fatalf("after switching to English: %s\n%s", resp.Request.URL, body)
	}
	_, body = b.login("000000")
	if !strings.Contains(body, "Wrong PIN: 4 tries left before the key is locked.") {
		t.Fatalf("wrong PIN in English:\n%s", body)
	}
	body = b.loggedIn()
	for _, want := range []string{"Overview", "Balance due", "Large industry", "Pay", "supply may be suspended", "Log out and lock the key"} {
		if !strings.Contains(body, want) {
			t.Errorf("English overview lacks %q", want)
		}
	}
	if strings.ContainsAny(stripTags(body), "概览应缴") {
		t.Error("Chinese labels on the English overview")
	}
	// The switch back, and a "back" that leaves the UI is ignored.
	resp, _ = b.post("/lang", url.Values{"csrf": {b.csrf}, "lang": {"zh-CN"}, "back": {"//attacker.example/x"}})
	if resp.Request.URL.Host != strings.TrimPrefix(f.base, "http://") {
		t.Fatalf("the language switch redirected to %s", resp.Request.URL)
	}
	if body := b.page("/overview"); !strings.Contains(body, "应缴总额") {
		t.Error("not back to Chinese")
	}
}

var tagRE = regexp.MustCompile(`<[^>]*>`)

// stripTags leaves the text of a page, minus the customer's own data.
func stripTags(s string) string {
	s = tagRE.ReplaceAllString(s, " ")
	return strings.NewReplacer(testMe.Customer.Name, "").Replace(s)
}

func TestUIGatewayErrors(t *testing.T) {
	f := newUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	f.mem.gw.mu.Lock()
	f.mem.gw.fail[api.PathBills] = failure{503, api.Error{Code: api.CodeUnavailable, Message: "the platform is unavailable", RequestID: "req-9"}}
	f.mem.gw.mu.Unlock()
	resp, body := b.get("/bills")
	if resp.StatusCode != 503 || !strings.Contains(body, "服务暂时不可用") || !strings.Contains(body, "the platform is unavailable (unavailable, request req-9)") ||
		strings.Contains(body, "goroutine") || !strings.Contains(body, `id="retry"`) {
		t.Fatalf("platform down: %d\n%s", resp.StatusCode, body)
	}
	if f.keys.current() == nil {
		t.Fatal("an unavailable platform locked the key")
	}

	// Revoked: the session ends and the login page says why.
	f.mem.gw.mu.Lock()
	f.mem.gw.fail[api.PathMe] = failure{403, api.Error{Code: api.CodeCertRevoked, Message: "certificate revoked"}}
	f.mem.gw.mu.Unlock()
	resp, body = b.get("/overview")
	if resp.Request.URL.Path != "/login" || !strings.Contains(body, "网关拒绝了这把 USB 密钥") || !strings.Contains(body, "证书已被吊销") {
		t.Fatalf("revoked: %s\n%s", resp.Request.URL, body)
	}
	if f.keys.current() != nil || f.closed != 1 {
		t.Fatal("the revoked key's session is still open")
	}
	// Logging in again with a revoked certificate is refused at login.
	_, body = b.login(testPIN)
	if f.keys.current() != nil || !strings.Contains(body, "证书已被吊销") {
		t.Fatalf("login with a revoked certificate:\n%s", body)
	}

	// Gateway unreachable at login: the key stays unlocked, pages say so.
	f.mem.gw.mu.Lock()
	delete(f.mem.gw.fail, api.PathMe)
	f.mem.gw.mu.Unlock()
	f.mem.gw.srv.Close()
	resp, body = b.login(testPIN)
	if resp.Request.URL.Path != "/overview" || resp.StatusCode != 503 || !strings.Contains(body, "无法连接网关") {
		t.Fatalf("gateway down: %d at %s\n%s", resp.StatusCode, resp.Request.URL, body)
	}
}

func TestUIBillPDF(t *testing.T) {
	f := newUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	resp, body := b.get("/bills/B-2026-01/pdf")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pdf" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename="gridpay-bill-B-2026-01.pdf"` {
		t.Fatalf("PDF: %d %v", resp.StatusCode, resp.Header)
	}
	checkSecurityHeaders(t, "PDF", resp)
	doc := []byte(body)
	content := checkPDF(t, doc)
	for _, want := range []string{
		"(B-2026-01)", `(\245133,925.34)`, `(\245123,456.78)`, "(2026-02-20)",
		pdfUCS2([]rune("华东特钢有限公司")), // the name, in the CJK font
		pdfUCS2([]rune("应缴金额")),
		"/F3 ", "/F1 ",
	} {
		if !bytes.Contains(content, []byte(want)) {
			t.Errorf("the content stream lacks %s", want)
		}
	}
	if !bytes.Contains(doc, []byte("/BaseFont /STSong-Light /Encoding /UniGB-UCS2-H")) {
		t.Error("no CJK font")
	}
	if path, err := exec.LookPath("pdftotext"); err == nil {
		file := filepath.Join(t.TempDir(), "bill.pdf")
		if err := os.WriteFile(file, doc, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(path, file, "-").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "B-2026-01") || !strings.Contains(string(out), "133,925.34") {
			t.Fatalf("pdftotext: %v\n%s", err, out)
		}
	}
	if resp, _ := b.get("/bills/B-1999-01/pdf"); resp.StatusCode != 404 {
		t.Fatalf("PDF of an unknown bill: %d", resp.StatusCode)
	}
}

var (
	startxrefRE = regexp.MustCompile(`startxref\n(\d+)\n%%EOF\n$`)
	xrefHeadRE  = regexp.MustCompile(`^xref\n0 (\d+)\n`)
	xrefEntryRE = regexp.MustCompile(`^(\d{10}) (\d{5}) ([nf]) \n$`)
	trailerRE   = regexp.MustCompile(`^trailer\n<< /Size (\d+) /Root (\d+) 0 R /Info (\d+) 0 R`)
	objHeadRE   = regexp.MustCompile(`^(\d+) 0 obj\n`)
	contentsRE  = regexp.MustCompile(`/Contents (\d+) 0 R`)
	streamRE    = regexp.MustCompile(`^<< /Length (\d+) >>\nstream\n`)
)

// checkPDF parses the file's structure the way a viewer finds its way in
// (startxref → cross-reference table → trailer → catalog → page →
// contents) and returns the page's content stream.
func checkPDF(t *testing.T, doc []byte) []byte {
	t.Helper()
	if !bytes.HasPrefix(doc, []byte("%PDF-1.4\n")) {
		t.Fatalf("header %q", doc[:min(len(doc), 16)])
	}
	m := startxrefRE.FindSubmatch(doc)
	if m == nil {
		t.Fatalf("no startxref at the end: %q", doc[max(0, len(doc)-40):])
	}
	xref, _ := strconv.Atoi(string(m[1]))
	if xref >= len(doc) {
		t.Fatalf("startxref %d beyond the file", xref)
	}
	rest := doc[xref:]
	hm := xrefHeadRE.FindSubmatch(rest)
	if hm == nil {
		t.Fatalf("no xref table at %d: %q", xref, rest[:min(len(rest), 20)])
	}
	n, _ := strconv.Atoi(string(hm[1]))
	rest = rest[len(hm[0]):]
	objects := map[int][]byte{}
	for i := 0; i < n; i++ {
		em := xrefEntryRE.FindSubmatch(rest[:20])
		if em == nil {
			t.Fatalf("xref entry %d is not 20 bytes of the right form: %q", i, rest[:20])
		}
		rest = rest[20:]
		off, _ := strconv.Atoi(string(em[1]))
		if i == 0 {
			if string(em[3]) != "f" || string(em[2]) != "65535" {
				t.Fatalf("xref entry 0: %q", em[0])
			}
			continue
		}
		if string(em[3]) != "n" {
			t.Fatalf("object %d not in use", i)
		}
		om := objHeadRE.FindSubmatch(doc[off:])
		if om == nil || string(om[1]) != strconv.Itoa(i) {
			t.Fatalf("xref offset %d of object %d points at %q", off, i, doc[off:min(len(doc), off+20)])
		}
		end := bytes.Index(doc[off:], []byte("\nendobj\n"))
		if end < 0 {
			t.Fatalf("object %d has no endobj", i)
		}
		objects[i] = doc[off+len(om[0]) : off+end]
	}
	tm := trailerRE.FindSubmatch(rest)
	if tm == nil {
		t.Fatalf("trailer: %q", rest)
	}
	if size, _ := strconv.Atoi(string(tm[1])); size != n {
		t.Fatalf("trailer /Size %d, xref has %d entries", size, n)
	}
	root, _ := strconv.Atoi(string(tm[2]))
	if !bytes.Contains(objects[root], []byte("/Type /Catalog /Pages 2 0 R")) {
		t.Fatalf("root object %d: %s", root, objects[root])
	}
	if !bytes.Contains(objects[2], []byte("/Kids [3 0 R] /Count 1")) || !bytes.Contains(objects[3], []byte("/Type /Page ")) {
		t.Fatalf("page tree: %s / %s", objects[2], objects[3])
	}
	cm := contentsRE.FindSubmatch(objects[3])
	if cm == nil {
		t.Fatal("the page has no contents")
	}
	ci, _ := strconv.Atoi(string(cm[1]))
	stream := objects[ci]
	sm := streamRE.FindSubmatch(stream)
	if sm == nil {
		t.Fatalf("contents object: %q", stream[:min(40, len(stream))])
	}
	length, _ := strconv.Atoi(string(sm[1]))
	body := stream[len(sm[0]):]
	if len(body) != length+len("\nendstream") || !bytes.HasSuffix(body, []byte("\nendstream")) {
		t.Fatalf("stream /Length %d but %d bytes before endstream", length, len(body)-len("\nendstream"))
	}
	content := body[:length]
	if bytes.Count(content, []byte("BT ")) != bytes.Count(content, []byte(" ET\n")) {
		t.Fatal("unbalanced text objects")
	}
	return content
}

func TestNiceScale(t *testing.T) {
	for in, want := range map[int64]int64{0: 1, 1: 1, 3: 4, 7: 8, 9: 10, 10: 10, 11: 12, 99: 100, 1_050: 1_200, 2_000_000: 2_000_000,
		2_614_578: 3_000_000, 3_000_001: 4_000_000, 8_000_001: 10_000_000} {
		if got := niceScale(in); got != want || got%chartTicks != 0 && got > 10 {
			t.Errorf("niceScale(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestPDFWriter(t *testing.T) {
	var c pdfCanvas
	c.text(10, 20, 12, false, `a (b) \ ¥1 华东 x 😀`)
	got := c.b.String()
	for _, want := range []string{`(a \(b\) \\ \2451 )`, "<534E4E1C>", "( x ?)"} {
		if !strings.Contains(got, want) {
			t.Errorf("text operators lack %s:\n%s", want, got)
		}
	}
	if w := textWidth("1,234.56", 10, false); w != (6*556+2*278)*10/1000.0 {
		t.Errorf("width %v", w)
	}
	lines := wrapText("一二三四五六七八九十", 10, 35)
	if len(lines) != 4 || lines[0] != "一二三" {
		t.Errorf("wrap %q", lines)
	}
	doc := pdfDocument([]byte("BT /F1 12 Tf 0 0 Td (x) Tj ET\n"), "标题", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	checkPDF(t, doc)
	if !bytes.Contains(doc, []byte("/Title <FEFF68079898>")) || !bytes.Contains(doc, []byte("(D:20260301080000+08'00')")) {
		t.Errorf("info dictionary:\n%s", doc)
	}
}

func TestUIBrowserLaunchFile(t *testing.T) {
	f := newUIFixture(t)
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	script := filepath.Join(dir, "browser.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s' \"$1\" > "+argsFile+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BROWSER", script+" %s")
	cleanup, err := f.a.openBrowser(f.srv.launchURL())
	if err != nil {
		t.Fatal(err)
	}
	var arg []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if arg, err = os.ReadFile(argsFile); err == nil && len(arg) > 0 {
			break
		}
	}
	target := string(arg)
	if !strings.HasPrefix(target, "file://"+f.a.local.Dir()+"/ui-launch-") || strings.Contains(target, f.srv.secret) {
		t.Fatalf("the browser was given %q", target)
	}
	path := strings.TrimPrefix(target, "file://")
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("launch file: %v %v", st, err)
	}
	html, _ := os.ReadFile(path)
	if !strings.Contains(string(html), `content="0;url=`+f.srv.launchURL()+`"`) {
		t.Fatalf("launch file:\n%s", html)
	}
	cleanup()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("launch file left behind: %v", err)
	}
}

func TestBrowserCommand(t *testing.T) {
	t.Setenv("BROWSER", "firefox --new-window %s:chromium")
	if got := browserCommand("file:///x").Args; strings.Join(got, " ") != "firefox --new-window file:///x" {
		t.Fatalf("args %q", got)
	}
	t.Setenv("BROWSER", "w3m")
	if got := browserCommand("file:///x").Args; strings.Join(got, " ") != "w3m file:///x" {
		t.Fatalf("args %q", got)
	}
}

func TestUIListenAddr(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:0": "127.0.0.1:0", "localhost:8080": "127.0.0.1:8080", "127.0.0.2:9": "127.0.0.2:9"} {
		if got, err := uiListenAddr(in); err != nil || got != want {
			t.Errorf("%s: %q %v", in, got, err)
		}
	}
	for _, in := range []string{"0.0.0.0:0", ":8080", "192.168.1.10:80", "[::1]:0", "example.com:80", "127.0.0.1"} {
		if _, err := uiListenAddr(in); err == nil || cli.ExitCode(err) != cli.ExitUsage {
			t.Errorf("%s accepted (%v)", in, err)
		}
	}
}

func TestParseForm(t *testing.T) {
	f, err := parseForm([]byte("csrf=a%2Bb&pin=12+3%41&empty=&flag"))
	if err != nil {
		t.Fatal(err)
	}
	if f.get("csrf") != "a+b" || f.get("pin") != "12 3A" || f.get("empty") != "" || f.get("flag") != "" {
		t.Fatalf("%q", f)
	}
	pin := f["pin"]
	f.zero()
	if !bytes.Equal(pin, make([]byte, len(pin))) {
		t.Fatal("zero left the PIN")
	}
	for _, bad := range []string{"a=1&a=2", "a=%zz", "a=%4"} {
		if _, err := parseForm([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Every key the templates and the code use exists, in both languages.
func TestMessages(t *testing.T) {
	for k, m := range messages {
		if strings.TrimSpace(m.zh) == "" || strings.TrimSpace(m.en) == "" {
			t.Errorf("message %q lacks a language", k)
		}
		if strings.Count(m.zh, "%") != strings.Count(m.en, "%") {
			t.Errorf("message %q: the languages take different arguments", k)
		}
	}
	used := regexp.MustCompile(`\.Tf? "([a-z0-9_.]+)"`)
	err := fs.WalkDir(webFiles, "web", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".html") {
			return err
		}
		b, err := webFiles.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range used.FindAllStringSubmatch(string(b), -1) {
			if _, ok := messages[m[1]]; !ok {
				t.Errorf("%s uses the missing message %q", path, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("ui*.go")
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile(`\b(?:t|T|Tf|tr|trf)\((?:[A-Za-z.]+, )?"([a-z0-9_.]+)"[,)]`)
	found := 0
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range code.FindAllStringSubmatch(string(src), -1) {
			found++
			if _, ok := messages[m[1]]; !ok {
				t.Errorf("%s uses the missing message %q", file, m[1])
			}
		}
	}
	if found < 50 {
		t.Fatalf("only %d uses of messages found in the code: the pattern is stale", found)
	}
	if tr(langZH, "nav.overview") != "概览" || tr(langEN, "nav.overview") != "Overview" {
		t.Fatal("tr")
	}
}

// The ui command itself: flags, the printed link, and a clean stop.
func TestUICommand(t *testing.T) {
	mem := newMemFixture(t)
	a := newApp()
	var out syncBuffer
	a.root.SetOut(&out)
	a.root.SetErr(io.Discard)
	a.root.SetArgs([]string{"--config", mem.cfg, "ui", "--no-open", "--listen", "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.root.ExecuteContext(ctx) }()
	var link string
	re := regexp.MustCompile(`http://127\.0\.0\.1:\d+/launch\?k=[A-Za-z0-9_-]+`)
	for deadline := time.Now().Add(10 * time.Second); link == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		link = re.FindString(out.String())
	}
	if link == "" {
		cancel()
		t.Fatalf("no link printed:\n%s", out.String())
	}
	u, _ := url.Parse(link)
	req, _ := http.NewRequest(http.MethodGet, "http://"+u.Host+"/login", nil)
	if resp, _ := raw(t, req); resp.StatusCode != 403 {
		t.Fatalf("without the secret: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodGet, link, nil)
	resp, _ := raw(t, req)
	if resp.StatusCode != 200 || len(resp.Cookies()) != 1 {
		t.Fatalf("with the secret: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodGet, "http://"+u.Host+"/login", nil)
	req.AddCookie(resp.Cookies()[0])
	// No module at /nonexistent: the page says so instead of failing.
	if resp, body := raw(t, req); resp.StatusCode != 200 || !strings.Contains(body, `data-state="error"`) || !strings.Contains(body, "/nonexistent/opensc-pkcs11.so") {
		t.Fatalf("login page without a PKCS#11 module: %d\n%s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ui ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ui did not stop when its context ended")
	}
	if _, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		t.Fatal("still listening after the stop")
	}

	// A non-loopback address is refused before anything starts.
	r := runApp(t, nil, "--config", mem.cfg, "ui", "--no-open", "--listen", "0.0.0.0:0")
	if r.code != cli.ExitUsage || !strings.Contains(r.err.Error(), "loopback") {
		t.Fatal(r)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The unlocked key serves requests while the watcher may end the session:
// closing waits for the requests in flight.
func TestUISessionEndWaitsForRequests(t *testing.T) {
	f := newUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	ks, release := f.keys.acquire()
	ended := make(chan struct{})
	go func() {
		f.keys.end(nil, endLogout, nil)
		close(ended)
	}()
	select {
	case <-ended:
		t.Fatal("the key was closed under a request")
	case <-time.After(100 * time.Millisecond):
	}
	if f.closed != 0 || ks == nil {
		t.Fatal("closed early")
	}
	release()
	<-ended
	if f.closed != 1 || f.keys.current() != nil {
		t.Fatal("not closed after the request")
	}
	if s, _ := f.keys.acquire(); s != nil {
		t.Fatal("an ended session was handed out")
	}
}

// walletUIFixture is the window with a wallet: the in-memory key's data
// objects, a meter card, and a gateway that answers loads as GridPay does
// (it checks the key's signatures and signs allows with a load signer of
// the test PKI).
type walletUIFixture struct {
	*uiFixture
	loads *loadServer
	objs  *memObjects
	cards map[string]*memCard // guarded by uiFixture.mu
	// cardPINs are the PINs the card was opened with, as typed.
	cardPINs []string
}

const cardPIN = "card-pin-7319"

func newWalletUIFixture(t *testing.T) *walletUIFixture {
	t.Helper()
	f := &walletUIFixture{uiFixture: newUIFixture(t), objs: newMemObjects(), cards: map[string]*memCard{}}
	f.loads = newLoadServer(t, f.mem.pki, loadService)
	f.mem.gw.mu.Lock()
	f.mem.gw.loads = f.loads
	f.mem.gw.mu.Unlock()
	f.cards["Meter card"] = &memCard{memObjects: newMemObjects(), serial: "CARD0001", label: "Meter card", pin: cardPIN}
	oldObjs, oldCard := openKeyObjects, openCard
	t.Cleanup(func() { openKeyObjects, openCard = oldObjs, oldCard })
	openKeyObjects = func(*app, *unlockedKey) (keyObjects, func() error, error) {
		return f.objs, func() error { return nil }, nil
	}
	openCard = func(_ *app, sel hsm.Selector, pin []byte) (cardToken, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.cards {
			if sel.Label == c.label || sel.Serial == c.serial {
				if pin != nil {
					f.cardPINs = append(f.cardPINs, string(pin))
					if string(pin) != c.pin {
						return nil, hsm.ErrWrongPIN
					}
				}
				return c, nil
			}
		}
		return nil, hsm.ErrTokenAbsent
	}
	return f
}

// issueCard binds the meter card to the key as the power company does,
// with the CLI.
func (f *walletUIFixture) issueCard(t *testing.T) {
	t.Helper()
	t.Setenv("GRIDPAY_CARD_PIN", cardPIN)
	r := f.mem.run(t, "card", "issue", "--card-label", "Meter card", "--card-number", "3301-0001-0007")
	os.Unsetenv("GRIDPAY_CARD_PIN") // from now on the PIN is typed in the window
	if r.err != nil {
		t.Fatalf("card issue: %s", r)
	}
}

func (f *walletUIFixture) sent() int {
	f.loads.mu.Lock()
	defer f.loads.mu.Unlock()
	return len(f.loads.raw)
}

func (f *walletUIFixture) cardBalance(t *testing.T) money.Fen {
	t.Helper()
	var p cardPurse
	if _, err := readJSONObject(context.Background(), f.cards["Meter card"], cardPurseLabel, &p); err != nil {
		t.Fatal(err)
	}
	return p.Balance
}

var confirmField = regexp.MustCompile(`name="confirm" value="([^"]+)"`)

// askLoad submits the load form and returns the confirmation page and
// its token.
func (b *browser) askLoad(amount string) (token, body string) {
	b.t.Helper()
	resp, body := b.post("/wallet/load", url.Values{"csrf": {b.csrf}, "amount": {amount}})
	m := confirmField.FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		b.t.Fatalf("load form with %s: %d\n%s", amount, resp.StatusCode, body)
	}
	return m[1], body
}

func (b *browser) confirmLoad(token string) (*http.Response, string) {
	b.t.Helper()
	return b.post("/wallet/load/confirm", url.Values{"csrf": {b.csrf}, "confirm": {token}})
}

func wantAll(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
	if t.Failed() {
		t.Fatalf("%s:\n%s", what, body)
	}
}

func TestUIWalletLoad(t *testing.T) {
	f := newWalletUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	body := b.page("/wallet")
	wantAll(t, "the empty wallet", body, `id="nav-wallet" class="active"`, `id="wallet-amount">¥0.00`, `id="wallet-sequence">0`,
		`data-verified="false"`, "尚无签名状态", `id="load-form"`, `id="no-card"`, "本机还没有圈存或转账记录。", "30 秒")
	// The page sent the key's signed wallet state, as "client wallet" does.
	if k := f.loads.kinds(); len(k) != 1 || k[0] != protocol.ReportState {
		t.Fatalf("reports %v", k)
	}

	// The amount first: a confirmation page, nothing signed yet.
	token, body := b.askLoad("300.00")
	wantAll(t, "the confirmation", body, `id="load-confirm-page" data-state="waiting"`, `id="confirm-amount">¥300.00`,
		`id="confirm-account">6222-0001-7788`, testSerial, "¥0.00 → <strong>¥300.00</strong>", `data-seconds="30"`, `name="csrf"`)
	if f.sent() != 0 {
		t.Fatal("a load request was sent before the confirmation")
	}
	// Confirmed: the key signs, GridPay allows, the wallet takes it, and
	// the browser lands on the result (reloading it repeats nothing).
	resp, body := b.confirmLoad(token)
	result := resp.Request.URL.Path
	if resp.StatusCode != 200 || !strings.HasPrefix(result, "/wallet/load/") {
		t.Fatalf("confirm: %d at %s\n%s", resp.StatusCode, result, body)
	}
	load1 := protocol.LoadID(testSerial, 1)
	wantAll(t, "the result", body, `data-outcome="confirmed"`, "圈存成功", `id="outcome-amount">¥300.00`, load1,
		`id="result-amount">¥300.00`, `id="result-sequence">1`, "已确认")
	f.loads.mu.Lock()
	req := f.loads.requests[0]
	f.loads.mu.Unlock()
	if req.Amount != 300_00 || req.Account != testMe.Customer.AccountNumber || req.Sequence != 1 || req.WalletBalance != 0 {
		t.Fatalf("request %+v", req)
	}
	if again := b.page(result); !strings.Contains(again, `data-outcome="confirmed"`) || f.sent() != 1 {
		t.Fatalf("reloading the result: %d requests\n%s", f.sent(), again)
	}
	// The same confirmation again (a replayed or resubmitted form): spent.
	resp, body = b.confirmLoad(token)
	if resp.StatusCode != 409 || !strings.Contains(body, `data-outcome="used"`) || !strings.Contains(body, `href="`+result+`"`) || f.sent() != 1 {
		t.Fatalf("replayed confirmation: %d, %d requests\n%s", resp.StatusCode, f.sent(), body)
	}

	body = b.page("/wallet")
	wantAll(t, "the wallet after the load", body, `id="wallet-amount">¥300.00`, `id="wallet-sequence">1`, `data-verified="true"`,
		"✓ 已验证", `id="wallet-lastload">`+load1, `class="log-load"`, "日志链与签名已验证")

	// A confirmation belongs to the browser session that asked for it.
	token2, _ := b.askLoad("5.00")
	other := f.browser(t)
	other.page("/wallet")
	if resp, body := other.confirmLoad(token2); resp.StatusCode != 409 || !strings.Contains(body, `data-outcome="unknown"`) || f.sent() != 1 {
		t.Fatalf("another session's confirmation: %d\n%s", resp.StatusCode, body)
	}
	if _, body := b.confirmLoad(token2); !strings.Contains(body, `id="result-amount">¥305.00`) || !strings.Contains(body, `id="result-sequence">2`) {
		t.Fatalf("second load:\n%s", body)
	}
	// Cancelled: the confirmation is gone.
	token3, _ := b.askLoad("7.00")
	if resp, _ := b.post("/wallet/load/cancel", url.Values{"csrf": {b.csrf}, "confirm": {token3}}); resp.Request.URL.Path != "/wallet" {
		t.Fatalf("cancel went to %s", resp.Request.URL)
	}
	if resp, body := b.confirmLoad(token3); resp.StatusCode != 409 || !strings.Contains(body, `data-outcome="unknown"`) || f.sent() != 2 {
		t.Fatalf("a cancelled confirmation: %d\n%s", resp.StatusCode, body)
	}

	// The overview shows the wallet; the history lists the loads.
	wantAll(t, "the overview", b.page("/overview"), `id="ov-wallet-balance">¥305.00`, "联机交易序号 2")
	load2 := protocol.LoadID(testSerial, 2)
	body = b.page("/history")
	wantAll(t, "the history", body, `<td class="ref">GP-7F3A</td>`, `id="loads-table"`, `<td class="load-id mono">`+load1+`</td>`,
		`<td class="load-id mono">`+load2+`</td>`, "已存入钱包", "共 2 笔，存入钱包 ¥305.00")
	if strings.Index(body, load2) > strings.Index(body, load1) {
		t.Error("the loads are not newest first")
	}
	loadIDs := regexp.MustCompile(`<td class="load-id mono">([^<]+)</td>`)
	for q, want := range map[string][]string{
		"kind=payments":   nil,
		"kind=loads":      {load2, load1},
		"status=loaded":   {load2, load1},
		"status=refused":  nil,
		"status=posted":   nil,
		"q=" + load1[5:]:  {load1},
		"q=GP-7F3A":       nil,
		"from=2000-01-01": {load2, load1},
		"to=2000-01-01":   nil,
	} {
		body := b.page("/history?" + q)
		var got []string
		for _, m := range loadIDs.FindAllStringSubmatch(body, -1) {
			got = append(got, m[1])
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("history?%s: loads %v, want %v", q, got, want)
		}
		// A load status or kind=loads hides the payments, and the other
		// way round.
		loadsOnly := q == "kind=loads" || q == "status=loaded" || q == "status=refused"
		paymentsOnly := q == "kind=payments" || q == "status=posted"
		if strings.Contains(body, `id="payments-title"`) == loadsOnly || strings.Contains(body, `id="loads-title"`) == paymentsOnly {
			t.Errorf("history?%s: the wrong sections", q)
		}
	}
}

func TestUIWalletConfirmationExpires(t *testing.T) {
	f := newWalletUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	token, _ := b.askLoad("10.00")
	f.advance(31 * time.Second) // load.confirm_timeout is 30 s
	resp, body := b.confirmLoad(token)
	if resp.StatusCode != 409 || !strings.Contains(body, `data-outcome="expired"`) || !strings.Contains(body, "超过 30 秒 未确认：未签名、未发送任何请求，未扣款。") {
		t.Fatalf("expired confirmation: %d\n%s", resp.StatusCode, body)
	}
	// Nothing was signed: no request, no attempt on the key.
	if f.sent() != 0 {
		t.Fatalf("%d load requests after an expired confirmation", f.sent())
	}
	if b, found, _ := readObject(context.Background(), f.objs, walletLabel); found && strings.Contains(string(b), `"attempt"`) {
		t.Fatalf("an attempt on the key after an expired confirmation: %s", b)
	}
	// Confirming it again later changes nothing.
	if resp, _ := b.confirmLoad(token); resp.StatusCode != 409 || f.sent() != 0 {
		t.Fatal("an expired confirmation was used")
	}
	// Just in time, it goes through.
	token, _ = b.askLoad("10.00")
	f.advance(29 * time.Second)
	if _, body := b.confirmLoad(token); !strings.Contains(body, `data-outcome="confirmed"`) || f.sent() != 1 {
		t.Fatalf("confirmed in time:\n%s", body)
	}
}

func TestUIWalletBadAmounts(t *testing.T) {
	f := newWalletUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	for amount, want := range map[string]string{
		"":                   "请输入金额，例如 500.00。",
		"   ":                "请输入金额，例如 500.00。",
		"abc":                "金额格式不正确",
		"-5":                 "金额格式不正确",
		"1e3":                "金额格式不正确",
		"12.3.4":             "金额格式不正确",
		"0":                  "金额必须大于 0。",
		"0.00":               "金额必须大于 0。",
		"1.234":              "金额最多两位小数（分为最小单位）。",
		"9999999999999.00":   "金额格式不正确",
		"<script>x</script>": "金额格式不正确",
	} {
		resp, body := b.post("/wallet/load", url.Values{"csrf": {b.csrf}, "amount": {amount}})
		if resp.StatusCode != 400 || !strings.Contains(body, `id="load-error"`) || !strings.Contains(body, want) ||
			strings.Contains(body, "load-confirm-page") || strings.Contains(body, "<script>x") {
			t.Errorf("amount %q: %d\n%s", amount, resp.StatusCode, body)
		}
	}
	if f.sent() != 0 {
		t.Fatalf("%d load requests for bad amounts", f.sent())
	}
	// The amount typed comes back in the form, escaped.
	_, body := b.post("/wallet/load", url.Values{"csrf": {b.csrf}, "amount": {`1.234"x`}})
	if !strings.Contains(body, `value="1.234&#34;x"`) {
		t.Errorf("the amount typed is not back in the form:\n%s", body)
	}
}

func TestUIWalletRefusals(t *testing.T) {
	f := newWalletUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	// GridPay refuses (the prepaid account holds too little): nothing taken.
	f.loads.mu.Lock()
	f.loads.refuse = &api.Error{Code: api.CodeLoadRefused, Message: "the prepaid account holds ¥10.00, less than ¥300.00"}
	f.loads.mu.Unlock()
	token, _ := b.askLoad("300.00")
	_, body := b.confirmLoad(token)
	wantAll(t, "refused by GridPay", body, `data-outcome="declined"`, "GridPay 拒绝了本次圈存", "未扣款",
		"the prepaid account holds ¥10.00, less than ¥300.00", `id="result-amount">¥0.00`, `id="result-sequence">0`)

	// The key refuses GridPay's allow (expired on arrival): the wallet is
	// unchanged, the refund follows the allow's expiry.
	f.loads.mu.Lock()
	f.loads.refuse, f.loads.edit = nil, expireNow
	f.loads.mu.Unlock()
	token, _ = b.askLoad("300.00")
	_, body = b.confirmLoad(token)
	wantAll(t, "refused by the key", body, `data-outcome="refused"`, "USB 密钥拒绝了 GridPay 的圈存指令", "将在指令过期（",
		"the allow expired", `id="outcome-status">正在撤销（指令过期后退款）`, `id="result-amount">¥0.00`, protocol.LoadID(testSerial, 2))

	body = b.page("/history?status=refused")
	wantAll(t, "refused loads in the history", body, protocol.LoadID(testSerial, 1), protocol.LoadID(testSerial, 2), "未存入",
		"共 2 笔，存入钱包 ¥0.00", "the USB key refused the load: the allow expired")
	// The wallet page: the allow the key gave up, while GridPay settles it.
	body = b.page("/wallet")
	wantAll(t, "the wallet with a refused allow", body, `id="wallet-amount">¥0.00`, `class="log-load-refused"`)
}

// Every way a load can end has its words.
func TestUILoadOutcomes(t *testing.T) {
	q := loadQuestion{Amount: 12_00, Account: "A-1", TokenSerial: testSerial}
	gw := &gatewayError{Status: 409, Code: api.CodeLoadPending, Message: "load 1 is still being settled"}
	for _, c := range []struct {
		res  *loadResult
		err  error
		kind string
	}{
		{&loadResult{Status: "confirmed"}, nil, "confirmed"},
		{&loadResult{Status: "applied, not confirmed"}, nil, "credited"},
		{&loadResult{Status: "cancelling", refused: true}, fail(cli.ExitError, nil, "not applied"), "refused"},
		{nil, fail(cli.ExitError, errLoadNotConfirmed, "not confirmed"), "expired"},
		{nil, fail(cli.ExitUnavailable, fmt.Errorf("%w: %w", errLoadOutcomeUnknown, errors.New("timeout")), "unknown"), "pending"},
		{nil, loadRefusal(gw), "declined"},
		{nil, fail(cli.ExitAuth, fmt.Errorf("%w: bad signature", ErrWalletInvalid), "does not verify"), "failed"},
	} {
		o := loadOutcomeOf(langZH, q, c.res, c.err)
		if o.Kind != c.kind {
			t.Errorf("%v / %v: %s, want %s", c.res, c.err, o.Kind, c.kind)
		}
	}

	f := newWalletUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	req, _ := http.NewRequest(http.MethodGet, f.base, nil)
	req.AddCookie(b.cookie())
	client := f.srv.clientOf(req)
	for _, lang := range []string{"zh-CN", "en"} {
		b.post("/lang", url.Values{"csrf": {b.csrf}, "lang": {lang}, "back": {"/wallet"}})
		for _, kind := range []string{"confirmed", "credited", "refused", "declined", "pending", "expired", "used", "unknown", "failed"} {
			o := &loadOutcome{Kind: kind, Amount: 12_00, Status: "applied, not confirmed", Err: &uiErr{Title: "x"}}
			id, err := f.srv.wallet.keep(&walletResult{client: client, load: o})
			if err != nil {
				t.Fatal(err)
			}
			body := b.page("/wallet/load/" + id)
			if strings.Contains(stripTags(body), "wal.") || strings.Contains(body, "load.st.") || !strings.Contains(body, `data-outcome="`+kind+`"`) ||
				!strings.Contains(body, "status-load-applied-not-confirmed") {
				t.Errorf("%s outcome %s:\n%s", lang, kind, body)
			}
		}
	}
	// Results are the session's own.
	other := f.browser(t)
	id, _ := f.srv.wallet.keep(&walletResult{client: client, load: &loadOutcome{Kind: "confirmed"}})
	if resp, _ := other.get("/wallet/load/" + id); resp.StatusCode != 404 {
		t.Fatalf("another session's result: %d", resp.StatusCode)
	}
}

func TestUIWalletCard(t *testing.T) {
	f := newWalletUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	f.issueCard(t)
	token, _ := b.askLoad("300.00")
	b.confirmLoad(token)
	body := b.page("/wallet")
	wantAll(t, "the wallet with a card", body, `id="card-number">****0007`, `data-present="true"`, "已检测到电表卡",
		`<input type="password" name="card_pin" id="card-pin" autocomplete="off"`)
	if strings.Contains(body, "3301-0001-0007") {
		t.Fatal("the card number is on the page")
	}
	card := func(action, amount, pin string) (*http.Response, string) {
		t.Helper()
		form := url.Values{"csrf": {b.csrf}, "action": {action}, "amount": {amount}}
		if pin != "" {
			form.Set("card_pin", pin)
		}
		return b.post("/wallet/card", form)
	}
	noPIN := func(what, body string) {
		t.Helper()
		if strings.Contains(body, cardPIN) || strings.Contains(body, "wrong-pin-5") || strings.Contains(body, "3301-0001-0007") {
			t.Fatalf("%s: the PIN or the card number is on the page\n%s", what, body)
		}
	}

	// A transfer with the PIN typed in the form: the wallet and the card
	// after, adding up to what was loaded.
	resp, body := card("transfer", "120.00", cardPIN)
	if resp.Request.URL.Path != "/wallet" || !strings.HasPrefix(resp.Request.URL.RawQuery, "card=") {
		t.Fatalf("transfer went to %s", resp.Request.URL)
	}
	wantAll(t, "the transfer", body, `id="card-result"`, "已将 ¥120.00 转入电表卡 ****0007。", `id="card-wallet-balance">¥180.00`,
		`id="card-balance">¥120.00`, `id="card-total">¥300.00`, `id="wallet-amount">¥180.00`, `class="log-card-transfer"`)
	noPIN("transfer", body)
	if got := f.cardBalance(t); got != 120_00 {
		t.Fatalf("the card holds %s", got.Display())
	}
	f.mu.Lock()
	typed := f.cardPINs[len(f.cardPINs)-1]
	f.mu.Unlock()
	if typed != cardPIN {
		t.Fatalf("the card was opened with %q", typed)
	}
	// Reloading the result moves nothing.
	b.page(resp.Request.URL.RequestURI())
	if got := f.cardBalance(t); got != 120_00 {
		t.Fatalf("reloading moved money: the card holds %s", got.Display())
	}
	// Read the balance only.
	_, body = card("balance", "", cardPIN)
	wantAll(t, "the card's balance", body, "电表卡余额已读取。", `id="card-balance">¥120.00`, `id="card-wallet-balance">¥180.00`)
	noPIN("balance", body)

	// A wrong PIN: told, nothing moved, the key's session goes on.
	_, body = card("transfer", "10.00", "wrong-pin-5")
	wantAll(t, "a wrong card PIN", body, `id="card-failed"`, "电表卡 PIN 错误。")
	noPIN("wrong PIN", body)
	if f.keys.current() == nil || f.cardBalance(t) != 120_00 {
		t.Fatal("a wrong card PIN ended the session or moved money")
	}
	// More than the wallet holds.
	_, body = card("transfer", "180.01", cardPIN)
	wantAll(t, "too much", body, "钱包余额不足。")
	// Form errors: no PIN, a bad amount; the PIN is never written back.
	resp, body = card("transfer", "1.00", "")
	if resp.StatusCode != 400 || !strings.Contains(body, "请输入电表卡 PIN。") {
		t.Fatalf("no PIN: %d\n%s", resp.StatusCode, body)
	}
	resp, body = card("transfer", "1.234", cardPIN)
	if resp.StatusCode != 400 || !strings.Contains(body, `id="card-error"`) || !strings.Contains(body, "金额最多两位小数") {
		t.Fatalf("bad amount: %d\n%s", resp.StatusCode, body)
	}
	noPIN("bad amount", body)
	if f.cardBalance(t) != 120_00 {
		t.Fatal("money moved on a refused form")
	}

	// The card taken out of the reader: said so, the session goes on.
	f.mu.Lock()
	delete(f.cards, "Meter card")
	f.mu.Unlock()
	body = b.page("/wallet")
	wantAll(t, "no card in the reader", body, `data-present="false"`, "未检测到电表卡：请插入")
	_, body = card("transfer", "10.00", cardPIN)
	wantAll(t, "a transfer without the card", body, "未检测到电表卡：请将电表卡插入读卡器。", `id="wallet-amount">¥180.00`)
	if f.keys.current() == nil {
		t.Fatal("the card's absence ended the key's session")
	}
}

func TestUIWalletNotVerified(t *testing.T) {
	f := newWalletUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	token, _ := b.askLoad("500.00")
	b.confirmLoad(token)
	// Someone raises the balance inside the signed state on the key.
	f.objs.edit(t, walletLabel, func(v []byte) []byte {
		var rec walletRecord
		json.Unmarshal(v, &rec)
		st, _ := protocol.DecodeWalletState(rec.State)
		st.Balance = 5_000_00
		rec.State, _ = protocol.EncodeWalletState(st)
		out, _ := json.Marshal(rec)
		return out
	})
	body := b.page("/wallet")
	wantAll(t, "a forged wallet", body, `id="wallet-invalid"`, "未通过 GridPay 签名校验")
	if strings.Contains(body, `id="load-form"`) || strings.Contains(body, "¥5,000.00") {
		t.Fatalf("a forged wallet can be loaded or shows its balance:\n%s", body)
	}
	resp, body := b.post("/wallet/load", url.Values{"csrf": {b.csrf}, "amount": {"1.00"}})
	if resp.StatusCode != 400 || strings.Contains(body, "load-confirm-page") || f.sent() != 1 {
		t.Fatalf("load on a forged wallet: %d\n%s", resp.StatusCode, body)
	}
	if f.keys.current() == nil {
		t.Fatal("a forged wallet ended the key's session")
	}
	if body := b.page("/overview"); !strings.Contains(body, "无法读取 USB 密钥上的钱包") {
		t.Error("the overview shows a forged wallet")
	}
}

func TestUIWalletEnglish(t *testing.T) {
	f := newWalletUIFixture(t)
	b := f.browser(t)
	b.post("/lang", url.Values{"csrf": {b.csrf}, "lang": {"en"}, "back": {"/login"}})
	b.loggedIn()
	f.issueCard(t)
	noChinese := func(what, body string) {
		t.Helper()
		if text := stripTags(body); strings.ContainsAny(text, "钱包圈存确认电表卡余额序号签名") {
			t.Errorf("Chinese on the English %s:\n%s", what, text)
		}
	}
	body := b.page("/wallet")
	wantAll(t, "the English wallet", body, `lang="en"`, "Wallet balance", "Online sequence number", "Nothing signed yet",
		"Load: from the prepaid account into the wallet", "Meter card", "****0007", "card present", "Move onto the card", "30 s")
	noChinese("wallet", body)
	_, body = b.post("/wallet/load", url.Values{"csrf": {b.csrf}, "amount": {"1.234"}})
	wantAll(t, "an English amount error", body, "At most two decimals")
	token, body := b.askLoad("88.80")
	wantAll(t, "the English confirmation", body, "Confirm the load", "¥88.80", "Confirm and sign the load", "Cancel")
	noChinese("confirmation", body)
	_, body = b.confirmLoad(token)
	wantAll(t, "the English result", body, "Loaded", "¥88.80 went from prepaid account 6222-0001-7788 onto the wallet", "confirmed")
	noChinese("result", body)
	_, body = b.post("/wallet/card", url.Values{"csrf": {b.csrf}, "action": {"transfer"}, "amount": {"8.80"}, "card_pin": {cardPIN}})
	wantAll(t, "the English transfer", body, "Moved ¥8.80 onto meter card ****0007.", "Together")
	noChinese("transfer", body)
	body = b.page("/history")
	wantAll(t, "the English history", body, "History: payments and loads", "Loads (prepaid account", "in the wallet", "1 load(s), ¥88.80 put in the wallet")
	noChinese("history", body)
	body = b.page("/overview")
	wantAll(t, "the English overview", body, "Wallet (USB key)", "¥80.00", "sequence 1")
}

// A blank meter card bound from the window, as "client card issue" does:
// bad fields change nothing, a wrong PIN binds nothing, then the card is
// bound and ready for transfers. Neither the PIN nor the card number
// comes back in a page.
func TestUIWalletCardIssue(t *testing.T) {
	f := newWalletUIFixture(t)
	b := f.browser(t)
	b.loggedIn()
	body := b.page("/wallet")
	wantAll(t, "a key without a card", body, `id="no-card"`, `id="card-issue-form"`)
	issue := func(label, number, pin string) (*http.Response, string) {
		t.Helper()
		return b.post("/wallet/card/issue", url.Values{"csrf": {b.csrf}, "card_label": {label}, "card_number": {number}, "card_pin": {pin}})
	}
	for _, c := range []struct{ label, number, pin, want string }{
		{"", "3301-0001-0007", cardPIN, "请输入电表卡标签。"},
		{"Meter card", "33x", cardPIN, "卡号应为 6 到 32 位数字"},
		{"Meter card", "3301-0001-0007", "", "请输入电表卡 PIN。"},
	} {
		resp, body := issue(c.label, c.number, c.pin)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, c.want) || strings.Contains(body, cardPIN) {
			t.Fatalf("issue %+v: %d, want %q", c, resp.StatusCode, c.want)
		}
	}
	_, body = issue("Meter card", "3301-0001-0007", "wrong-pin")
	wantAll(t, "a wrong card PIN", body, `id="card-failed"`, "电表卡 PIN 错误。", `id="no-card"`)
	if _, found, _ := readCardBinding(context.Background(), f.objs); found {
		t.Fatal("a wrong PIN bound the card")
	}
	_, body = issue("Meter card", "3301-0001-0007", cardPIN)
	wantAll(t, "the card bound", body, "电表卡 ****0007 已与此 USB 密钥绑定。", `id="card-number">****0007`, `id="card-form"`)
	if strings.Contains(body, cardPIN) || strings.Contains(body, "3301-0001-0007") {
		t.Fatal("the PIN or the card number is on the page")
	}
	if b, found, err := readCardBinding(context.Background(), f.objs); err != nil || !found || b.CardSerial != "CARD0001" {
		t.Fatalf("the key's record of its card: %+v %v %v", b, found, err)
	}
}

package main

import (
	"bytes"
	"context"
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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/client/pinlock"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
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
		// The Pay page is in the navigation; the wallet is a placeholder
		// until loads arrive.
		`href="/pay"`, "随圈存功能上线",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if strings.Contains(body, `href="/wallet`) {
		t.Error("the overview links to a wallet page that does not exist yet")
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
	last := f.mem.gw.requests[len(f.mem.gw.requests)-1]
	f.mem.gw.mu.Unlock()
	if last != "GET /v1/payments?from=2025-12-01&to=2026-04-30" {
		t.Errorf("gateway asked %q", last)
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

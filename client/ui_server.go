package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

//go:embed web
var webFiles embed.FS

// The local endpoint's defences. The UI is a local agent holding an
// unlocked USB key, so every request must come from the browser window
// this process opened, and from nothing else: not another web page the
// user visits (CSRF, DNS rebinding, framing), not another local program
// that guesses the port.
//
//   - It listens on a loopback address only (uiListenAddr).
//   - The launch URL carries a per-launch random secret (launchSecretBytes),
//     exchanged at /launch for a cookie (HttpOnly, SameSite=Strict, Path=/)
//     holding a different random value; every other request without a
//     valid cookie is refused with 403.
//   - The Host header must be this listener's address or localhost with its
//     port: a DNS-rebound name never matches.
//   - An Origin header, when present, must be exactly this UI's origin.
//   - No CORS header is ever sent, so other origins can read nothing.
//   - State changes are POST only, each with the CSRF token of the cookie's
//     session in the form; GET changes nothing.
//   - CSP default-src 'self' (no inline script or style), X-Frame-Options
//     DENY, Cache-Control no-store, and no referrer for any other origin:
//     Referrer-Policy same-origin on the pages, no-referrer on the launch
//     page (its address holds the secret). Not no-referrer everywhere:
//     under no-referrer a browser sends "Origin: null" with the pages' own
//     form POSTs, and the Origin check could then only refuse them or
//     accept any "null" (sandboxed frames, file: pages...).
const (
	launchSecretBytes = 32
	uiCookiePrefix    = "gridpay_ui_"
	maxFormBytes      = 8 << 10
	// maxUIClients bounds the browser sessions one launch secret can mint.
	maxUIClients = 64
)

const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// uiServer serves the web UI.
type uiServer struct {
	a    *app
	log  *zap.Logger
	keys *uiKeys
	now  func() time.Time

	// origin is http://host:port as printed; hosts are the Host headers
	// accepted.
	origin string
	hosts  map[string]bool
	cookie string
	secret string
	// onLaunch runs after the first successful exchange of the secret
	// (removes the launch file).
	onLaunch     func()
	onLaunchOnce sync.Once

	pages map[string]*template.Template
	mux   *http.ServeMux

	mu      sync.Mutex
	clients map[[sha256.Size]byte]*uiClient // by SHA-256 of the cookie value
	order   [][sha256.Size]byte             // oldest first, for eviction

	// wallet holds the load confirmations and wallet results.
	wallet walletActions
}

// uiClient is one browser session: the CSRF token its forms carry.
type uiClient struct {
	csrf string
}

// newUIServer serves the UI for the listener at addr, a loopback address.
func newUIServer(a *app, addr *net.TCPAddr, keys *uiKeys) (*uiServer, error) {
	secret, err := randomToken(launchSecretBytes)
	if err != nil {
		return nil, err
	}
	host := net.JoinHostPort(addr.IP.String(), strconv.Itoa(addr.Port))
	s := &uiServer{
		a: a, log: a.log, keys: keys, now: a.now,
		origin:  "http://" + host,
		hosts:   map[string]bool{host: true},
		cookie:  uiCookiePrefix + strconv.Itoa(addr.Port),
		secret:  secret,
		clients: map[[sha256.Size]byte]*uiClient{},
	}
	if addr.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		s.hosts[net.JoinHostPort("localhost", strconv.Itoa(addr.Port))] = true
	}
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// launchURL is the address to open, with the per-launch secret.
func (s *uiServer) launchURL() string { return s.origin + "/launch?k=" + s.secret }

func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// uiCall is what the security checks learnt about a request.
type uiCall struct {
	client *uiClient
	lang   string
	// form is the POST body, parsed without copying it into strings (it
	// may hold the PIN); zeroed when the request ends.
	form formValues
}

type callKey struct{}

func callOf(r *http.Request) *uiCall {
	c, _ := r.Context().Value(callKey{}).(*uiCall)
	if c == nil {
		return &uiCall{client: &uiClient{}, lang: langOf(r)}
	}
	return c
}

func (s *uiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")

	if !s.hosts[strings.ToLower(r.Host)] {
		s.forbid(w, r, "Host header not this UI's")
		return
	}
	if o, ok := r.Header["Origin"]; ok && (len(o) != 1 || o[0] != "http://"+strings.ToLower(r.Host)) {
		s.forbid(w, r, "foreign Origin")
		return
	}
	if r.URL.Path == "/launch" {
		s.serveLaunch(w, r)
		return
	}
	c := s.clientOf(r)
	if c == nil {
		s.forbid(w, r, "no valid session cookie")
		return
	}
	call := &uiCall{client: c, lang: langOf(r)}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		form, err := readForm(w, r)
		if err != nil {
			s.forbid(w, r, "unreadable form: "+err.Error())
			return
		}
		defer form.zero()
		if subtle.ConstantTimeCompare(form["csrf"], []byte(c.csrf)) != 1 {
			s.forbid(w, r, "missing or wrong CSRF token")
			return
		}
		call.form = form
	default:
		h.Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callKey{}, call)))
}

// forbid answers 403 with a page that names no reason; the reason goes to
// the debug log (never the query, which may hold the launch secret).
func (s *uiServer) forbid(w http.ResponseWriter, r *http.Request, why string) {
	s.log.Debug("web UI request refused", zap.String("reason", why), zap.String("method", r.Method), zap.String("path", r.URL.Path))
	lang := langOf(r)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	fmt.Fprintf(w, "<!doctype html><html lang=%q><meta charset=\"utf-8\"><title>403</title><h1>403 %s</h1><p>%s</p></html>\n",
		lang, template.HTMLEscapeString(tr(lang, "forbidden.title")), template.HTMLEscapeString(tr(lang, "forbidden.text")))
}

// clientOf finds the browser session of the request's cookie. Cookies are
// not port-scoped, so several may carry the name; any valid one counts.
func (s *uiServer) clientOf(r *http.Request) *uiClient {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ck := range r.CookiesNamed(s.cookie) {
		if c := s.clients[sha256.Sum256([]byte(ck.Value))]; c != nil {
			return c
		}
	}
	return nil
}

// serveLaunch exchanges the launch secret for a session cookie. The answer
// is a page that moves on to / by itself rather than an HTTP redirect: the
// launch may come from a file:// page (see openBrowser), a cross-site
// navigation, and a redirect in that navigation would not carry the
// SameSite=Strict cookie just set; the page's own navigation does. The
// secret stays usable, so the printed link works again after the browser
// was closed.
func (s *uiServer) serveLaunch(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.forbid(w, r, "launch by "+r.Method)
		return
	}
	k := r.URL.Query().Get("k")
	if subtle.ConstantTimeCompare([]byte(k), []byte(s.secret)) != 1 {
		s.forbid(w, r, "wrong launch secret")
		return
	}
	value, err := randomToken(32)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	csrf, err := randomToken(32)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	sum := sha256.Sum256([]byte(value))
	s.mu.Lock()
	if len(s.order) >= maxUIClients {
		delete(s.clients, s.order[0])
		s.order = s.order[1:]
	}
	s.clients[sum] = &uiClient{csrf: csrf}
	s.order = append(s.order, sum)
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: s.cookie, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	if s.onLaunch != nil {
		s.onLaunchOnce.Do(s.onLaunch)
	}
	lang := langOf(r)
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, "<!doctype html><html lang=%q><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url=/\"><title>GridPay</title><p>%s… <a href=\"/\">%s</a></p></html>\n",
		lang, template.HTMLEscapeString(tr(lang, "launch.title")), template.HTMLEscapeString(tr(lang, "launch.continue")))
}

// formValues is a parsed application/x-www-form-urlencoded body. Values
// stay byte slices so that the PIN can be zeroed after use.
type formValues map[string][]byte

func (f formValues) get(key string) string { return string(f[key]) }

// zero overwrites every value.
func (f formValues) zero() {
	for _, v := range f {
		clear(v)
	}
}

// readForm reads a POSTed form (at most maxFormBytes) and zeroes the body
// it read. A repeated field is refused: two CSRF tokens or two PINs are
// never what a page of ours sends.
func readForm(w http.ResponseWriter, r *http.Request) (formValues, error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/x-www-form-urlencoded" {
		return nil, fmt.Errorf("content type %q", ct)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	defer clear(body)
	if err != nil {
		return nil, err
	}
	return parseForm(body)
}

func parseForm(body []byte) (formValues, error) {
	f := formValues{}
	for len(body) > 0 {
		var pair []byte
		pair, body, _ = bytes.Cut(body, []byte("&"))
		if len(pair) == 0 {
			continue
		}
		k, v, _ := bytes.Cut(pair, []byte("="))
		key, err := unescapeForm(k)
		if err != nil {
			return nil, err
		}
		if _, dup := f[string(key)]; dup {
			return nil, fmt.Errorf("field %q repeated", key)
		}
		val, err := unescapeForm(v)
		if err != nil {
			return nil, err
		}
		f[string(key)] = val
	}
	return f, nil
}

// unescapeForm decodes '+' and %XX into a new slice.
func unescapeForm(b []byte) ([]byte, error) {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '+':
			out = append(out, ' ')
		case '%':
			if i+2 >= len(b) || unhex(b[i+1]) < 0 || unhex(b[i+2]) < 0 {
				clear(out)
				return nil, errors.New("bad %-escape in form")
			}
			out = append(out, byte(unhex(b[i+1])<<4|unhex(b[i+2])))
			i += 2
		default:
			out = append(out, c)
		}
	}
	return out, nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// Templates: web/layout.html around one page file each.
var pageFiles = map[string][]string{
	"login":       {"login.html"},
	"overview":    {"overview.html"},
	"consumption": {"consumption.html", "chart.html"},
	"bills":       {"bills.html"},
	"bill":        {"bill.html"},
	"history":     {"history.html"},
	"pay":         {"pay.html"},
	"paystatus":   {"paystatus.html"},
	"wallet":      {"wallet.html"},
	"loadconfirm": {"loadconfirm.html"},
	"loadresult":  {"loadresult.html"},
	"error":       {"error.html"},
}

var templateFuncs = template.FuncMap{
	"num":     groupDigits,
	"instant": uiInstant,
}

func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for name, files := range pageFiles {
		paths := []string{"web/layout.html"}
		for _, f := range files {
			paths = append(paths, "web/"+f)
		}
		t, err := template.New(name).Funcs(templateFuncs).ParseFS(webFiles, paths...)
		if err != nil {
			return nil, fmt.Errorf("parsing the %s page: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// render writes a page, or a plain 500 if its template fails (a bug).
func (s *uiServer) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		s.log.Error("rendering a web UI page", zap.String("page", name), zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// static serves the embedded CSS and script.
func staticHandler() http.Handler {
	sub, err := fs.Sub(webFiles, "web/static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.StripPrefix("/static/", http.FileServerFS(sub))
}

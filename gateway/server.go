package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/logging"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/workflows"
)

// CertVerifier checks a client certificate chain as presented in the TLS
// handshake (leaf first). *pki.Verifier is the real one.
type CertVerifier interface {
	Verify(chain []*x509.Certificate, now time.Time, usage x509.ExtKeyUsage) (pki.Identity, error)
}

// crlSource is a CertVerifier that can hand out the CRLs it checks with
// (*pki.Verifier does).
type crlSource interface{ CRLs() [][]byte }

// Bindings finds the binding a certificate logs in with.
type Bindings interface {
	// ActiveBinding returns the active binding of the certificate with that
	// serial (store's hex form), or an error matching store.ErrNotFound.
	ActiveBinding(ctx context.Context, certSerial string) (store.Binding, error)
}

// Auditor appends to the audit log.
type Auditor interface {
	Audit(ctx context.Context, rec store.AuditRecord) error
}

// Deps are what the server talks to.
type Deps struct {
	Platform platform.Service
	Verifier CertVerifier
	Bindings Bindings
	Auditor  Auditor
	// Payments starts and reads payment sagas; nil serves no payments.
	Payments Payments
	// Records lists GridPay's own payment records for the history.
	Records PaymentRecords
	Log     *zap.Logger
}

// Options tune the server; config.Gateway carries the same values.
type Options struct {
	RatePerSecond  float64
	RateBurst      int
	RequestTimeout time.Duration
	// PublicURL and PayLinkSecret make the links that open a payment's
	// UnionPay form in the payer's browser (the public listener serves them).
	PublicURL     string
	PayLinkSecret []byte
	// PaymentTiming is passed to every payment saga (pay timeout...).
	PaymentTiming workflows.PaymentTiming
	// Now is the clock for certificate validity, rate limits and alerts;
	// nil means time.Now.
	Now func() time.Time
}

// Server is the gateway's HTTP handler: authentication, limits and the API.
type Server struct {
	platform platform.Service
	verifier CertVerifier
	bindings Bindings
	audit    *auditLog
	log      *zap.Logger
	now      func() time.Time
	limits   *limiters
	timeout  time.Duration

	payments      Payments
	records       PaymentRecords
	loads         *loadBackend // nil: no load API (EnableLoads)
	payLinks      payLinks
	paymentTiming workflows.PaymentTiming
}

// NewServer builds the handler.
func NewServer(d Deps, o Options) *Server {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	log := d.Log
	if log == nil {
		log = zap.NewNop()
	}
	return &Server{
		platform: d.Platform,
		verifier: d.Verifier,
		bindings: d.Bindings,
		audit:    newAuditLog(d.Auditor, log, now),
		log:      log,
		now:      now,
		limits:   newLimiters(o.RatePerSecond, o.RateBurst),
		timeout:  o.RequestTimeout,

		payments:      d.Payments,
		records:       d.Records,
		payLinks:      payLinks{base: strings.TrimSuffix(o.PublicURL, "/"), secret: o.PayLinkSecret},
		paymentTiming: o.PaymentTiming,
	}
}

// principal is who a request comes from, once authenticated.
type principal struct {
	cert   *x509.Certificate
	serial string // store's hex form of cert's serial
	id     pki.Identity
}

// reqState follows a request through the pipeline, for its log line and
// for audit entries.
type reqState struct {
	id     string
	remote string
	code   string // the api error code answered, if any
	// certSerial is the presented certificate's serial, verified or not.
	certSerial string
	p          *principal
}

type stateKey struct{}

func stateOf(r *http.Request) *reqState {
	if st, ok := r.Context().Value(stateKey{}).(*reqState); ok {
		return st
	}
	return &reqState{}
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ServeHTTP runs a request through the pipeline: request ID and security
// headers, timeout, authentication (certificate, rate limit), routing,
// binding, handler; then one log line.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := &reqState{id: newRequestID(), remote: r.RemoteAddr}
	if c := certOf(r); c != nil {
		st.certSerial = pki.SerialHex(c.SerialNumber)
	}
	sw := &statusWriter{ResponseWriter: w}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Request-ID", st.id)

	// The platform logs our request ID, so one ID follows a request.
	ctx := platform.WithRequestID(context.WithValue(r.Context(), stateKey{}, st), st.id)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	r = r.WithContext(ctx)

	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic serving request", zap.String("request_id", st.id), zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			if sw.status == 0 {
				s.fail(sw, r, http.StatusInternalServerError, api.CodeInternal, msgInternal)
			}
		}
		s.logRequest(r, st, sw, time.Since(start))
	}()
	s.serve(sw, r, st)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, st *reqState) {
	p, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	st.p = p
	rts, param, found := lookupRoute(r.URL.Path)
	if !found {
		if isOtherVersion(r.URL.Path) {
			s.fail(w, r, http.StatusNotFound, api.CodeUnsupportedVersion, fmt.Sprintf("this gateway serves API %s only; update the client", api.Version))
			return
		}
		s.fail(w, r, http.StatusNotFound, api.CodeNotFound, "no such API path")
		return
	}
	i := slices.IndexFunc(rts, func(rt route) bool { return rt.method == r.Method })
	if i < 0 {
		allowed := make([]string, len(rts))
		for j, rt := range rts {
			allowed[j] = rt.method
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		s.fail(w, r, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, fmt.Sprintf("%s is not allowed here; use %s", clip(r.Method, 16), strings.Join(allowed, " or ")))
		return
	}
	rt := rts[i]
	if !rt.unbound && !s.checkBinding(w, r, p) {
		return
	}
	rt.handle(s, w, r, p, param)
}

func (s *Server) logRequest(r *http.Request, st *reqState, sw *statusWriter, took time.Duration) {
	fields := []zap.Field{
		zap.String("request_id", st.id),
		zap.String("method", r.Method),
		zap.String("path", clip(r.URL.Path, 128)),
		zap.Int("status", sw.status),
		zap.Duration("duration", took),
		zap.String("remote", st.remote),
		zap.Int("bytes", sw.bytes),
	}
	if st.code != "" {
		fields = append(fields, zap.String("code", st.code))
	}
	if st.certSerial != "" {
		fields = append(fields, zap.String(logging.KeyCertSerial, st.certSerial))
	}
	if p := st.p; p != nil {
		fields = append(fields, zap.String(logging.KeyCustomerID, p.id.CustomerID), zap.String(logging.KeyTokenSerial, p.id.TokenSerial))
	}
	switch {
	case sw.status >= 500:
		s.log.Warn("request", fields...)
	default:
		s.log.Info("request", fields...)
	}
}

// route is one API endpoint.
type route struct {
	method string
	// unbound endpoints need a verified certificate but no binding.
	unbound bool
	handle  func(s *Server, w http.ResponseWriter, r *http.Request, p *principal, param string)
}

var routes = map[string][]route{
	api.PathHealth:      {{method: http.MethodGet, unbound: true, handle: (*Server).health}},
	api.PathMe:          {{method: http.MethodGet, handle: (*Server).me}},
	api.PathConsumption: {{method: http.MethodGet, handle: (*Server).consumption}},
	api.PathBills:       {{method: http.MethodGet, handle: (*Server).bills}},
	api.PathArrears:     {{method: http.MethodGet, handle: (*Server).arrears}},
	api.PathPayments: {
		{method: http.MethodGet, handle: (*Server).paymentHistory},
		{method: http.MethodPost, handle: (*Server).startPayment},
	},
	api.PathPINFailures: {{method: http.MethodPost, handle: (*Server).pinFailures}},
	api.PathCRLs:        {{method: http.MethodGet, handle: (*Server).crls}},
	api.PathLoads: {
		{method: http.MethodGet, handle: (*Server).loadHistory},
		{method: http.MethodPost, handle: (*Server).startLoad},
	},
	api.PathLoadReports: {{method: http.MethodPost, handle: (*Server).loadReport}},
}

// Routes with a parameter in the path: api.PathBill + {id} and
// api.PathPayment + {idempotency key}.
var (
	billRoute    = []route{{method: http.MethodGet, handle: (*Server).bill}}
	paymentRoute = []route{{method: http.MethodGet, handle: (*Server).paymentStatus}}
)

// lookupRoute finds the endpoints of a path, and its parameter.
func lookupRoute(path string) ([]route, string, bool) {
	if rts, ok := routes[path]; ok {
		return rts, "", true
	}
	if id, ok := strings.CutPrefix(path, api.PathBill); ok && !strings.Contains(id, "/") {
		return billRoute, id, true
	}
	if key, ok := strings.CutPrefix(path, api.PathPayment); ok && !strings.Contains(key, "/") {
		return paymentRoute, key, true
	}
	return nil, "", false
}

// isOtherVersion reports whether path is under another API version
// ("/v2/...").
func isOtherVersion(path string) bool {
	seg, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if len(seg) < 2 || seg[0] != 'v' || "/"+seg == api.Version {
		return false
	}
	for _, c := range seg[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

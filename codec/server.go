package codec

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"
)

// ServerOptions configure the codec endpoint.
type ServerOptions struct {
	// Origin is the Temporal Web UI's origin (scheme://host:port), the only
	// web origin allowed to call the endpoint.
	Origin string
	// Log receives one line per request: remote address, namespace, path,
	// payload count, status. Never payload contents. nil logs nothing.
	Log *zap.Logger
	// MaxBody bounds a request body; 0 means 4 MiB (Temporal's own limit
	// for a payload is 2 MiB).
	MaxBody int64
}

// NewServer serves converter.NewPayloadCodecHTTPHandler for c — POST
// …/encode and …/decode, payloads as protobuf JSON — to the Temporal Web UI.
//
// The Web UI calls it from the operator's browser, with Content-Type:
// application/json and X-Namespace (and Authorization when configured to
// pass its access token), so every call is preceded by a CORS preflight.
// Requests that carry an Origin other than opts.Origin are refused (403):
// another web page open in the operator's browser cannot read payloads
// through it. Requests without an Origin come from programs, not browsers
// (the temporal CLI's --codec-endpoint); CORS cannot constrain those, so
// who reaches the port at all is decided by where it listens — loopback in
// development, the admin network in production.
func NewServer(c converter.PayloadCodec, opts ServerOptions) http.Handler {
	if opts.MaxBody <= 0 {
		opts.MaxBody = 4 << 20
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	return &server{codec: converter.NewPayloadCodecHTTPHandler(c), opts: opts}
}

type server struct {
	codec http.Handler
	opts  ServerOptions
}

// corsHeaders are the request headers the Web UI sends.
const corsHeaders = "Content-Type, X-Namespace, Authorization"

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	origin := r.Header.Get("Origin")
	log := s.opts.Log.With(zap.String("remote", r.RemoteAddr), zap.String("method", r.Method), zap.String("path", r.URL.Path),
		zap.String("namespace", r.Header.Get("X-Namespace")))
	if origin != "" {
		log = log.With(zap.String("origin", origin))
	}
	w.Header().Add("Vary", "Origin")
	if origin != "" && origin != s.opts.Origin {
		log.Warn("codec request refused: origin not allowed")
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	if origin != "" {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		// The Web UI may be set to send credentials (includeCredentials);
		// with one exact origin allowed, that is safe to permit.
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if r.Method == http.MethodOptions {
		s.preflight(w, r, origin, log)
		return
	}
	op := operation(r.URL.Path)
	if r.Method != http.MethodPost || op == "" {
		log.Warn("codec request refused: not POST …/encode or …/decode")
		http.Error(w, "POST /encode or /decode", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBody))
	if err != nil {
		status := http.StatusBadRequest
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			status = http.StatusRequestEntityTooLarge
		}
		log.Warn("codec request refused: unreadable body", zap.Int("status", status), zap.Error(err))
		http.Error(w, http.StatusText(status), status)
		return
	}
	var payloads commonpb.Payloads
	if err := protojson.Unmarshal(body, &payloads); err != nil {
		// The parser's message may quote the body: it is not logged.
		log.Warn("codec request refused: body is not Payloads JSON", zap.Int("bytes", len(body)))
		http.Error(w, "body is not Payloads JSON", http.StatusBadRequest)
		return
	}
	encrypted := 0
	for _, p := range payloads.Payloads {
		if IsEncrypted(p) {
			encrypted++
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.codec.ServeHTTP(rec, r)
	fields := []zap.Field{zap.String("op", op), zap.Int("payloads", len(payloads.Payloads)), zap.Int("encrypted", encrypted),
		zap.Int("status", rec.status), zap.Duration("took", time.Since(start))}
	if rec.status != http.StatusOK {
		// The handler's answer is the codec's error, which names a key
		// identifier at most.
		log.Warn("codec request failed", append(fields, zap.String("error", strings.TrimSpace(rec.body.String())))...)
		return
	}
	log.Info("codec request", fields...)
}

// preflight answers the browser's CORS preflight for an allowed origin.
func (s *server) preflight(w http.ResponseWriter, r *http.Request, origin string, log *zap.Logger) {
	if origin == "" || r.Header.Get("Access-Control-Request-Method") != http.MethodPost {
		log.Warn("codec preflight refused", zap.String("requested_method", r.Header.Get("Access-Control-Request-Method")))
		http.Error(w, "only POST from the Web UI", http.StatusForbidden)
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "POST")
	h.Set("Access-Control-Allow-Headers", corsHeaders)
	h.Set("Access-Control-Max-Age", "600")
	// Chrome asks before a public page calls a private address (Private
	// Network Access); the allowed origin may.
	if r.Header.Get("Access-Control-Request-Private-Network") == "true" {
		h.Set("Access-Control-Allow-Private-Network", "true")
	}
	log.Debug("codec preflight")
	w.WriteHeader(http.StatusNoContent)
}

// operation is "encode" or "decode" by the path's last element (the
// protocol lets the endpoint be mounted at any depth), or "".
func operation(path string) string {
	switch {
	case strings.HasSuffix(path, "/encode"):
		return "encode"
	case strings.HasSuffix(path, "/decode"):
		return "decode"
	}
	return ""
}

// statusRecorder notes the status and, for failures, the short error text.
type statusRecorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
	wrote  bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	if r.status != http.StatusOK && r.body.Len() < 512 {
		r.body.Write(b[:min(len(b), 512-r.body.Len())])
	}
	return r.ResponseWriter.Write(b)
}

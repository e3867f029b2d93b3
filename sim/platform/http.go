package simplatform

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
)

// maxRequestBody bounds a request body; the largest legitimate one (a
// payment with a hundred allocations) is a few kilobytes.
const maxRequestBody = 64 << 10

// retryAfterSeconds is what an unavailable answer suggests waiting.
const retryAfterSeconds = 2

// handler serves the contract (platform/openapi.yaml) over HTTP.
type handler struct {
	l           *ledger
	log         *zap.Logger
	unavailable *atomic.Bool
	mux         *http.ServeMux
}

func newHandler(l *ledger, log *zap.Logger, unavailable *atomic.Bool) *handler {
	h := &handler{l: l, log: log, unavailable: unavailable, mux: http.NewServeMux()}
	h.route("GET /v1/customers/{id}", func(r *http.Request) (int, any, error) {
		return ok(h.l.Customer(r.Context(), r.PathValue("id")))
	})
	h.route("GET /v1/customers/{id}/metering-points", func(r *http.Request) (int, any, error) {
		return items(h.l.MeteringPoints(r.Context(), r.PathValue("id")))
	})
	h.route("GET /v1/customers/{id}/consumption", func(r *http.Request) (int, any, error) {
		q := r.URL.Query()
		return items(h.l.Consumption(r.Context(), r.PathValue("id"), platform.Period(q.Get("from")), platform.Period(q.Get("to"))))
	})
	h.route("GET /v1/customers/{id}/bills", func(r *http.Request) (int, any, error) {
		q := r.URL.Query()
		f := platform.BillFilter{Status: q.Get("status"), From: platform.Period(q.Get("from")), To: platform.Period(q.Get("to"))}
		return items(h.l.Bills(r.Context(), r.PathValue("id"), f))
	})
	h.route("GET /v1/customers/{id}/bills/{billId}", func(r *http.Request) (int, any, error) {
		return ok(h.l.Bill(r.Context(), r.PathValue("id"), r.PathValue("billId")))
	})
	h.route("GET /v1/customers/{id}/arrears", func(r *http.Request) (int, any, error) {
		return ok(h.l.Arrears(r.Context(), r.PathValue("id")))
	})
	h.route("GET /v1/customers/{id}/payments", func(r *http.Request) (int, any, error) {
		q := r.URL.Query()
		return items(h.l.Payments(r.Context(), r.PathValue("id"), platform.Date(q.Get("from")), platform.Date(q.Get("to"))))
	})
	h.route("GET /v1/customers/{id}/prepaid", func(r *http.Request) (int, any, error) {
		return ok(h.l.PrepaidAccount(r.Context(), r.PathValue("id")))
	})
	h.route("GET /v1/payments/{reference}", func(r *http.Request) (int, any, error) {
		return ok(h.l.Payment(r.Context(), r.PathValue("reference")))
	})
	h.route("PUT /v1/payments/{reference}", func(r *http.Request) (int, any, error) {
		var p platform.PostPayment
		if err := decode(r, &p, false); err != nil {
			return 0, nil, err
		}
		ref := r.PathValue("reference")
		if p.Reference == "" {
			p.Reference = ref
		} else if p.Reference != ref {
			return 0, nil, fail(platform.CodeInvalidRequest, "the body's reference %q differs from the path's %q", clip(p.Reference), clip(ref))
		}
		out, created, err := h.l.postPayment(r.Context(), p)
		return createdOr(created), out, err
	})
	h.route("POST /v1/payments/{reference}/reversal", func(r *http.Request) (int, any, error) {
		var body platform.ReversalRequest
		if err := decode(r, &body, true); err != nil {
			return 0, nil, err
		}
		return ok(h.l.ReversePayment(r.Context(), r.PathValue("reference"), body.Note))
	})
	h.route("GET /v1/prepaid-entries/{key}", func(r *http.Request) (int, any, error) {
		return ok(h.l.PrepaidEntry(r.Context(), r.PathValue("key")))
	})
	h.route("PUT /v1/prepaid-entries/{key}", func(r *http.Request) (int, any, error) {
		var body platform.PrepaidEntryRequest
		if err := decode(r, &body, false); err != nil {
			return 0, nil, err
		}
		out, created, err := h.l.putEntry(r.Context(), r.PathValue("key"), body)
		return createdOr(created), out, err
	})
	h.route("/", func(r *http.Request) (int, any, error) {
		return 0, nil, fail(platform.CodeNotFound, "no endpoint %s %s", r.Method, clip(r.URL.Path))
	})
	return h
}

func ok[T any](v T, err error) (int, any, error) { return http.StatusOK, v, err }

func items[T any](v []T, err error) (int, any, error) {
	if v == nil {
		v = []T{}
	}
	return http.StatusOK, platform.ItemsBody[T]{Items: v}, err
}

func createdOr(created bool) int {
	if created {
		return http.StatusCreated
	}
	return http.StatusOK
}

// decode reads a JSON body strictly: one object, known fields only, at
// most maxRequestBody bytes. An empty body is allowed when optional.
func decode(r *http.Request, v any, optional bool) error {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxRequestBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fail(platform.CodeInvalidRequest, "request body larger than %d bytes", maxRequestBody)
		}
		return fail(platform.CodeInvalidRequest, "reading the request body: %v", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if optional {
			return nil
		}
		return fail(platform.CodeInvalidRequest, "a JSON request body is required")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fail(platform.CodeInvalidRequest, "request body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fail(platform.CodeInvalidRequest, "request body: data after the JSON object")
	}
	return nil
}

type endpoint func(r *http.Request) (status int, body any, err error)

func (h *handler) route(pattern string, e endpoint) {
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		status, body, err := e(r)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		writeJSON(w, status, body)
	})
}

// fail answers an error. Errors of the contract go out as they are;
// anything else (the database is down, a bug) is logged and answered as
// unavailable, without details.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var pe *platform.Error
	if !errors.As(err, &pe) {
		h.log.Error("request failed", zap.String("request_id", w.Header().Get(platform.RequestIDHeader)),
			zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		pe = &platform.Error{Code: platform.CodeUnavailable, Message: "the platform could not complete the request; try again later"}
	}
	if pe.Code == platform.CodeUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	writeJSON(w, platform.StatusOf(pe.Code), platform.ErrorBody{Error: &platform.Error{Code: pe.Code, Message: pe.Message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"unavailable","message":"encoding the answer failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// statusRecorder remembers the status written, for the log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// ServeHTTP adds what every request gets: a request ID, the maintenance
// switch, and a log line naming the calling service.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get(platform.RequestIDHeader)
	if !requestIDPattern.MatchString(id) {
		id = platform.NewRequestID()
	}
	w.Header().Set(platform.RequestIDHeader, id)
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	if h.unavailable.Load() {
		h.fail(rec, r, fail(platform.CodeUnavailable, "the platform is unavailable (maintenance); retry later"))
	} else {
		h.mux.ServeHTTP(rec, r)
	}
	service := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		if ident, err := pki.IdentityOf(r.TLS.PeerCertificates[0]); err == nil {
			service = ident.Service
		}
	}
	level := zap.InfoLevel
	if r.Method == http.MethodGet && rec.status < 400 {
		level = zap.DebugLevel
	}
	h.log.Log(level, "request", zap.String("request_id", id), zap.String("service", service),
		zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Int("status", rec.status),
		zap.Duration("took", time.Since(start)))
}

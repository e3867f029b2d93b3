package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/platform"
)

// writeJSON answers v with status. It encodes before writing anything, so
// an encoding failure is still a clean 500.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encoding a response", zap.String("request_id", stateOf(r).id), zap.Error(err))
		s.fail(w, r, http.StatusInternalServerError, api.CodeInternal, msgInternal)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// fail answers an api.ErrorBody.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	st := stateOf(r)
	st.code = code
	b, _ := json.Marshal(api.ErrorBody{Error: api.Error{Code: code, Message: message, RequestID: st.id}})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// refusal is a request turned away for what it is or who sends it, as
// opposed to a failure on our side.
type refusal struct {
	status  int
	code    string
	message string // for the client: says what to do
	reason  string // for the audit log and the gateway log: says what exactly was wrong
	// retryAfter is set for rate_limited, in whole seconds.
	retryAfter int
}

// refuse answers a refusal and writes it to the audit log.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, rf refusal) {
	st := stateOf(r)
	if rf.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(rf.retryAfter))
	}
	s.audit.refused(r.Context(), refusedEvent{
		code: rf.code, reason: rf.reason, remote: st.remote, requestID: st.id, path: r.URL.Path,
		cert: certOf(r), p: st.p,
	})
	s.fail(w, r, rf.status, rf.code, rf.message)
}

// Messages for failures that are not the customer's doing.
const (
	msgUnavailable = "service unavailable: the power company's systems cannot be reached right now; please try again later"
	msgInternal    = "internal error; the request ID identifies it in the gateway log"
)

// platformFailed answers a failed platform call. Unavailability (including
// a timeout) is 503 "service unavailable"; the gateway itself carries on
// and serves again as soon as the platform answers.
func (s *Server) platformFailed(w http.ResponseWriter, r *http.Request, op string, err error) {
	st := stateOf(r)
	switch {
	case errors.Is(err, platform.ErrUnknownCustomer):
		s.log.Error("the platform does not know a bound customer", zap.String("request_id", st.id), zap.String("op", op), zap.Error(err))
		s.fail(w, r, http.StatusNotFound, api.CodeNotFound, "your customer record was not found at the power company; please contact customer service")
	case platform.Retryable(err):
		s.log.Warn("platform unavailable", zap.String("request_id", st.id), zap.String("op", op), zap.Error(err))
		s.fail(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, msgUnavailable)
	default:
		s.log.Error("platform refused a request", zap.String("request_id", st.id), zap.String("op", op), zap.Error(err))
		s.fail(w, r, http.StatusInternalServerError, api.CodeInternal, msgInternal)
	}
}

// clip makes client-supplied text safe and short for a log, an audit entry
// or a message: valid UTF-8, no NUL (the audit log refuses both), at most
// max bytes.
func clip(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

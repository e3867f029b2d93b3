package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/store"
)

// health answers whether the gateway and the platform behind it work. It
// needs a verified certificate but no binding, so a client can tell "my
// key is refused" from "the service is down"; it answers 200 even when the
// platform is down.
func (s *Server) health(w http.ResponseWriter, r *http.Request, p *principal, _ string) {
	if _, err := query(r); err != nil {
		s.badRequest(w, r, err)
		return
	}
	h := api.Health{Status: "ok", Platform: "ok", Time: s.now().UTC()}
	if !s.platformUp(r.Context(), p.id.CustomerID) {
		h.Status, h.Platform = "degraded", "unavailable"
	}
	s.writeJSON(w, r, http.StatusOK, h)
}

// crls answers the CRLs the gateway checks with (GET api.PathCRLs), so
// that the client can check GridPay's own certificates (the load signer's)
// the same way.
func (s *Server) crls(w http.ResponseWriter, r *http.Request, _ *principal, _ string) {
	src, ok := s.verifier.(crlSource)
	if !ok {
		s.fail(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, "this gateway does not publish CRLs")
		return
	}
	s.writeJSON(w, r, http.StatusOK, api.CRLList{CRLs: src.CRLs()})
}

// pinger is what a platform client may offer to be probed cheaply.
type pinger interface {
	Ping(ctx context.Context) error
}

// platformUp probes the platform: with Ping if the client has it, else by
// asking for the customer's profile. Any answer that is not "unavailable"
// (even "unknown customer") means the platform is up.
func (s *Server) platformUp(ctx context.Context, customerID string) bool {
	var err error
	if pg, ok := s.platform.(pinger); ok {
		err = pg.Ping(ctx)
	} else {
		_, err = s.platform.Customer(ctx, customerID)
	}
	return err == nil || !platform.Retryable(err)
}

// me is what a login shows: the profile, the metering points, the
// certificate in use and the alerts of unpaid bills.
func (s *Server) me(w http.ResponseWriter, r *http.Request, p *principal, _ string) {
	if _, err := query(r); err != nil {
		s.badRequest(w, r, err)
		return
	}
	cust := p.id.CustomerID
	var (
		c      platform.Customer
		points []platform.MeteringPoint
		unpaid []platform.Bill
		pre    *platform.PrepaidAccount
	)
	op, err := parallel(r.Context(),
		call{"PrepaidAccount", func(ctx context.Context) error {
			acct, err := s.platform.PrepaidAccount(ctx, cust)
			switch {
			case errors.Is(err, platform.ErrNotFound):
				return nil
			case err != nil:
				return err
			}
			pre = &acct
			return nil
		}},
		call{"Customer", func(ctx context.Context) (err error) { c, err = s.platform.Customer(ctx, cust); return }},
		call{"MeteringPoints", func(ctx context.Context) (err error) { points, err = s.platform.MeteringPoints(ctx, cust); return }},
		call{"Bills", func(ctx context.Context) (err error) {
			unpaid, err = s.platform.Bills(ctx, cust, platform.BillFilter{Status: "unpaid"})
			return
		}},
	)
	if err != nil {
		s.platformFailed(w, r, op, err)
		return
	}
	if c.ID != cust || !sameCustomer(cust, points, func(m platform.MeteringPoint) string { return m.CustomerID }) ||
		!sameCustomer(cust, unpaid, func(b platform.Bill) string { return b.CustomerID }) || pre != nil && pre.CustomerID != cust {
		s.foreignData(w, r, "Me")
		return
	}
	s.writeJSON(w, r, http.StatusOK, api.Me{
		Customer:       c,
		MeteringPoints: nonNil(points),
		Certificate:    api.Certificate{Serial: p.serial, TokenSerial: p.id.TokenSerial, NotAfter: p.cert.NotAfter.UTC()},
		Alerts:         alertsFor(unpaid, s.now()),
		Prepaid:        pre,
	})
}

func (s *Server) consumption(w http.ResponseWriter, r *http.Request, p *principal, _ string) {
	q, err := query(r, "from", "to")
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	from, to, err := consumptionRange(q, s.now())
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	items, err := s.platform.Consumption(r.Context(), p.id.CustomerID, from, to)
	if err != nil {
		s.platformFailed(w, r, "Consumption", err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, api.ConsumptionList{From: from, To: to, Items: nonNil(items)})
}

func (s *Server) bills(w http.ResponseWriter, r *http.Request, p *principal, _ string) {
	q, err := query(r, "status", "from", "to")
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	status, err := billStatus(q)
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	from, to, err := periodRange(q)
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	items, err := s.platform.Bills(r.Context(), p.id.CustomerID, platform.BillFilter{Status: status, From: from, To: to})
	if err != nil {
		s.platformFailed(w, r, "Bills", err)
		return
	}
	if !sameCustomer(p.id.CustomerID, items, func(b platform.Bill) string { return b.CustomerID }) {
		s.foreignData(w, r, "Bills")
		return
	}
	s.writeJSON(w, r, http.StatusOK, api.BillList{Items: nonNil(items)})
}

// bill answers one bill of the customer. A bill of another customer and a
// bill that does not exist take the same path and get the same answer:
// the platform is asked for this customer's bill only (and answers
// ErrBillNotFound for both), and either way the attempt is audited, so
// neither the body nor the work done tells them apart.
func (s *Server) bill(w http.ResponseWriter, r *http.Request, p *principal, id string) {
	if _, err := query(r); err != nil {
		s.badRequest(w, r, err)
		return
	}
	if err := checkBillID(id); err != nil {
		s.badRequest(w, r, err)
		return
	}
	b, err := s.platform.Bill(r.Context(), p.id.CustomerID, id)
	if err == nil && b.CustomerID != p.id.CustomerID {
		// The platform broke its contract; answer as if the bill did not
		// exist rather than show it.
		s.log.Error("the platform answered another customer's bill", zap.String("request_id", stateOf(r).id), zap.String("bill_id", id))
		err = platform.ErrBillNotFound
	}
	if errors.Is(err, platform.ErrBillNotFound) {
		s.refuse(w, r, refusal{status: http.StatusNotFound, code: api.CodeNotFound,
			message: "no such bill", reason: "no bill " + id + " for this customer"})
		return
	}
	if err != nil {
		s.platformFailed(w, r, "Bill", err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, b)
}

func (s *Server) arrears(w http.ResponseWriter, r *http.Request, p *principal, _ string) {
	if _, err := query(r); err != nil {
		s.badRequest(w, r, err)
		return
	}
	a, err := s.platform.Arrears(r.Context(), p.id.CustomerID)
	if err != nil {
		s.platformFailed(w, r, "Arrears", err)
		return
	}
	if a.CustomerID != "" && a.CustomerID != p.id.CustomerID || !sameCustomer(p.id.CustomerID, a.Bills, func(b platform.Bill) string { return b.CustomerID }) {
		s.foreignData(w, r, "Arrears")
		return
	}
	a.CustomerID, a.Bills = p.id.CustomerID, nonNil(a.Bills)
	s.writeJSON(w, r, http.StatusOK, api.ArrearsSummary{Arrears: a, Alerts: alertsFor(a.Bills, s.now())})
}

func (s *Server) paymentHistory(w http.ResponseWriter, r *http.Request, p *principal, _ string) {
	q, err := query(r, "from", "to")
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	from, to, err := dateRange(q)
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	items, err := s.platform.Payments(r.Context(), p.id.CustomerID, from, to)
	if err != nil {
		s.platformFailed(w, r, "Payments", err)
		return
	}
	if !sameCustomer(p.id.CustomerID, items, func(pm platform.Payment) string { return pm.CustomerID }) {
		s.foreignData(w, r, "Payments")
		return
	}
	online := []api.PaymentStatus{}
	if s.records != nil {
		recs, err := s.records.PaymentsForCustomer(r.Context(), p.id.CustomerID)
		if err != nil {
			s.log.Error("reading online payments", zap.String("request_id", stateOf(r).id), zap.Error(err))
			s.fail(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, msgUnavailable)
			return
		}
		for _, rec := range recs {
			if rec.Status != store.PaymentRejected {
				online = append(online, onlineOf(rec))
			}
		}
	}
	s.writeJSON(w, r, http.StatusOK, api.PaymentList{Items: nonNil(items), Online: online})
}

// Limits of a PIN-failure report.
const (
	maxPINFailures    = 100  // entries in one report
	maxFailureCount   = 1000 // failures in a row one entry may claim
	maxHostnameLength = 253
	// pinReportSkew tolerates a client clock slightly ahead of ours.
	pinReportSkew = 10 * time.Minute
)

// pinFailures records, in the audit log, the wrong PINs the client saw on
// this key since its last report. The body is decoded strictly: a field we
// do not know is an error, not something to ignore.
func (s *Server) pinFailures(w http.ResponseWriter, r *http.Request, p *principal, _ string) {
	if _, err := query(r); err != nil {
		s.badRequest(w, r, err)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			s.badRequest(w, r, fmt.Errorf("Content-Type must be application/json, not %q", clip(ct, 64)))
			return
		}
	}
	var rep api.PINFailureReport
	if !s.decodeJSON(w, r, &rep) {
		return
	}
	if err := checkPINReport(rep, s.now()); err != nil {
		s.badRequest(w, r, err)
		return
	}
	st := stateOf(r)
	for _, f := range rep.Failures {
		err := s.audit.append(r.Context(), store.AuditRecord{
			Actor: p.id.TokenSerial, Action: actionPINFailure, Subject: p.id.TokenSerial, Outcome: store.OutcomeRefused,
			Detail: map[string]any{
				"customer_id": p.id.CustomerID, "cert_serial": p.serial,
				"at": f.At.UTC().Format(time.RFC3339), "count": f.Count, "locked": f.Locked,
				"hostname": f.Hostname, "remote": st.remote, "request_id": st.id,
			},
		})
		if err != nil {
			// The client keeps the report and sends it again: an entry
			// twice is better than none.
			s.log.Error("writing the audit log", zap.String("request_id", st.id), zap.String("action", actionPINFailure), zap.Error(err))
			s.fail(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, "service unavailable: the report could not be recorded; please send it again later")
			return
		}
	}
	s.log.Info("wrong PINs reported", zap.String("request_id", st.id), zap.String("customer_id", p.id.CustomerID),
		zap.String("token_serial", p.id.TokenSerial), zap.Int("reports", len(rep.Failures)))
	w.WriteHeader(http.StatusNoContent)
}

func checkPINReport(rep api.PINFailureReport, now time.Time) error {
	if len(rep.Failures) == 0 {
		return badParam("failures", "empty; report at least one failure")
	}
	if len(rep.Failures) > maxPINFailures {
		return badParam("failures", "%d entries; at most %d per report", len(rep.Failures), maxPINFailures)
	}
	for i, f := range rep.Failures {
		name := func(field string) string { return fmt.Sprintf("failures[%d].%s", i, field) }
		switch {
		case f.At.IsZero():
			return badParam(name("at"), "required")
		case f.At.After(now.Add(pinReportSkew)):
			return badParam(name("at"), "%s is in the future", f.At.UTC().Format(time.RFC3339))
		case f.Count < 1 || f.Count > maxFailureCount:
			return badParam(name("count"), "must be between 1 and %d, got %d", maxFailureCount, f.Count)
		case len(f.Hostname) > maxHostnameLength:
			return badParam(name("hostname"), "longer than %d characters", maxHostnameLength)
		case !printable(f.Hostname):
			return badParam(name("hostname"), "must be printable text")
		}
	}
	return nil
}

func printable(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f || c == '\uFFFD' {
			return false
		}
	}
	return true
}

// decodeJSON reads a body of at most api.MaxBodyBytes holding exactly one
// JSON value with known fields only.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.ContentLength > api.MaxBodyBytes {
		s.tooLarge(w, r, r.ContentLength)
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		s.tooLarge(w, r, -1)
		return false
	case err != nil:
		// The client went away or was too slow (ReadTimeout).
		s.badRequest(w, r, fmt.Errorf("reading the body: %w", err))
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		s.badRequest(w, r, fmt.Errorf("malformed JSON body: %s", clip(jsonProblem(err), 200)))
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		s.badRequest(w, r, errors.New("malformed JSON body: data after the JSON value"))
		return false
	}
	return true
}

// jsonProblem describes a decoding error without echoing the body.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
	case errors.Is(err, io.EOF):
		return "empty body"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	}
	// "json: unknown field \"x\"" and the like.
	return err.Error()
}

func (s *Server) tooLarge(w http.ResponseWriter, r *http.Request, n int64) {
	reason := fmt.Sprintf("body over %d bytes", api.MaxBodyBytes)
	if n > 0 {
		reason = fmt.Sprintf("body of %d bytes, over %d", n, api.MaxBodyBytes)
	}
	s.refuse(w, r, refusal{status: http.StatusRequestEntityTooLarge, code: api.CodePayloadTooLarge,
		message: fmt.Sprintf("request body too large: at most %d bytes", api.MaxBodyBytes), reason: reason})
}

// badRequest refuses malformed input, audited: it may be a probe as well
// as a client bug.
func (s *Server) badRequest(w http.ResponseWriter, r *http.Request, err error) {
	msg := err.Error()
	s.refuse(w, r, refusal{status: http.StatusBadRequest, code: api.CodeInvalidRequest, message: msg, reason: msg})
}

// foreignData refuses to pass on platform data about another customer.
func (s *Server) foreignData(w http.ResponseWriter, r *http.Request, op string) {
	s.log.Error("the platform answered another customer's data; withheld", zap.String("request_id", stateOf(r).id), zap.String("op", op))
	s.fail(w, r, http.StatusInternalServerError, api.CodeInternal, msgInternal)
}

func sameCustomer[T any](customerID string, items []T, of func(T) string) bool {
	for _, it := range items {
		if of(it) != customerID {
			return false
		}
	}
	return true
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// call is one platform call of a parallel batch.
type call struct {
	op string
	fn func(ctx context.Context) error
}

// parallel runs calls at once and returns the first failure in the order
// given (with its op), cancelling the others.
func parallel(ctx context.Context, calls ...call) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Go(func() {
			if errs[i] = c.fn(ctx); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	// A call cancelled because another failed reports context.Canceled;
	// report the failure that caused it.
	for i, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return calls[i].op, err
		}
	}
	for i, err := range errs {
		if err != nil {
			return calls[i].op, err
		}
	}
	return "", nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"go.uber.org/zap/zaptest"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/workflows"
)

// fakeLoads is the load saga as the gateway sees it.
type fakeLoads struct {
	mu       sync.Mutex
	started  []workflows.LoadInput
	reports  map[string][]workflows.ReportInput // by workflow ID
	startErr error
	// running lists the workflows that take reports; others are closed.
	running map[string]bool
}

func (f *fakeLoads) Start(_ context.Context, in workflows.LoadInput) (workflows.AllowAnswer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, in)
	if f.startErr != nil {
		return workflows.AllowAnswer{}, f.startErr
	}
	return workflows.AllowAnswer{WorkflowID: workflows.LoadWorkflowID(in.TokenSerial, in.Sequence), LoadID: protocol.LoadID(in.TokenSerial, in.Sequence),
		Sequence: in.Sequence, Amount: in.Amount, NewBalance: in.Amount, Allow: []byte("allow"), Signature: []byte("sig"),
		Chain: [][]byte{[]byte("signer")}, Expires: fakeToday.Add(2 * time.Minute), Status: workflows.LoadStatusAwaitingReceipt}, nil
}

func (f *fakeLoads) Report(_ context.Context, id string, in workflows.ReportInput) (workflows.LoadOutcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.running[id] {
		return workflows.LoadOutcome{}, ErrLoadClosed
	}
	if f.reports == nil {
		f.reports = map[string][]workflows.ReportInput{}
	}
	f.reports[id] = append(f.reports[id], in)
	return workflows.LoadOutcome{WorkflowID: id, LoadID: "load-x", Status: "confirmed", Final: true}, nil
}

// fakeLoadRecords holds load records by workflow ID.
type fakeLoadRecords struct{ loads map[string]store.Load }

func (f fakeLoadRecords) OpenLoads(_ context.Context, token string) ([]store.Load, error) {
	var out []store.Load
	for _, l := range f.loads {
		if l.TokenSerial == token && l.Status.Open() {
			out = append(out, l)
		}
	}
	return out, nil
}

func (f fakeLoadRecords) LoadByWorkflowID(_ context.Context, id string) (store.Load, error) {
	if l, ok := f.loads[id]; ok {
		return l, nil
	}
	return store.Load{}, store.ErrNotFound
}

func (f fakeLoadRecords) LastConfirmedLoad(_ context.Context, token string) (store.Load, error) {
	var best *store.Load
	for _, l := range f.loads {
		if l.TokenSerial == token && l.Status == store.LoadConfirmed && (best == nil || l.Sequence > best.Sequence) {
			best = &l
		}
	}
	if best == nil {
		return store.Load{}, store.ErrNotFound
	}
	return *best, nil
}

func (f fakeLoadRecords) LoadsForCustomer(_ context.Context, customer string) ([]store.Load, error) {
	var out []store.Load
	for _, l := range f.loads {
		if l.CustomerID == customer {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

type loadEnv struct {
	*env
	loads *fakeLoads
	recs  fakeLoadRecords
}

func newLoadEnv(t *testing.T) *loadEnv {
	e := &loadEnv{env: newEnv(t), loads: &fakeLoads{running: map[string]bool{}}, recs: fakeLoadRecords{loads: map[string]store.Load{}}}
	e.srv.EnableLoads(e.loads, e.recs, workflows.LoadTiming{AllowValidity: time.Minute})
	return e
}

// aliceRequest is alice's key's signed load request of sequence 3.
func (e *loadEnv) aliceRequest(edit func(*protocol.LoadRequest)) api.LoadRequest {
	e.t.Helper()
	r := protocol.LoadRequest{
		LoadHeader: protocol.LoadHeader{Version: 1, Type: protocol.TypeLoadRequest, TokenSerial: aliceToken, CertSerial: pki.SerialHex(e.alice.SerialNumber),
			KeyVersion: 1, Algorithm: protocol.AlgECDSAP256SHA256, Nonce: protocol.NewNonce(16), Timestamp: fakeToday.UTC().Truncate(time.Second), Sequence: 3},
		CustomerID: "C1001", Account: "622-1001", WalletBalance: 100, WalletSequence: 2, WalletLastLoad: protocol.LoadID(aliceToken, 2),
		Amount: 500_00, Currency: "CNY",
	}
	if edit != nil {
		edit(&r)
	}
	enc, err := protocol.EncodeLoadRequest(r)
	if err != nil {
		e.t.Fatal(err)
	}
	sig, err := protocol.Sign(testKey(), r.Algorithm, protocol.LoadRequestDigest(enc))
	if err != nil {
		e.t.Fatal(err)
	}
	return api.LoadRequest{Request: enc, Signature: sig}
}

func (e *loadEnv) aliceReport(kind protocol.ReportKind, loadSeq uint64) api.LoadReport {
	e.t.Helper()
	r := protocol.LoadReport{
		LoadHeader: protocol.LoadHeader{Version: 1, Type: protocol.TypeLoadReport, TokenSerial: aliceToken, CertSerial: pki.SerialHex(e.alice.SerialNumber),
			KeyVersion: 1, Algorithm: protocol.AlgECDSAP256SHA256, Nonce: protocol.NewNonce(16), Timestamp: fakeToday.UTC().Truncate(time.Second)},
		Kind: kind, Attempt: loadSeq,
	}
	if kind == protocol.ReportError {
		r.LoadSequence, r.LoadID, r.ErrorCode, r.ErrorText = loadSeq, protocol.LoadID(aliceToken, loadSeq), protocol.ErrAllowExpired, "expired"
	}
	enc, err := protocol.EncodeLoadReport(r)
	if err != nil {
		e.t.Fatal(err)
	}
	sig, _ := protocol.Sign(testKey(), r.Algorithm, protocol.LoadReportDigest(enc))
	return api.LoadReport{Report: enc, Signature: sig}
}

func (e *loadEnv) post(path string, body any) (int, []byte, string) {
	e.t.Helper()
	b, _ := json.Marshal(body)
	w := e.do(http.MethodPost, path, b, e.alice)
	var eb api.ErrorBody
	json.Unmarshal(w.Body.Bytes(), &eb)
	return w.Code, w.Body.Bytes(), eb.Error.Code
}

func TestStartLoad(t *testing.T) {
	e := newLoadEnv(t)
	req := e.aliceRequest(nil)
	b, _ := json.Marshal(req)
	w := e.do(http.MethodPost, api.PathLoads, b, e.alice)
	wantOK(t, w)
	got := decode[api.LoadAllow](t, w)
	if got.LoadID != protocol.LoadID(aliceToken, 3) || got.Sequence != 3 || got.Amount != 500_00 || string(got.Allow) != "allow" || len(got.Chain) != 1 {
		t.Fatalf("allow %+v", got)
	}
	in := e.loads.started[0]
	if in.CustomerID != "C1001" || in.TokenSerial != aliceToken || in.CertSerial != pki.SerialHex(e.alice.SerialNumber) || in.Sequence != 3 ||
		in.Timing.AllowValidity != time.Minute || string(in.Request) != string(req.Request) {
		t.Fatalf("started %+v", in)
	}
}

func TestStartLoadRefusals(t *testing.T) {
	e := newLoadEnv(t)
	good := e.aliceRequest(nil)
	tampered := e.aliceRequest(nil)
	tampered.Request[len(tampered.Request)-5] ^= 1
	unsigned := e.aliceRequest(nil)
	unsigned.Signature = nil
	for _, c := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"tampered", tampered, http.StatusBadRequest, api.CodeInvalidRequest},
		{"unsigned", unsigned, http.StatusBadRequest, api.CodeInvalidRequest},
		{"garbage", api.LoadRequest{Request: []byte{1, 2, 3}, Signature: []byte{1}}, http.StatusBadRequest, api.CodeInvalidRequest},
		{"another customer", e.aliceRequest(func(r *protocol.LoadRequest) { r.CustomerID = "C2002" }), http.StatusForbidden, api.CodeInvalidRequest},
		{"another key", e.aliceRequest(func(r *protocol.LoadRequest) {
			r.TokenSerial, r.WalletLastLoad = bobToken, protocol.LoadID(bobToken, 2)
		}), http.StatusForbidden, api.CodeInvalidRequest},
		{"unknown field", map[string]any{"request": good.Request, "signature": good.Signature, "amount": 1}, http.StatusBadRequest, api.CodeInvalidRequest},
	} {
		status, body, code := e.post(api.PathLoads, c.body)
		if status != c.status || code != c.code {
			t.Errorf("%s: %d %s (%s)", c.name, status, code, body)
		}
	}
	if len(e.loads.started) != 0 {
		t.Fatalf("a refused request started a load: %+v", e.loads.started)
	}
	if n := len(e.aud.refusals(api.CodeInvalidRequest)); n != 6 {
		t.Fatalf("%d refusals audited, want 6", n)
	}
	big := make([]byte, api.MaxBodyBytes+10)
	w := e.do(http.MethodPost, api.PathLoads, big, e.alice)
	wantError(t, w, http.StatusRequestEntityTooLarge, api.CodePayloadTooLarge)
	w = e.do(http.MethodPut, api.PathLoads, nil, e.alice)
	wantError(t, w, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed)

	// What the saga refuses, mapped to codes.
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{temporal.NewNonRetryableApplicationError("load 2 is still being settled", activities.ErrTypeLoadPending, nil), http.StatusConflict, api.CodeLoadPending},
		{temporal.NewNonRetryableApplicationError("sequence 3 was used before", activities.ErrTypeLoadReplay, nil), http.StatusConflict, api.CodeSequenceUsed},
		{serviceerror.NewWorkflowExecutionAlreadyStarted("closed", "", ""), http.StatusConflict, api.CodeSequenceUsed},
		{temporal.NewNonRetryableApplicationError("holds less", activities.ErrTypeDebitRefused, nil), http.StatusUnprocessableEntity, api.CodeLoadRefused},
		{temporal.NewNonRetryableApplicationError("wallet mismatch", activities.ErrTypeWalletMismatch, nil), http.StatusUnprocessableEntity, api.CodeLoadRefused},
		{temporal.NewNonRetryableApplicationError("unbound", workflows.ErrTypeTokenUnbound, nil), http.StatusForbidden, api.CodeNotBound},
		{temporal.NewNonRetryableApplicationError("later", workflows.ErrTypeUnavailable, nil), http.StatusServiceUnavailable, api.CodeUnavailable},
		{errors.New("temporal down"), http.StatusServiceUnavailable, api.CodeUnavailable},
	} {
		e.loads.startErr = c.err
		status, body, code := e.post(api.PathLoads, e.aliceRequest(nil))
		if status != c.status || code != c.code {
			t.Errorf("%v: %d %s (%s)", c.err, status, code, body)
		}
	}
}

func TestLoadReports(t *testing.T) {
	e := newLoadEnv(t)
	open := workflows.LoadWorkflowID(aliceToken, 3)
	nb := int64(900)
	e.recs.loads[open] = store.Load{LoadID: "load-3", WorkflowID: open, TokenSerial: aliceToken, Sequence: 3, Status: store.LoadAllowed}
	e.recs.loads[workflows.LoadWorkflowID(aliceToken, 2)] = store.Load{LoadID: protocol.LoadID(aliceToken, 2), WorkflowID: workflows.LoadWorkflowID(aliceToken, 2),
		TokenSerial: aliceToken, Sequence: 2, Status: store.LoadConfirmed, Amount: 800, NewBalance: &nb}
	e.loads.running[open] = true

	// A state report goes to the load in flight.
	status, body, _ := e.post(api.PathLoadReports, e.aliceReport(protocol.ReportState, 0))
	if status != http.StatusOK {
		t.Fatalf("state report: %d %s", status, body)
	}
	var ans api.LoadReportAnswer
	json.Unmarshal(body, &ans)
	if len(ans.Loads) != 1 || ans.Loads[0].Status != "confirmed" || ans.Confirmed == nil || ans.Confirmed.Sequence != 2 || ans.Confirmed.Balance != money.Fen(900) {
		t.Fatalf("answer %+v", ans)
	}
	got := e.loads.reports[open]
	if len(got) != 1 || got[0].CustomerID != "C1001" || got[0].CertSerial != pki.SerialHex(e.alice.SerialNumber) {
		t.Fatalf("delivered %+v", got)
	}
	// An error report on a closed load is answered from its record.
	status, body, _ = e.post(api.PathLoadReports, e.aliceReport(protocol.ReportError, 2))
	json.Unmarshal(body, &ans)
	if status != http.StatusOK || len(ans.Loads) != 1 || ans.Loads[0].Status != "confirmed" || !ans.Loads[0].Final {
		t.Fatalf("report on a closed load: %d %s", status, body)
	}
	// On a load that never existed: not found.
	status, _, code := e.post(api.PathLoadReports, e.aliceReport(protocol.ReportError, 9))
	if status != http.StatusNotFound || code != api.CodeNotFound {
		t.Fatalf("report on no load: %d %s", status, code)
	}
	// Tampered: refused and audited, delivered nowhere.
	bad := e.aliceReport(protocol.ReportState, 0)
	bad.Report[len(bad.Report)-3] ^= 1
	before := len(e.aud.refusals(api.CodeInvalidRequest))
	status, _, code = e.post(api.PathLoadReports, bad)
	if status != http.StatusBadRequest || code != api.CodeInvalidRequest || len(e.aud.refusals(api.CodeInvalidRequest)) != before+1 || len(e.loads.reports[open]) != 1 {
		t.Fatalf("tampered report: %d %s", status, code)
	}
}

func TestLoadsNotEnabled(t *testing.T) {
	e := newEnv(t)
	b, _ := json.Marshal(api.LoadRequest{Request: []byte{1}, Signature: []byte{1}})
	w := e.do(http.MethodPost, api.PathLoads, b, e.alice)
	wantError(t, w, http.StatusServiceUnavailable, api.CodeUnavailable)
	if !strings.Contains(w.Body.String(), "not available") {
		t.Fatal(w.Body.String())
	}
}

func TestLoadHistory(t *testing.T) {
	e := newLoadEnv(t)
	at := fakeToday.UTC()
	confirmed, refunded := at.Add(time.Minute), at.Add(3*time.Minute)
	e.recs.loads["a"] = store.Load{LoadID: protocol.LoadID(aliceToken, 1), CustomerID: "C1001", TokenSerial: aliceToken, Sequence: 1, Amount: 300_00,
		Status: store.LoadConfirmed, ConfirmedBy: store.ConfirmedByReceipt, ConfirmedAt: &confirmed, CreatedAt: at}
	e.recs.loads["b"] = store.Load{LoadID: protocol.LoadID(aliceToken, 2), CustomerID: "C1001", TokenSerial: aliceToken, Sequence: 2, Amount: 50_00,
		Status: store.LoadRefunded, Reason: "the USB key refused the load", RefundedAt: &refunded, CreatedAt: at.Add(2 * time.Minute)}
	e.recs.loads["c"] = store.Load{LoadID: "someone-else", CustomerID: "C2002", TokenSerial: "other", Sequence: 1, Amount: 1, Status: store.LoadConfirmed, CreatedAt: at}
	w := e.do(http.MethodGet, api.PathLoads, nil, e.alice)
	wantOK(t, w)
	got := decode[api.LoadList](t, w)
	if len(got.Items) != 2 {
		t.Fatalf("loads %+v, want alice's two", got.Items)
	}
	newest, oldest := got.Items[0], got.Items[1]
	if newest.Sequence != 2 || newest.Status != "refunded" || newest.Reason == "" || newest.Settled == nil || !newest.Settled.Equal(refunded) || newest.Amount != 50_00 {
		t.Errorf("newest %+v", newest)
	}
	if oldest.Sequence != 1 || oldest.Status != "confirmed" || oldest.ConfirmedBy != "receipt" || oldest.Settled == nil || !oldest.Settled.Equal(confirmed) {
		t.Errorf("oldest %+v", oldest)
	}
}

// crlVerifier is a verifier that hands out its CRLs, as *pki.Verifier does.
type crlVerifier struct {
	*fakeVerifier
	crls [][]byte
}

func (v crlVerifier) CRLs() [][]byte { return v.crls }

func TestCRLs(t *testing.T) {
	e := newEnv(t)
	// A verifier without CRLs to hand out: unavailable, not an empty list
	// a client could mistake for "nothing revoked".
	wantError(t, e.get(api.PathCRLs, e.alice), http.StatusServiceUnavailable, api.CodeUnavailable)

	e.srv = NewServer(Deps{Platform: e.plat, Verifier: crlVerifier{e.ver, [][]byte{[]byte("root crl"), []byte("services crl")}},
		Bindings: e.bind, Auditor: e.aud, Log: zaptest.NewLogger(t)}, Options{RatePerSecond: 1000, RateBurst: 1000, RequestTimeout: 5 * time.Second, Now: e.clock.now})
	w := e.get(api.PathCRLs, e.alice)
	wantOK(t, w)
	if got := decode[api.CRLList](t, w); len(got.CRLs) != 2 || string(got.CRLs[1]) != "services crl" {
		t.Fatalf("CRLs %q", got.CRLs)
	}
}

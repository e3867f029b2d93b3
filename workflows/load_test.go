package workflows

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/store"
)

var loadIn = LoadInput{CustomerID: "C1", TokenSerial: "T1", CertSerial: "ab01", Sequence: 5, Amount: 500_00,
	Request: []byte("signed request"), Signature: []byte("sig"), Timing: LoadTiming{AllowValidity: 2 * time.Minute, ReceiptGrace: 30 * time.Second}}

var testStateSHA = sha256.Sum256([]byte("new wallet state"))

// loadWorld is GridPay's records and the platform as the mocked load
// activities see them.
type loadWorld struct {
	t   *testing.T
	env *testsuite.TestWorkflowEnvironment

	acceptErr error
	// debit answers attempt n (from 1).
	debit   func(n int) error
	signErr error

	mu        sync.Mutex
	calls     []string
	debits    int
	refunds   []string // reasons
	refundAt  []time.Duration
	rejects   []string
	confirms  []activities.ConfirmRequest
	unbound   []activities.UnboundNote
	operator  []activities.OperatorNote
	attrs     map[string]any
	allowSpec *activities.AllowSpec
}

func newLoadWorld(t *testing.T) *loadWorld {
	var s testsuite.WorkflowTestSuite
	w := &loadWorld{t: t, env: s.NewTestWorkflowEnvironment(), attrs: map[string]any{}}
	env := w.env
	env.SetStartTime(t0)
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: LoadWorkflowID("T1", 5)})
	env.RegisterActivity(&activities.Loads{})
	note := func(name string) func() {
		w.mu.Lock()
		w.calls = append(w.calls, name)
		return w.mu.Unlock
	}
	env.OnActivity(loads.AcceptLoad, mock.Anything, mock.Anything).Return(func(_ context.Context, c activities.LoadCheck) (activities.AcceptedLoad, error) {
		defer note("AcceptLoad")()
		if c.Sequence != 5 || string(c.Request) != "signed request" {
			t.Errorf("accept %+v", c)
		}
		return activities.AcceptedLoad{LoadID: "load-T1-5", Sequence: 5, Amount: 500_00, WalletBalance: 100_00, WalletSequence: 4}, w.acceptErr
	})
	env.OnActivity(loads.DebitAccount, mock.Anything).Return(func(context.Context) (store.Load, error) {
		defer note("DebitAccount")()
		w.debits++
		if w.debit != nil {
			return store.Load{}, w.debit(w.debits)
		}
		return store.Load{Status: store.LoadDebited}, nil
	})
	env.OnActivity(loads.RejectLoad, mock.Anything, mock.Anything).Return(func(_ context.Context, why string) (store.Load, error) {
		defer note("RejectLoad")()
		w.rejects = append(w.rejects, why)
		return store.Load{Status: store.LoadRejected}, nil
	})
	env.OnActivity(loads.SignAllow, mock.Anything, mock.Anything).Return(func(_ context.Context, spec activities.AllowSpec) (activities.SignedAllow, error) {
		defer note("SignAllow")()
		w.allowSpec = &spec
		if w.signErr != nil {
			return activities.SignedAllow{}, w.signErr
		}
		return activities.SignedAllow{Allow: []byte("allow"), Signature: []byte("allow sig"), State: []byte("new wallet state"),
			StateSignature: []byte("state sig"), StateSHA256: testStateSHA[:], Chain: [][]byte{[]byte("signer"), []byte("services ca")},
			Expires: spec.Expires, NewBalance: 600_00}, nil
	})
	// The mocked verification reads the report as JSON: the test writes
	// what the key's report says.
	env.OnActivity(loads.VerifyReport, mock.Anything, mock.Anything).Return(func(_ context.Context, c activities.ReportCheck) (activities.VerifiedReport, error) {
		defer note("VerifyReport")()
		if string(c.Signature) == "forged" {
			return activities.VerifiedReport{}, temporal.NewNonRetryableApplicationError("load report: signature does not verify", activities.ErrTypeBadLoadReport, nil)
		}
		var v activities.VerifiedReport
		if err := json.Unmarshal(c.Report, &v); err != nil {
			t.Fatal(err)
		}
		v.At, v.SHA256 = env.Now(), []byte("report hash")
		return v, nil
	})
	env.OnActivity(loads.ConfirmLoad, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.ConfirmRequest) (store.Load, error) {
		defer note("ConfirmLoad")()
		w.confirms = append(w.confirms, r)
		return store.Load{Status: store.LoadConfirmed}, nil
	})
	env.OnActivity(loads.RefundLoad, mock.Anything, mock.Anything).Return(func(_ context.Context, why string) (store.Load, error) {
		defer note("RefundLoad")()
		w.refunds = append(w.refunds, why)
		w.refundAt = append(w.refundAt, env.Now().Sub(t0))
		return store.Load{Status: store.LoadRefunded}, nil
	})
	env.OnActivity(loads.NoteLoadTokenUnbound, mock.Anything, mock.Anything).Return(func(_ context.Context, n activities.UnboundNote) error {
		defer note("NoteLoadTokenUnbound")()
		w.unbound = append(w.unbound, n)
		return nil
	})
	env.OnActivity(loads.NoteOperatorSettlement, mock.Anything, mock.Anything).Return(func(_ context.Context, n activities.OperatorNote) error {
		defer note("NoteOperatorSettlement")()
		w.operator = append(w.operator, n)
		return nil
	})
	env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		sa := args.Get(0).(temporal.SearchAttributes)
		for k, v := range sa.GetUntypedValues() {
			w.attrs[k.GetName()] = v
		}
	}).Return(nil)
	return w
}

func (w *loadWorld) at(d time.Duration, f func()) { w.env.RegisterDelayedCallback(f, d) }

// allow asks for the allow at d.
func (w *loadWorld) allow(d time.Duration, u *updater, req AllowRequest) {
	w.at(d, func() { w.env.UpdateWorkflow(UpdateAllow, fmt.Sprint("allow-", d), u, req) })
}

// report delivers what the key reports at d.
func (w *loadWorld) report(d time.Duration, u *updater, v activities.VerifiedReport) {
	b, _ := json.Marshal(v)
	w.at(d, func() {
		w.env.UpdateWorkflow(UpdateReport, fmt.Sprint("report-", d), u, ReportInput{CustomerID: "C1", TokenSerial: "T1", CertSerial: "ab01", Report: b, Signature: []byte("sig")})
	})
}

func receipt() activities.VerifiedReport {
	return activities.VerifiedReport{Kind: activities.ReportReceipt, LoadSequence: 5, LoadID: "load-T1-5", WalletSequence: 5,
		WalletLastLoad: "load-T1-5", WalletBalance: 600_00, Attempt: 5, StateSHA256: testStateSHA[:]}
}

func stateAt(seq uint64) activities.VerifiedReport {
	return activities.VerifiedReport{Kind: activities.ReportState, WalletSequence: seq, WalletLastLoad: fmt.Sprintf("load-T1-%d", seq),
		WalletBalance: 100_00, Attempt: 5}
}

func (w *loadWorld) run(in LoadInput) LoadState {
	w.t.Helper()
	w.env.ExecuteWorkflow(Load, in)
	if !w.env.IsWorkflowCompleted() {
		w.t.Fatal("workflow did not complete")
	}
	if err := w.env.GetWorkflowError(); err != nil {
		w.t.Fatalf("workflow failed: %v", err)
	}
	var st LoadState
	if err := w.env.GetWorkflowResult(&st); err != nil {
		w.t.Fatal(err)
	}
	if !st.Final {
		w.t.Fatalf("a completed load is not final: %+v", st)
	}
	return st
}

// assertMoney: a debit ends as exactly one of confirmed or refunded; no
// debit, neither.
func (w *loadWorld) assertMoney(st LoadState) {
	w.t.Helper()
	debited := slices.Contains(w.calls, "DebitAccount") && (w.debit == nil || w.debitSucceeded())
	switch {
	case len(w.confirms) > 0 && len(w.refunds) > 0:
		w.t.Fatalf("confirmed and refunded: %v", w.calls)
	case len(w.confirms) > 1 || len(w.refunds) > 1:
		w.t.Fatalf("confirmed %d, refunded %d times", len(w.confirms), len(w.refunds))
	case debited && len(w.confirms)+len(w.refunds) != 1:
		w.t.Fatalf("debited but neither confirmed nor refunded (%s): %v", st.Status, w.calls)
	case !debited && len(w.confirms)+len(w.refunds) != 0:
		w.t.Fatalf("confirmed or refunded without a debit: %v", w.calls)
	}
}

func (w *loadWorld) debitSucceeded() bool {
	for n := 1; n <= w.debits; n++ {
		if w.debit(n) == nil {
			return true
		}
	}
	return false
}

func TestLoadHappyPathByReceipt(t *testing.T) {
	w := newLoadWorld(t)
	var a, r updater
	w.allow(0, &a, loadIn.AllowRequest())
	var during LoadState
	w.at(10*time.Second, func() {
		v, err := w.env.QueryWorkflow(QueryStatus)
		if err != nil {
			t.Fatal(err)
		}
		v.Get(&during)
	})
	w.report(20*time.Second, &r, receipt())
	st := w.run(loadIn)

	ans, ok := a.result.(AllowAnswer)
	if !ok || a.err != nil || string(ans.Allow) != "allow" || ans.Sequence != 5 || ans.LoadID != "load-T1-5" || ans.Amount != 500_00 ||
		ans.NewBalance != 600_00 || !ans.Expires.Equal(t0.Add(2*time.Minute)) || len(ans.Chain) != 2 || ans.Status != LoadStatusAwaitingReceipt {
		t.Fatalf("allow update: %+v %v", a.result, a.err)
	}
	if during.Status != LoadStatusAwaitingReceipt || during.Expires == nil {
		t.Fatalf("status while waiting: %+v", during)
	}
	out, ok := r.result.(LoadOutcome)
	if !ok || r.err != nil || out.Status != "confirmed" || !out.Final {
		t.Fatalf("receipt update: %+v %v", r.result, r.err)
	}
	if st.Status != "confirmed" || st.ConfirmedBy != store.ConfirmedByReceipt || st.NewBalance != 600_00 {
		t.Fatalf("state %+v", st)
	}
	want := []string{"AcceptLoad", "DebitAccount", "SignAllow", "VerifyReport", "ConfirmLoad"}
	if !slices.Equal(w.calls, want) {
		t.Fatalf("calls %v", w.calls)
	}
	if w.allowSpec == nil || !w.allowSpec.HostTime.Equal(t0) || !w.allowSpec.Expires.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("allow spec %+v", w.allowSpec)
	}
	if w.attrs["OperationKind"] != "load" || w.attrs["CustomerID"] != "C1" || w.attrs["TokenSerial"] != "T1" || w.attrs["OperationStatus"] != "confirmed" {
		t.Fatalf("search attributes %v", w.attrs)
	}
	w.assertMoney(st)
}

func TestLoadRejectedBeforeTheDebit(t *testing.T) {
	for _, c := range []struct {
		name, typ string
		err       error
	}{
		{"bad signature", activities.ErrTypeBadLoadRequest, temporal.NewNonRetryableApplicationError("load request: signature does not verify", activities.ErrTypeBadLoadRequest, nil)},
		{"replayed sequence", activities.ErrTypeLoadReplay, temporal.NewNonRetryableApplicationError("sequence 5 was used before", activities.ErrTypeLoadReplay, nil)},
		{"pending", activities.ErrTypeLoadPending, temporal.NewNonRetryableApplicationError("load 4 is still being settled", activities.ErrTypeLoadPending, nil)},
		{"unavailable", ErrTypeUnavailable, errors.New("database down")},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newLoadWorld(t)
			w.acceptErr = c.err
			var a updater
			w.allow(0, &a, loadIn.AllowRequest())
			st := w.run(loadIn)
			var app *temporal.ApplicationError
			if !errors.As(a.err, &app) || app.Type() != c.typ {
				t.Fatalf("allow update: %v", a.err)
			}
			if st.Status != "rejected" || st.ErrorType != c.typ || st.Reason == "" || slices.Contains(w.calls, "DebitAccount") || len(w.rejects) != 1 {
				t.Fatalf("state %+v, calls %v", st, w.calls)
			}
			w.assertMoney(st)
		})
	}
}

func TestLoadDebitRefusedAndRetried(t *testing.T) {
	w := newLoadWorld(t)
	w.debit = func(int) error {
		return temporal.NewNonRetryableApplicationError("the platform refused the debit: your prepaid account holds less than ¥500.00", activities.ErrTypeDebitRefused, nil)
	}
	var a updater
	w.allow(0, &a, loadIn.AllowRequest())
	st := w.run(loadIn)
	var app *temporal.ApplicationError
	if !errors.As(a.err, &app) || app.Type() != activities.ErrTypeDebitRefused || !strings.Contains(app.Message(), "holds less") {
		t.Fatalf("allow update: %v", a.err)
	}
	if st.Status != "rejected" || len(w.rejects) != 1 || slices.Contains(w.calls, "SignAllow") {
		t.Fatalf("state %+v, calls %v", st, w.calls)
	}

	// The platform down for several windows: the debit is tried for as
	// long as it takes, then the load goes on.
	w = newLoadWorld(t)
	in := loadIn
	in.Timing.MoneyWindow, in.Timing.RetryMax = time.Minute, 10*time.Second
	w.debit = func(n int) error {
		if n < 20 {
			return errors.New("platform unavailable")
		}
		return nil
	}
	var r updater
	w.allow(0, &a, in.AllowRequest())
	w.report(time.Hour, &r, stateAt(5))
	st = w.run(in)
	if st.Status != "confirmed" || w.debits != 20 || st.ConfirmedBy != store.ConfirmedByContact {
		t.Fatalf("state %+v after %d debit attempts", st, w.debits)
	}
	w.assertMoney(st)
}

// The HSM cannot sign: no allow ever existed, so the debit goes back at
// once and the customer is told.
func TestLoadSigningFailsRefundsAtOnce(t *testing.T) {
	w := newLoadWorld(t)
	w.signErr = temporal.NewApplicationError("load signer key missing", activities.ErrTypeLoadSignerUnavailable)
	var a updater
	w.allow(0, &a, loadIn.AllowRequest())
	st := w.run(loadIn)
	var app *temporal.ApplicationError
	if !errors.As(a.err, &app) || app.Type() != ErrTypeUnavailable || !strings.Contains(app.Message(), "credited back") {
		t.Fatalf("allow update: %v", a.err)
	}
	if st.Status != "refunded" || len(w.refunds) != 1 || w.refundAt[0] > 2*time.Minute {
		t.Fatalf("state %+v, refunds %v at %v", st, w.refunds, w.refundAt)
	}
	w.assertMoney(st)
}

// The key reports an error (a tampered or late allow): refunded, but only
// once the allow has expired.
func TestLoadErrorReportRefundsAtExpiry(t *testing.T) {
	w := newLoadWorld(t)
	var a, r updater
	w.allow(0, &a, loadIn.AllowRequest())
	e := activities.VerifiedReport{Kind: activities.ReportError, LoadSequence: 5, LoadID: "load-T1-5", WalletSequence: 4, Attempt: 5,
		ErrorCode: 1, ErrorText: "the allow's signature does not verify"}
	w.report(10*time.Second, &r, e)
	st := w.run(loadIn)
	out, _ := r.result.(LoadOutcome)
	if r.err != nil || out.Status != LoadStatusCancelling || out.Final || !strings.Contains(out.Reason, "signature does not verify") {
		t.Fatalf("error report update: %+v %v", r.result, r.err)
	}
	if st.Status != "refunded" || len(w.refunds) != 1 || w.refundAt[0] < 2*time.Minute || !strings.Contains(st.Reason, "refused the load") {
		t.Fatalf("state %+v, refunds at %v", st, w.refundAt)
	}
	w.assertMoney(st)
}

// A receipt that verifies but carries another wallet state than the one
// GridPay signed: not applied, refunded at expiry.
func TestLoadBadReceiptRefunds(t *testing.T) {
	w := newLoadWorld(t)
	var a, r updater
	w.allow(0, &a, loadIn.AllowRequest())
	bad := receipt()
	bad.StateSHA256 = []byte("another state")
	w.report(5*time.Second, &r, bad)
	st := w.run(loadIn)
	if st.Status != "refunded" || !strings.Contains(st.Reason, "does not show the wallet GridPay signed") || w.refundAt[0] < 2*time.Minute {
		t.Fatalf("state %+v at %v", st, w.refundAt)
	}
	w.assertMoney(st)
}

// The key's good receipt after an error report, before the expiry: it
// took the load after all; confirmed, never refunded.
func TestLoadReceiptAfterErrorReportConfirms(t *testing.T) {
	w := newLoadWorld(t)
	var a, r1, r2 updater
	w.allow(0, &a, loadIn.AllowRequest())
	w.report(5*time.Second, &r1, activities.VerifiedReport{Kind: activities.ReportError, LoadSequence: 5, LoadID: "load-T1-5", WalletSequence: 4, Attempt: 5, ErrorCode: 6})
	w.report(30*time.Second, &r2, receipt())
	st := w.run(loadIn)
	if st.Status != "confirmed" || len(w.refunds) != 0 || st.Reason != "" {
		t.Fatalf("state %+v", st)
	}
	w.assertMoney(st)
}

// No receipt: the load waits for the key's next contact, however long;
// the key shows the sequence advanced: confirmed, no refund.
func TestLoadReceiptLostSequenceAdvanced(t *testing.T) {
	w := newLoadWorld(t)
	var a, r updater
	w.allow(0, &a, loadIn.AllowRequest())
	var waiting LoadState
	w.at(10*time.Minute, func() {
		v, _ := w.env.QueryWorkflow(QueryStatus)
		v.Get(&waiting)
	})
	w.report(72*time.Hour, &r, stateAt(5))
	st := w.run(loadIn)
	if waiting.Status != LoadStatusAwaitingContact || w.attrs["OperationStatus"] != "confirmed" {
		t.Fatalf("while waiting %+v", waiting)
	}
	if st.Status != "confirmed" || st.ConfirmedBy != store.ConfirmedByContact || len(w.refunds) != 0 {
		t.Fatalf("state %+v", st)
	}
	if w.env.Now().Sub(t0) < 72*time.Hour {
		t.Fatal("decided before the key came back")
	}
	w.assertMoney(st)
}

// No receipt; the key shows the sequence not advanced, first before the
// expiry (it may still take it: nothing decided), then after: refunded.
func TestLoadReceiptLostSequenceNotAdvanced(t *testing.T) {
	w := newLoadWorld(t)
	var a, r1, r2 updater
	w.allow(0, &a, loadIn.AllowRequest())
	w.report(30*time.Second, &r1, stateAt(4))
	w.report(5*time.Hour, &r2, stateAt(4))
	st := w.run(loadIn)
	if out, _ := r1.result.(LoadOutcome); r1.err != nil || out.Status != LoadStatusAwaitingReceipt || out.Final {
		t.Fatalf("report before the expiry: %+v %v", r1.result, r1.err)
	}
	if out, _ := r2.result.(LoadOutcome); r2.err != nil || out.Status != "refunded" || !out.Final {
		t.Fatalf("report after the expiry: %+v %v", r2.result, r2.err)
	}
	if st.Status != "refunded" || len(w.refunds) != 1 || w.refundAt[0] < 5*time.Hour || !strings.Contains(st.Reason, "had not taken the load") {
		t.Fatalf("state %+v, refunds at %v", st, w.refundAt)
	}
	w.assertMoney(st)
}

// A revoked key's word cannot cancel a load, only confirm it.
func TestLoadRevokedKeyCannotCancel(t *testing.T) {
	w := newLoadWorld(t)
	var a, r1, r2 updater
	w.allow(0, &a, loadIn.AllowRequest())
	lie := stateAt(4)
	lie.Revoked = true
	w.report(time.Hour, &r1, lie)
	ok := stateAt(5)
	ok.Revoked = true
	w.report(2*time.Hour, &r2, ok)
	st := w.run(loadIn)
	if st.Status != "confirmed" || len(w.refunds) != 0 {
		t.Fatalf("state %+v", st)
	}
	w.assertMoney(st)
}

func TestLoadTokenUnbound(t *testing.T) {
	// Before the debit: rejected, nothing taken.
	w := newLoadWorld(t)
	w.debit = func(int) error { return nil }
	w.env.RegisterDelayedCallback(func() { w.env.SignalWorkflow(SignalTokenUnbound, "lost") }, 0)
	var a updater
	w.allow(0, &a, loadIn.AllowRequest())
	st := w.run(loadIn)
	var app *temporal.ApplicationError
	if st.Status != "rejected" || !errors.As(a.err, &app) || app.Type() != ErrTypeTokenUnbound || slices.Contains(w.calls, "DebitAccount") {
		t.Fatalf("state %+v, update %v, calls %v", st, a.err, w.calls)
	}

	// After the debit, before the allow: refunded at once.
	w = newLoadWorld(t)
	w.debit = func(n int) error {
		if n == 1 {
			w.env.SignalWorkflow(SignalTokenUnbound, "lost")
			return errors.New("timeout")
		}
		return nil
	}
	w.allow(0, &a, loadIn.AllowRequest())
	st = w.run(loadIn)
	if st.Status != "refunded" || !errors.As(a.err, &app) || app.Type() != ErrTypeTokenUnbound || slices.Contains(w.calls, "SignAllow") {
		t.Fatalf("state %+v, update %v, calls %v", st, a.err, w.calls)
	}
	w.assertMoney(st)

	// Once the allow is out: money is moving; noted, and settled as usual.
	w = newLoadWorld(t)
	var r updater
	w.allow(0, &a, loadIn.AllowRequest())
	w.at(time.Minute, func() { w.env.SignalWorkflow(SignalTokenUnbound, "returned") })
	w.report(3*time.Hour, &r, stateAt(5))
	st = w.run(loadIn)
	if st.Status != "confirmed" || !st.TokenUnbound || len(w.unbound) != 1 || w.unbound[0].Status != LoadStatusAwaitingReceipt {
		t.Fatalf("state %+v, notes %+v", st, w.unbound)
	}
	w.assertMoney(st)
}

// settle asks for an operator's settlement at d.
func (w *loadWorld) settle(d time.Duration, u *updater, o OperatorSettlement) {
	w.at(d, func() { w.env.UpdateWorkflow(UpdateOperatorSettle, fmt.Sprint("settle-", d), u, o) })
}

// A load whose key was unbound after the allow went out waits for a
// contact that cannot come: an operator settles it, but only then.
func TestLoadOperatorSettlement(t *testing.T) {
	refund := OperatorSettlement{Outcome: SettleRefund, Operator: "ops/li", Reason: "key returned broken; read at the desk at load 4"}
	confirm := OperatorSettlement{Outcome: SettleConfirm, Operator: "ops/li", Reason: "meter card shows the 500.00 passed on from the key"}
	for _, c := range []struct {
		name string
		o    OperatorSettlement
		want string
	}{{"refund", refund, "refunded"}, {"confirm", confirm, "confirmed"}} {
		t.Run(c.name, func(t *testing.T) {
			w := newLoadWorld(t)
			var a, early, bound, bad, ok, again updater
			w.allow(0, &a, loadIn.AllowRequest())
			// Too early: the key is bound and its next session settles it.
			w.settle(time.Minute, &bound, c.o)
			w.at(90*time.Second, func() { w.env.SignalWorkflow(SignalTokenUnbound, "lost") })
			// Unbound but the allow is still valid: the key could take it.
			w.settle(100*time.Second, &early, c.o)
			w.settle(time.Hour, &bad, OperatorSettlement{Outcome: "split", Operator: "ops/li", Reason: c.o.Reason})
			// Two operators at once: the first decides.
			w.at(2*time.Hour, func() {
				w.env.UpdateWorkflow(UpdateOperatorSettle, "settle-first", &ok, c.o)
				w.env.UpdateWorkflow(UpdateOperatorSettle, "settle-second", &again, refund)
			})
			st := w.run(loadIn)
			for name, c := range map[string]struct {
				u   *updater
				typ string
			}{"bound": {&bound, ErrTypeSettlementRefused}, "early": {&early, ErrTypeSettlementRefused}, "settled": {&again, ErrTypeSettlementRefused},
				"bad outcome": {&bad, ErrTypeInvalidInput}} {
				var app *temporal.ApplicationError
				if !errors.As(c.u.rejected, &app) || app.Type() != c.typ {
					t.Errorf("%s settlement: %v, want refused with %s", name, c.u.rejected, c.typ)
				}
			}
			if !strings.Contains(fmt.Sprint(bound.rejected), "still bound") || !strings.Contains(fmt.Sprint(early.rejected), "valid until") ||
				!strings.Contains(fmt.Sprint(again.rejected), "being settled by ops/li") {
				t.Errorf("refusals do not say why: %v / %v", bound.rejected, early.rejected)
			}
			if out, _ := ok.result.(LoadOutcome); ok.err != nil || out.Status != c.want || !out.Final {
				t.Fatalf("settlement: %+v %v", ok.result, ok.err)
			}
			if st.Status != c.want || len(w.operator) != 1 || w.operator[0].Operator != "ops/li" || w.operator[0].Reason != c.o.Reason {
				t.Fatalf("state %+v, audited %+v", st, w.operator)
			}
			if c.want == "confirmed" && (len(w.confirms) != 1 || w.confirms[0].By != store.ConfirmedByOperator) {
				t.Fatalf("confirms %+v", w.confirms)
			}
			if c.want == "refunded" && (len(w.refunds) != 1 || !strings.Contains(w.refunds[0], c.o.Reason)) {
				t.Fatalf("refunds %+v", w.refunds)
			}
			w.assertMoney(st)
		})
	}
}

func TestLoadUpdatesRefuseStrangers(t *testing.T) {
	w := newLoadWorld(t)
	var a, other, stranger, forged, r updater
	w.allow(0, &a, loadIn.AllowRequest())
	w.allow(time.Second, &other, AllowRequest{RequestSHA256: []byte("another request")})
	b, _ := json.Marshal(receipt())
	w.at(2*time.Second, func() {
		w.env.UpdateWorkflow(UpdateReport, "stranger", &stranger, ReportInput{CustomerID: "C2", TokenSerial: "T9", CertSerial: "cd02", Report: b, Signature: []byte("sig")})
		w.env.UpdateWorkflow(UpdateReport, "forged", &forged, ReportInput{CustomerID: "C1", TokenSerial: "T1", CertSerial: "ab01", Report: b, Signature: []byte("forged")})
	})
	w.report(3*time.Second, &r, receipt())
	st := w.run(loadIn)
	if other.rejected == nil || !strings.Contains(other.rejected.Error(), "taken by another load request") {
		t.Fatalf("another request: %v %v", other.rejected, other.err)
	}
	if stranger.rejected == nil {
		t.Fatal("another key's report was taken")
	}
	var app *temporal.ApplicationError
	if !errors.As(forged.err, &app) || app.Type() != activities.ErrTypeBadLoadReport {
		t.Fatalf("forged report: %v", forged.err)
	}
	if st.Status != "confirmed" || st.Reports != 1 {
		t.Fatalf("state %+v", st)
	}
	w.assertMoney(st)
}

func TestLoadInvalidInput(t *testing.T) {
	w := newLoadWorld(t)
	in := loadIn
	in.Signature = nil
	var a updater
	w.allow(0, &a, in.AllowRequest())
	st := w.run(in)
	var app *temporal.ApplicationError
	if st.Status != "rejected" || st.ErrorType != ErrTypeInvalidInput || !errors.As(a.err, &app) || len(w.calls) != 0 {
		t.Fatalf("state %+v, update %v, calls %v", st, a.err, w.calls)
	}
	for _, bad := range []LoadInput{{}, {CustomerID: "C1", TokenSerial: "T1", CertSerial: "a", Sequence: 1, Amount: -1}} {
		if bad.Validate() == nil {
			t.Fatalf("%+v validated", bad)
		}
	}
	if loadIn.Validate() != nil || LoadWorkflowID("T1", 5) != "load/T1/5" {
		t.Fatal("a good input refused")
	}
	if (LoadTiming{}).withDefaults() != DefaultLoadTiming {
		t.Fatal("defaults")
	}
	_ = money.Max
}

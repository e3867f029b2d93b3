package workflows

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/unionpay"
)

// t0 is when every test workflow starts.
var t0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

const testKey = "7f3c2a9e-1b4d-4c8a"

var payIn = PaymentInput{
	CustomerID: "C1", TokenSerial: "T1", CertSerial: "ab01", IdempotencyKey: testKey,
	Kind: store.PaymentKindBills, BillIDs: []string{"B1", "B2"}, Amount: 3000,
	Instruction: []byte("instruction"), Signature: []byte("sig"),
}

// world is UnionPay, the platform and GridPay's records as the mocked
// activities see them: each test sets the behaviour it needs and reads
// what the saga did.
type world struct {
	t   *testing.T
	env *testsuite.TestWorkflowEnvironment

	verifyErr, checkErr, createErr error
	rejectErr                      error
	onReject                       func()
	found                          *store.Payment

	// query answers a query of the order at a time since t0; nil: 34.
	query func(since time.Duration) unionpay.QueryResult
	// post answers posting attempt n (from 1) at a time since t0.
	post func(n int, since time.Duration) (platform.Payment, error)
	// refund answers refund request n (from 1); nil: accepted.
	refund func(n int, req activities.RefundRequest) (activities.RefundAnswer, error)
	// refundQuery answers query n of a refund order; nil: succeeded.
	refundQuery func(n int, q activities.OrderQuery) (unionpay.QueryResult, error)

	mu          sync.Mutex
	calls       []string // activity names in order
	updates     int
	queries     int
	postCalls   int
	refunds     []activities.RefundRequest
	refundQs    int
	rejection   *activities.Rejection
	paid        []activities.PaidRequest
	posted      []activities.PostedRequest
	refunded    []activities.RefundedRequest
	expired     []activities.ExpireRequest
	unboundNote []activities.UnboundNote
	created     []activities.NewOrder
}

const testOrderID = "GP0123456789abcdef0123456789ab"

func success(amount money.Fen) unionpay.QueryResult {
	return unionpay.QueryResult{OrderID: testOrderID, RespCode: "00", OrigRespCode: "00", TxnType: "01", QueryID: "Q777", Amount: amount, SettleDate: "0301", Outcome: unionpay.Succeeded}
}

func notFound() unionpay.QueryResult {
	return unionpay.QueryResult{OrderID: testOrderID, RespCode: "34", RespMsg: "no such order"}
}

func notification(orderID string, code string, amount money.Fen) unionpay.Notification {
	return unionpay.Notification{TxnType: "01", OrderID: orderID, QueryID: "Q777", RespCode: code, Amount: amount, SettleDate: "0301", Outcome: unionpay.Classify(code)}
}

func newWorld(t *testing.T) *world {
	var s testsuite.WorkflowTestSuite
	w := &world{t: t, env: s.NewTestWorkflowEnvironment()}
	env := w.env
	env.SetStartTime(t0)
	env.RegisterActivity(&activities.Payments{})
	since := func() time.Duration { return env.Now().Sub(t0) }
	// Activities run on their own goroutines, sometimes two at once.
	note := func(name string) func() {
		w.mu.Lock()
		w.calls = append(w.calls, name)
		return w.mu.Unlock
	}

	env.OnActivity(payments.FindPayment, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.FindPayment) (activities.FoundPayment, error) {
		defer note("FindPayment")()
		if w.found != nil {
			return activities.FoundPayment{Found: true, Payment: *w.found}, nil
		}
		return activities.FoundPayment{}, nil
	})
	env.OnActivity(payments.VerifyInstruction, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.InstructionCheck) (activities.VerifiedInstruction, error) {
		defer note("VerifyInstruction")()
		return activities.VerifiedInstruction{SHA256: []byte("h")}, w.verifyErr
	})
	env.OnActivity(payments.CheckBills, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.BillsCheck) (activities.CheckedBills, error) {
		defer note("CheckBills")()
		if w.checkErr != nil {
			return activities.CheckedBills{}, w.checkErr
		}
		return activities.CheckedBills{Allocations: []platform.Allocation{{BillID: "B1", Amount: 1000}, {BillID: "B2", Amount: 2000}}}, nil
	})
	env.OnActivity(payments.CreateOrder, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.NewOrder) (activities.CreatedOrder, error) {
		defer note("CreateOrder")()
		w.created = append(w.created, req)
		if w.createErr != nil {
			return activities.CreatedOrder{}, w.createErr
		}
		return activities.CreatedOrder{OrderID: testOrderID, TxnTime: req.TxnTime, PayDeadline: req.PayDeadline, Amount: req.Amount,
			Form: unionpay.Form{Action: "https://gateway.test/pay", Fields: map[string]string{"orderId": testOrderID}}}, nil
	})
	env.OnActivity(payments.MarkRejected, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.Rejection) (store.Payment, error) {
		defer note("MarkRejected")()
		if w.rejectErr != nil {
			if w.onReject != nil {
				w.onReject()
			}
			return store.Payment{}, w.rejectErr
		}
		w.rejection = &r
		return store.Payment{Status: store.PaymentRejected}, nil
	})
	env.OnActivity(payments.QueryOrder, mock.Anything, mock.Anything).Return(func(_ context.Context, q activities.OrderQuery) (unionpay.QueryResult, error) {
		defer note("QueryOrder")()
		w.queries++
		if q.OrderID != testOrderID {
			t.Errorf("query of order %s", q.OrderID)
		}
		if w.query == nil {
			return notFound(), nil
		}
		return w.query(since()), nil
	})
	env.OnActivity(payments.MarkPaid, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.PaidRequest) (store.Payment, error) {
		defer note("MarkPaid")()
		w.paid = append(w.paid, r)
		at := env.Now()
		return store.Payment{Status: store.PaymentPaid, QueryID: r.QueryID, SettleDate: r.SettleDate, PaidAt: &at}, nil
	})
	env.OnActivity(payments.MarkExpired, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.ExpireRequest) (store.Payment, error) {
		defer note("MarkExpired")()
		w.expired = append(w.expired, r)
		return store.Payment{Status: store.PaymentExpired}, nil
	})
	env.OnActivity(payments.PostToPlatform, mock.Anything, mock.Anything).Return(func(_ context.Context, orderID string) (platform.Payment, error) {
		defer note("PostToPlatform")()
		w.postCalls++
		if w.post != nil {
			return w.post(w.postCalls, since())
		}
		return platform.Payment{Reference: "gp:C1:" + testKey, Amount: 3000, PostedAt: env.Now(), Status: platform.PaymentPosted}, nil
	})
	env.OnActivity(payments.MarkPosted, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.PostedRequest) (activities.Receipt, error) {
		defer note("MarkPosted")()
		w.posted = append(w.posted, r)
		return activities.Receipt{OrderID: r.OrderID, PostingRef: r.PostingRef, Amount: 3000, QueryID: "Q777"}, nil
	})
	env.OnActivity(payments.Refund, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.RefundRequest) (activities.RefundAnswer, error) {
		defer note("Refund")()
		w.refunds = append(w.refunds, r)
		ans := activities.RefundAnswer{RefundOrderID: activities.RefundOrderIDFor(r.OrderID, r.Attempt), TxnTime: r.TxnTime, Result: activities.RefundAccepted, RespCode: "00"}
		if w.refund != nil {
			a, err := w.refund(len(w.refunds), r)
			if a.Result != "" {
				ans.Result, ans.RespCode = a.Result, a.RespCode
			}
			return ans, err
		}
		return ans, nil
	})
	env.OnActivity(payments.QueryRefund, mock.Anything, mock.Anything).Return(func(_ context.Context, q activities.OrderQuery) (unionpay.QueryResult, error) {
		defer note("QueryRefund")()
		w.refundQs++
		if w.refundQuery != nil {
			return w.refundQuery(w.refundQs, q)
		}
		return unionpay.QueryResult{OrderID: q.OrderID, RespCode: "00", OrigRespCode: "00", TxnType: "04", QueryID: "RQ1", Amount: 3000, Outcome: unionpay.Succeeded}, nil
	})
	env.OnActivity(payments.MarkRefunded, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.RefundedRequest) (store.Payment, error) {
		defer note("MarkRefunded")()
		w.refunded = append(w.refunded, r)
		at := env.Now()
		return store.Payment{Status: store.PaymentRefunded, RefundedAt: &at}, nil
	})
	env.OnActivity(payments.NoteTokenUnbound, mock.Anything, mock.Anything).Return(func(_ context.Context, n activities.UnboundNote) error {
		defer note("NoteTokenUnbound")()
		w.unboundNote = append(w.unboundNote, n)
		return nil
	})
	return w
}

// at runs f at a time since the start.
func (w *world) at(d time.Duration, f func()) { w.env.RegisterDelayedCallback(f, d) }

func (w *world) notify(d time.Duration, n unionpay.Notification) {
	w.at(d, func() { w.env.SignalWorkflow(SignalNotification, n) })
}

// order sends UpdateOrder at d.
func (w *world) order(d time.Duration, u *updater, req OrderRequest) {
	w.updates++
	id := fmt.Sprint("order-", w.updates)
	w.at(d, func() { w.env.UpdateWorkflow(UpdateOrder, id, u, req) })
}

func (w *world) run(in PaymentInput) PaymentState {
	w.t.Helper()
	w.env.ExecuteWorkflow(Pay, in)
	if !w.env.IsWorkflowCompleted() {
		w.t.Fatal("workflow did not complete")
	}
	if err := w.env.GetWorkflowError(); err != nil {
		w.t.Fatalf("workflow failed: %v", err)
	}
	var st PaymentState
	if err := w.env.GetWorkflowResult(&st); err != nil {
		w.t.Fatal(err)
	}
	if !st.Final {
		w.t.Fatalf("a completed payment is not final: %+v", st)
	}
	return st
}

func (w *world) count(name string) int {
	n := 0
	for _, c := range w.calls {
		if c == name {
			n++
		}
	}
	return n
}

// assertMoney checks the invariant on what the saga did: a charge is
// posted exactly once or refunded exactly once, never both; no charge,
// neither.
func (w *world) assertMoney(st PaymentState) {
	w.t.Helper()
	charged := len(w.paid) > 0
	switch {
	case len(w.posted) > 0 && len(w.refunded) > 0:
		w.t.Fatalf("posted and refunded: %v", w.calls)
	case len(w.posted) > 1 || len(w.refunded) > 1:
		w.t.Fatalf("posted %d, refunded %d times", len(w.posted), len(w.refunded))
	case charged && len(w.posted)+len(w.refunded) != 1:
		w.t.Fatalf("charged but neither posted nor refunded (status %s): %v", st.Status, w.calls)
	case !charged && len(w.posted)+len(w.refunded) != 0:
		w.t.Fatalf("posted or refunded without a charge: %v", w.calls)
	}
	if w.count("MarkPaid") > 1 {
		w.t.Fatalf("charge recorded %d times", w.count("MarkPaid"))
	}
}

func TestPayHappyPathByNotification(t *testing.T) {
	w := newWorld(t)
	w.query = func(time.Duration) unionpay.QueryResult {
		return unionpay.QueryResult{RespCode: "00", OrigRespCode: "03", Outcome: unionpay.Unknown}
	}
	var u updater
	w.order(0, &u, payIn.OrderRequest())
	var during PaymentState
	w.at(30*time.Second, func() {
		v, err := w.env.QueryWorkflow(QueryStatus)
		if err != nil {
			t.Fatal(err)
		}
		v.Get(&during)
	})
	w.notify(3*time.Minute, notification(testOrderID, "00", 3000))
	attrs := map[string]any{}
	w.env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		sa := args.Get(0).(temporal.SearchAttributes)
		for k, v := range sa.GetUntypedValues() {
			attrs[k.GetName()] = v
		}
	}).Return(nil)
	st := w.run(payIn)

	if attrs["OperationKind"] != "payment" || attrs["CustomerID"] != "C1" || attrs["TokenSerial"] != "T1" || attrs["OrderID"] != testOrderID ||
		!slices.Equal(attrs["BillIDs"].([]string), []string{"B1", "B2"}) || attrs["OperationStatus"] != "posted" {
		t.Fatalf("search attributes %v", attrs)
	}
	o, ok := u.result.(Order)
	if !ok || u.err != nil || o.OrderID != testOrderID || o.Amount != 3000 || o.Form.Action == "" || o.Status != "awaiting_payment" ||
		!o.PayDeadline.Equal(t0.Add(15*time.Minute)) || o.WorkflowID == "" {
		t.Fatalf("order update: %+v %v", u.result, u.err)
	}
	if during.Status != "awaiting_payment" || during.Order == nil || during.Order.OrderID != testOrderID {
		t.Fatalf("status query while waiting: %+v", during)
	}
	if st.Status != "posted" || st.Receipt == nil || st.Receipt.PostingRef == "" || st.QueryID != "Q777" || st.PaidAt == nil {
		t.Fatalf("state %+v", st)
	}
	if w.paid[0].Source != "notification" || w.postCalls != 1 {
		t.Fatalf("paid %+v, %d postings", w.paid, w.postCalls)
	}
	want := []string{"FindPayment", "VerifyInstruction", "CheckBills", "CreateOrder"}
	if !slices.Equal(w.calls[:4], want) {
		t.Fatalf("calls %v", w.calls)
	}
	if c := w.created[0]; !c.TxnTime.Equal(t0) || !c.PayDeadline.Equal(t0.Add(15*time.Minute)) || len(c.Allocations) != 2 {
		t.Fatalf("order request %+v", c)
	}
	w.assertMoney(st)
}

func TestPayByQueryWhenNotificationsAreDropped(t *testing.T) {
	w := newWorld(t)
	w.query = func(since time.Duration) unionpay.QueryResult {
		if since < 6*time.Minute {
			return notFound() // before the deadline: still unknown
		}
		return success(3000)
	}
	st := w.run(payIn)
	if st.Status != "posted" || w.paid[0].Source != "query" || w.paid[0].QueryID != "Q777" {
		t.Fatalf("state %+v, paid %+v", st, w.paid)
	}
	// Queries at 1, 3 and 7 minutes: first after a minute, doubling.
	if w.queries != 3 {
		t.Fatalf("%d queries", w.queries)
	}
	w.assertMoney(st)
}

func TestPayDuplicateAndOutOfOrderNotifications(t *testing.T) {
	w := newWorld(t)
	w.query = func(time.Duration) unionpay.QueryResult {
		return unionpay.QueryResult{RespCode: "03", RespMsg: "processing"}
	}
	// The platform is slow to answer, so notifications keep coming while
	// the payment is being posted.
	w.post = func(n int, since time.Duration) (platform.Payment, error) {
		if since < 12*time.Minute {
			return platform.Payment{}, errors.New("platform unavailable")
		}
		return platform.Payment{Reference: "gp:C1:" + testKey, PostedAt: t0.Add(since)}, nil
	}
	// A declined attempt, then the success out of order with duplicates,
	// one for another amount, one for another order, and more while it is
	// posted.
	w.notify(90*time.Second, notification(testOrderID, "05", 3000))
	w.notify(2*time.Minute, notification(testOrderID, "00", 2999))
	w.notify(2*time.Minute+time.Second, notification("GPotherorder0000000000000000000", "00", 3000))
	w.notify(3*time.Minute, notification(testOrderID, "00", 3000))
	w.notify(3*time.Minute, notification(testOrderID, "00", 3000))
	w.notify(3*time.Minute+time.Second, notification(testOrderID, "01", 3000)) // a decline after the success changes nothing
	for i := range 3 {
		w.notify(10*time.Minute+time.Duration(i)*time.Second, notification(testOrderID, "00", 3000))
	}
	st := w.run(payIn)
	if st.Status != "posted" || len(w.posted) != 1 || len(w.paid) != 1 {
		t.Fatalf("state %s, %d postings, paid %+v", st.Status, len(w.posted), w.paid)
	}
	if st.Ignored != 7 {
		t.Fatalf("ignored %d notifications", st.Ignored)
	}
	w.assertMoney(st)
}

// 03, 04, 05 and 34 say nothing: the saga neither expires the order nor
// posts it while UnionPay keeps answering them, even long past the
// deadline, and settles when the answer comes.
func TestPayUnknownCodesAreNeverGuessed(t *testing.T) {
	w := newWorld(t)
	codes := []string{"03", "04", "05"}
	w.query = func(since time.Duration) unionpay.QueryResult {
		switch {
		case since < 10*time.Minute:
			return notFound() // 34 before the deadline: unknown
		case since < 3*time.Hour:
			i := int(since/time.Minute) % 3
			if i == 0 {
				return unionpay.QueryResult{RespCode: codes[i]}
			}
			return unionpay.QueryResult{RespCode: "00", OrigRespCode: codes[i], Outcome: unionpay.Unknown}
		}
		return success(3000)
	}
	st := w.run(payIn)
	if st.Status != "posted" || len(w.expired) != 0 {
		t.Fatalf("state %s, expired %+v", st.Status, w.expired)
	}
	if w.env.Now().Sub(t0) < 3*time.Hour {
		t.Fatalf("settled at %v, before UnionPay answered", w.env.Now().Sub(t0))
	}
	w.assertMoney(st)
}

// Unknown answers past the deadline hold off expiry until UnionPay says the
// order does not exist.
func TestPayUnknownPastDeadlineThenNotFoundExpires(t *testing.T) {
	w := newWorld(t)
	w.query = func(since time.Duration) unionpay.QueryResult {
		if since < time.Hour {
			return unionpay.QueryResult{RespCode: "04", RespMsg: "try later"}
		}
		return notFound()
	}
	st := w.run(payIn)
	if st.Status != "expired" || len(w.expired) != 1 || len(w.paid) != 0 || w.postCalls != 0 {
		t.Fatalf("state %s, calls %v", st.Status, w.calls)
	}
	if w.env.Now().Sub(t0) < time.Hour {
		t.Fatalf("expired at %v, while UnionPay still said 04", w.env.Now().Sub(t0))
	}
}

func TestPayExpiresAtTheDeadline(t *testing.T) {
	w := newWorld(t)
	// A declined attempt before the deadline: the payer may try again.
	w.notify(2*time.Minute, notification(testOrderID, "01", 3000))
	var u updater
	w.order(0, &u, payIn.OrderRequest())
	st := w.run(payIn)
	if st.Status != "expired" || len(w.expired) != 1 || !strings.Contains(st.Reason, "not paid by the deadline") {
		t.Fatalf("state %+v", st)
	}
	// The deadline is 15 minutes, the grace 5: not a moment before.
	if got := w.env.Now().Sub(t0); got < 20*time.Minute || got > 21*time.Minute {
		t.Fatalf("expired after %v", got)
	}
	if w.postCalls != 0 || len(w.paid) != 0 {
		t.Fatalf("calls %v", w.calls)
	}
	w.assertMoney(st)
}

// The platform down for hours: posting is retried with backoff, across
// posting windows, and posted once it is back.
func TestPayPlatformDownForHours(t *testing.T) {
	w := newWorld(t)
	w.notify(time.Minute, notification(testOrderID, "00", 3000))
	w.post = func(n int, since time.Duration) (platform.Payment, error) {
		if since < 5*time.Hour {
			return platform.Payment{}, &platform.Error{Code: platform.CodeUnavailable, Message: "maintenance"}
		}
		return platform.Payment{Reference: "gp:C1:" + testKey, PostedAt: t0.Add(since)}, nil
	}
	in := payIn
	in.Timing = PaymentTiming{PostingWindow: time.Hour, PostRetryMax: 10 * time.Minute}
	var mid PaymentState
	w.at(3*time.Hour, func() {
		v, _ := w.env.QueryWorkflow(QueryStatus)
		v.Get(&mid)
	})
	st := w.run(in)
	if st.Status != "posted" || len(w.posted) != 1 || len(w.refunds) != 0 {
		t.Fatalf("state %s, calls %d", st.Status, len(w.calls))
	}
	if mid.Status != "paid" {
		t.Fatalf("status while the platform was down: %+v", mid)
	}
	if w.postCalls < 10 || w.env.Now().Sub(t0) < 5*time.Hour {
		t.Fatalf("%d posting attempts, posted after %v", w.postCalls, w.env.Now().Sub(t0))
	}
	w.assertMoney(st)
}

func postingRefused(msg string) error {
	return temporal.NewNonRetryableApplicationError("the platform refused the payment: "+msg, activities.ErrTypePostingRefused, nil)
}

// The platform refuses for good: exactly one refund, awaited by query until
// it succeeded, and the customer sees why.
func TestPayPlatformRefusesThenOneRefund(t *testing.T) {
	w := newWorld(t)
	w.notify(time.Minute, notification(testOrderID, "00", 3000))
	w.post = func(int, time.Duration) (platform.Payment, error) {
		return platform.Payment{}, postingRefused("bill B1 is already settled (already_settled)")
	}
	w.refundQuery = func(n int, q activities.OrderQuery) (unionpay.QueryResult, error) {
		if n <= 3 {
			return unionpay.QueryResult{RespCode: "00", OrigRespCode: "03", Outcome: unionpay.Unknown}, nil
		}
		return unionpay.QueryResult{OrderID: q.OrderID, RespCode: "00", OrigRespCode: "00", TxnType: "04", QueryID: "RQ9", Amount: 3000, Outcome: unionpay.Succeeded}, nil
	}
	st := w.run(payIn)
	if st.Status != "refunded" || !strings.Contains(st.Reason, "already settled") {
		t.Fatalf("state %+v", st)
	}
	if len(w.refunds) != 1 || w.refunds[0].Attempt != 1 || len(w.refunded) != 1 || w.refunded[0].QueryID != "RQ9" || w.postCalls != 1 {
		t.Fatalf("refunds %+v, refunded %+v, %d postings", w.refunds, w.refunded, w.postCalls)
	}
	if w.refunded[0].RefundOrderID != activities.RefundOrderIDFor(testOrderID, 1) || st.Refund.RefundedAt == nil {
		t.Fatalf("refunded %+v, state %+v", w.refunded, st.Refund)
	}
	if w.refundQs != 4 {
		t.Fatalf("%d refund queries", w.refundQs)
	}
	w.assertMoney(st)
}

// The refund notification settles it without waiting for a query.
func TestPayRefundByNotification(t *testing.T) {
	w := newWorld(t)
	w.notify(time.Minute, notification(testOrderID, "00", 3000))
	w.post = func(int, time.Duration) (platform.Payment, error) {
		return platform.Payment{}, postingRefused("amount_mismatch")
	}
	w.refundQuery = func(int, activities.OrderQuery) (unionpay.QueryResult, error) {
		return unionpay.QueryResult{RespCode: "03"}, nil
	}
	refundID := activities.RefundOrderIDFor(testOrderID, 1)
	w.notify(90*time.Second, unionpay.Notification{TxnType: "04", OrderID: refundID, QueryID: "RQ5", RespCode: "00", Amount: 3000, Outcome: unionpay.Succeeded})
	w.notify(91*time.Second, unionpay.Notification{TxnType: "04", OrderID: refundID, QueryID: "RQ5", RespCode: "00", Amount: 3000, Outcome: unionpay.Succeeded})
	st := w.run(payIn)
	if st.Status != "refunded" || len(w.refunded) != 1 || w.refunded[0].QueryID != "RQ5" || len(w.refunds) != 1 {
		t.Fatalf("state %s, refunded %+v", st.Status, w.refunded)
	}
	w.assertMoney(st)
}

// Refunds failing transiently: transport errors are retried, a refused
// request is checked to be unknown to the gateway before a new attempt is
// made, a failed attempt is replaced, and exactly one succeeds.
func TestPayRefundFailingTransiently(t *testing.T) {
	w := newWorld(t)
	w.notify(time.Minute, notification(testOrderID, "00", 3000))
	w.post = func(int, time.Duration) (platform.Payment, error) {
		return platform.Payment{}, postingRefused("already_settled")
	}
	w.refund = func(n int, req activities.RefundRequest) (activities.RefundAnswer, error) {
		switch {
		case n <= 3:
			return activities.RefundAnswer{}, errors.New("connection reset")
		case req.Attempt == 1:
			return activities.RefundAnswer{Result: activities.RefundRefused, RespCode: "06"}, nil
		}
		return activities.RefundAnswer{}, nil
	}
	w.refundQuery = func(n int, q activities.OrderQuery) (unionpay.QueryResult, error) {
		switch q.OrderID {
		case activities.RefundOrderIDFor(testOrderID, 1):
			return unionpay.QueryResult{RespCode: "34"}, nil
		case activities.RefundOrderIDFor(testOrderID, 2):
			// Attempt 2 was accepted, then failed at the gateway.
			return unionpay.QueryResult{RespCode: "00", OrigRespCode: "01", Outcome: unionpay.Failed}, nil
		}
		if n == 3 {
			return unionpay.QueryResult{}, errors.New("timeout")
		}
		return unionpay.QueryResult{OrderID: q.OrderID, RespCode: "00", OrigRespCode: "00", QueryID: "RQ3", Amount: 3000, Outcome: unionpay.Succeeded}, nil
	}
	st := w.run(payIn)
	if st.Status != "refunded" || st.Refund.Attempt != 3 {
		t.Fatalf("state %s, refund %+v", st.Status, st.Refund)
	}
	var attempts []int
	for _, r := range w.refunds {
		attempts = append(attempts, r.Attempt)
	}
	if !slices.Equal(attempts, []int{1, 1, 1, 1, 2, 3}) {
		t.Fatalf("refund requests by attempt %v", attempts)
	}
	// Each attempt keeps its txnTime across resends.
	if !w.refunds[0].TxnTime.Equal(w.refunds[3].TxnTime) || w.refunds[3].TxnTime.Equal(w.refunds[4].TxnTime) {
		t.Fatalf("txn times %v", w.refunds)
	}
	if len(w.refunded) != 1 || w.refunded[0].RefundOrderID != activities.RefundOrderIDFor(testOrderID, 3) {
		t.Fatalf("refunded %+v", w.refunded)
	}
	w.assertMoney(st)
}

// An accepted refund the gateway keeps not knowing is sent again,
// unchanged, never replaced by a new attempt.
func TestPayRefundResentWhenGatewayForgets(t *testing.T) {
	w := newWorld(t)
	w.notify(time.Minute, notification(testOrderID, "00", 3000))
	w.post = func(int, time.Duration) (platform.Payment, error) {
		return platform.Payment{}, postingRefused("conflict")
	}
	w.refundQuery = func(n int, q activities.OrderQuery) (unionpay.QueryResult, error) {
		if len(w.refunds) < 2 {
			return unionpay.QueryResult{RespCode: "34"}, nil
		}
		return unionpay.QueryResult{OrderID: q.OrderID, RespCode: "00", OrigRespCode: "00", QueryID: "RQ1", Amount: 3000, Outcome: unionpay.Succeeded}, nil
	}
	st := w.run(payIn)
	if st.Status != "refunded" || len(w.refunds) != 2 || w.refunds[1].Attempt != 1 || !w.refunds[1].TxnTime.Equal(w.refunds[0].TxnTime) {
		t.Fatalf("state %s, refunds %+v", st.Status, w.refunds)
	}
	w.assertMoney(st)
}

func TestPayRejectedBeforeAnyOrder(t *testing.T) {
	refusal := func(typ, msg string) error { return temporal.NewNonRetryableApplicationError(msg, typ, nil) }
	cases := []struct {
		name            string
		verify, check   error
		wantType, wantR string
	}{
		{"invalid signature", refusal(activities.ErrTypeBadInstruction, "payment instruction: signature does not verify"), nil, activities.ErrTypeBadInstruction, "signature"},
		{"replayed nonce", refusal(activities.ErrTypeReplay, "replayed instruction"), nil, activities.ErrTypeReplay, "replayed"},
		{"stale", refusal(activities.ErrTypeStaleInstruction, "signed at 07:00"), nil, activities.ErrTypeStaleInstruction, "07:00"},
		{"settled bill", nil, refusal(activities.ErrTypeBillNotPayable, "bill B1 is already settled"), activities.ErrTypeBillNotPayable, "settled"},
		{"overpay", nil, refusal(activities.ErrTypeAmountMismatch, "the amount ¥30.00 differs from the ¥20.00 due"), activities.ErrTypeAmountMismatch, "differs"},
		{"platform down", nil, errors.New("platform unavailable"), ErrTypeUnavailable, "nothing was charged"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.verifyErr, w.checkErr = c.verify, c.check
			var u updater
			w.order(0, &u, payIn.OrderRequest())
			st := w.run(payIn)
			var app *temporal.ApplicationError
			if !errors.As(u.err, &app) || app.Type() != c.wantType || !strings.Contains(app.Message(), c.wantR) {
				t.Fatalf("update: %v (%+v)", u.err, u.result)
			}
			if st.Status != "rejected" || st.ErrorType != c.wantType || !strings.Contains(st.Reason, c.wantR) {
				t.Fatalf("state %+v", st)
			}
			if w.count("CreateOrder") != 0 || w.queries != 0 || w.rejection == nil || w.rejection.Reason != st.Reason {
				t.Fatalf("calls %v, rejection %+v", w.calls, w.rejection)
			}
			w.assertMoney(st)
		})
	}
}

// CreateOrder recorded the order but never answered in time: the
// rejection is refused by the record, and the saga carries on with the
// order (the payer may get it and pay).
func TestPayOrderRecordedThoughCreateOrderTimedOut(t *testing.T) {
	w := newWorld(t)
	w.createErr = errors.New("signing the consume form: HSM busy")
	w.rejectErr = temporal.NewNonRetryableApplicationError("payment has an order; it cannot be rejected", activities.ErrTypeIllegalTransition, nil)
	w.onReject = func() {
		w.createErr = nil
		w.found = &store.Payment{IdempotencyKey: testKey, CustomerID: "C1", WorkflowID: "default-test-workflow-id", Kind: "bills",
			BillIDs: []string{"B1", "B2"}, BillAmounts: []int64{1000, 2000}, Amount: 3000, OrderID: testOrderID, TxnTime: t0,
			PayDeadline: t0.Add(15 * time.Minute), Status: store.PaymentAwaiting}
	}
	w.query = func(since time.Duration) unionpay.QueryResult { return success(3000) }
	var u updater
	w.order(0, &u, payIn.OrderRequest())
	st := w.run(payIn)
	if o, ok := u.result.(Order); !ok || o.OrderID != testOrderID || u.err != nil {
		t.Fatalf("update %+v %v", u.result, u.err)
	}
	if st.Status != "posted" || w.rejection != nil || st.ErrorType != "" {
		t.Fatalf("state %+v", st)
	}
	w.assertMoney(st)
}

func TestPayInvalidInputRejected(t *testing.T) {
	w := newWorld(t)
	in := payIn
	in.Amount = -1
	var u updater
	w.order(0, &u, in.OrderRequest())
	st := w.run(in)
	if st.Status != "rejected" || st.ErrorType != ErrTypeInvalidInput || u.err == nil || len(w.calls) != 0 {
		t.Fatalf("state %+v, update %v, calls %v", st, u.err, w.calls)
	}
}

// The same key sent again gets the same order; sent with another content,
// it is refused. (The gateway's update-with-start with conflict policy
// use-existing makes every request with the key reach this one workflow.)
func TestPaySameKeyTwiceOneOrder(t *testing.T) {
	w := newWorld(t)
	w.notify(5*time.Minute, notification(testOrderID, "00", 3000))
	var first, second, again, other updater
	w.order(0, &first, payIn.OrderRequest())
	w.order(0, &second, payIn.OrderRequest())
	reordered := payIn.OrderRequest()
	reordered.BillIDs = []string{"B2", "B1"}
	w.order(2*time.Minute, &again, reordered)
	changed := payIn.OrderRequest()
	changed.Amount = 2999
	w.order(2*time.Minute, &other, changed)
	st := w.run(payIn)
	for _, u := range []*updater{&first, &second, &again} {
		o, ok := u.result.(Order)
		if !ok || u.err != nil || o.OrderID != testOrderID {
			t.Fatalf("update: %+v %v %v", u.result, u.err, u.rejected)
		}
	}
	if other.rejected == nil || !strings.Contains(other.rejected.Error(), "another payment") {
		t.Fatalf("a different payment under the same key: %+v %v", other.result, other.rejected)
	}
	if w.count("CreateOrder") != 1 || w.count("VerifyInstruction") != 1 || st.Status != "posted" {
		t.Fatalf("calls %v", w.calls)
	}
	w.assertMoney(st)
}

// A workflow started again for a key already recorded (an operator ended
// the first, or Temporal forgot it) carries on from the record: the same
// order, no second verification.
func TestPayStartedAgainCarriesOnFromTheRecord(t *testing.T) {
	w := newWorld(t)
	rec := store.Payment{
		IdempotencyKey: testKey, CustomerID: "C1", WorkflowID: "default-test-workflow-id", TokenSerial: "T1", CertSerial: "ab01",
		Kind: "bills", BillIDs: []string{"B1", "B2"}, BillAmounts: []int64{1000, 2000}, Amount: 3000, OrderID: testOrderID,
		TxnTime: t0.Add(-5 * time.Minute), PayDeadline: t0.Add(10 * time.Minute), Status: store.PaymentAwaiting,
	}
	w.found = &rec
	w.query = func(since time.Duration) unionpay.QueryResult { return success(3000) }
	var u updater
	w.order(0, &u, payIn.OrderRequest())
	st := w.run(payIn)
	if o, ok := u.result.(Order); !ok || o.OrderID != testOrderID || !o.TxnTime.Equal(rec.TxnTime) {
		t.Fatalf("update %+v %v", u.result, u.err)
	}
	if w.count("VerifyInstruction") != 0 || w.count("CreateOrder") != 1 || !w.created[0].TxnTime.Equal(rec.TxnTime) || st.Status != "posted" {
		t.Fatalf("calls %v", w.calls)
	}
	w.assertMoney(st)

	// A record already posted is the answer as it stands.
	w2 := newWorld(t)
	paidAt, postedAt := t0, t0.Add(time.Minute)
	done := rec
	done.Status, done.QueryID, done.PaidAt, done.PostingRef, done.PostedAt = store.PaymentPosted, "Q1", &paidAt, "gp:C1:k", &postedAt
	w2.found = &done
	st2 := w2.run(payIn)
	if st2.Status != "posted" || st2.Receipt == nil || st2.Receipt.PostingRef != "gp:C1:k" || len(w2.calls) != 1 {
		t.Fatalf("state %+v, calls %v", st2, w2.calls)
	}
}

// The key unbound after the order: the payment carries on (the payer may
// be paying), and the unbinding is recorded.
func TestPayTokenUnboundAfterTheOrder(t *testing.T) {
	w := newWorld(t)
	w.at(2*time.Minute, func() { w.env.SignalWorkflow(SignalTokenUnbound, "unbound (keyCompromise) by admin") })
	w.at(2*time.Minute+time.Second, func() { w.env.SignalWorkflow(SignalTokenUnbound, "again") })
	w.notify(5*time.Minute, notification(testOrderID, "00", 3000))
	st := w.run(payIn)
	if st.Status != "posted" || !st.TokenUnbound || !strings.Contains(st.UnboundReason, "keyCompromise") {
		t.Fatalf("state %+v", st)
	}
	if len(w.unboundNote) != 1 || w.unboundNote[0].OrderID != testOrderID || w.unboundNote[0].Status != "awaiting_payment" {
		t.Fatalf("notes %+v", w.unboundNote)
	}
	w.assertMoney(st)
}

// The key unbound before the order exists: nothing has moved, so the
// payment stops, rejected.
func TestPayTokenUnboundBeforeTheOrder(t *testing.T) {
	w := newWorld(t)
	w.env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		if info.ActivityType.Name == "CheckBills" {
			w.env.SignalWorkflow(SignalTokenUnbound, "unbound (lost) by admin")
		}
	})
	var u updater
	w.order(0, &u, payIn.OrderRequest())
	st := w.run(payIn)
	var app *temporal.ApplicationError
	if st.Status != "rejected" || !errors.As(u.err, &app) || app.Type() != ErrTypeTokenUnbound || w.count("CreateOrder") != 0 {
		t.Fatalf("state %+v, update %v, calls %v", st, u.err, w.calls)
	}
	if len(w.unboundNote) != 1 {
		t.Fatalf("notes %+v", w.unboundNote)
	}
}

// A prepaid top-up goes through the same saga.
func TestPayPrepay(t *testing.T) {
	w := newWorld(t)
	w.notify(time.Minute, notification(testOrderID, "00", 50000))
	in := payIn
	in.Kind, in.BillIDs, in.Amount = store.PaymentKindPrepay, nil, 50000
	st := w.run(in)
	if st.Status != "posted" || st.Kind != "prepay" || w.created[0].Kind != "prepay" {
		t.Fatalf("state %+v", st)
	}
	w.assertMoney(st)
}

// A long wait continues as new with the state, and the new run carries on.
func TestPayContinuesAsNew(t *testing.T) {
	w := newWorld(t)
	w.query = func(time.Duration) unionpay.QueryResult { return unionpay.QueryResult{RespCode: "03"} }
	// Temporal reports the history grown long after two hours of queries.
	w.at(2*time.Hour, func() { w.env.SetCurrentHistoryLength(6000) })
	w.env.ExecuteWorkflow(Pay, payIn)
	var can *workflow.ContinueAsNewError
	if err := w.env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("want continue-as-new, got %v", err)
	}
	var next PaymentInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	if next.Resume == nil || next.Resume.State.Status != "awaiting_payment" || next.Resume.State.Order.OrderID != testOrderID ||
		next.IdempotencyKey != testKey || next.Resume.QueryInterval != 5*time.Minute {
		t.Fatalf("continued with %+v", next.Resume)
	}

	w2 := newWorld(t)
	w2.env.SetStartTime(w.env.Now())
	w2.notify(time.Minute, notification(testOrderID, "00", 3000))
	var u updater
	w2.order(0, &u, payIn.OrderRequest())
	st := w2.run(next)
	if st.Status != "posted" || w2.count("VerifyInstruction") != 0 || w2.count("CreateOrder") != 0 {
		t.Fatalf("state %s, calls %v", st.Status, w2.calls)
	}
	if o, ok := u.result.(Order); !ok || o.OrderID != testOrderID {
		t.Fatalf("update after continue-as-new: %+v %v", u.result, u.err)
	}
	w2.assertMoney(st)
}

func TestRecoverExpiredPaymentFoundPaid(t *testing.T) {
	rec := store.Payment{
		IdempotencyKey: testKey, CustomerID: "C1", WorkflowID: PaymentID("C1", testKey), TokenSerial: "T1", Kind: "bills",
		BillIDs: []string{"B1"}, BillAmounts: []int64{3000}, Amount: 3000, OrderID: testOrderID, TxnTime: t0, PayDeadline: t0.Add(15 * time.Minute),
		Status: store.PaymentExpired, Reason: "not paid by the deadline",
	}
	file := notification(testOrderID, "00", 3000)
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprint("refused=", refuse), func(t *testing.T) {
			w := newWorld(t)
			w.env.OnActivity(payments.LoadPayment, mock.Anything, testOrderID).Return(rec, nil)
			if refuse {
				w.post = func(int, time.Duration) (platform.Payment, error) {
					return platform.Payment{}, postingRefused("already_settled")
				}
			}
			w.env.ExecuteWorkflow(RecoverPayment, RecoverInput{OrderID: testOrderID, Charge: &file})
			var st PaymentState
			if err := w.env.GetWorkflowResult(&st); err != nil {
				t.Fatal(err)
			}
			want := map[bool]string{false: "posted", true: "refunded"}[refuse]
			if st.Status != want || len(w.paid) != 1 || w.paid[0].Source != "reconciliation" {
				t.Fatalf("state %s, paid %+v", st.Status, w.paid)
			}
			w.assertMoney(st)
		})
	}
	// Without the file's word, UnionPay is asked; no charge, nothing to do.
	w := newWorld(t)
	w.env.OnActivity(payments.LoadPayment, mock.Anything, testOrderID).Return(rec, nil)
	w.env.ExecuteWorkflow(RecoverPayment, RecoverInput{OrderID: testOrderID})
	var st PaymentState
	if err := w.env.GetWorkflowResult(&st); err != nil || st.Status != "expired" || w.queries != 1 || len(w.paid) != 0 {
		t.Fatalf("state %+v %v, calls %v", st, err, w.calls)
	}
}

func TestRecoverRefundInProgress(t *testing.T) {
	paidAt, txn := t0, t0.Add(time.Hour)
	rec := store.Payment{
		IdempotencyKey: testKey, CustomerID: "C1", WorkflowID: PaymentID("C1", testKey), Kind: "prepay", Amount: 3000, OrderID: testOrderID,
		TxnTime: t0, PayDeadline: t0.Add(15 * time.Minute), Status: store.PaymentRefunding, QueryID: "Q1", PaidAt: &paidAt,
		RefundAttempt: 2, RefundOrderID: activities.RefundOrderIDFor(testOrderID, 2), RefundTxnTime: &txn, Reason: "refused",
	}
	w := newWorld(t)
	w.env.OnActivity(payments.LoadPayment, mock.Anything, testOrderID).Return(rec, nil)
	w.env.ExecuteWorkflow(RecoverPayment, RecoverInput{OrderID: testOrderID})
	var st PaymentState
	if err := w.env.GetWorkflowResult(&st); err != nil || st.Status != "refunded" {
		t.Fatalf("state %+v %v", st, err)
	}
	// The attempt in the record is sent again, unchanged.
	if len(w.refunds) != 1 || w.refunds[0].Attempt != 2 || !w.refunds[0].TxnTime.Equal(txn) || w.postCalls != 0 {
		t.Fatalf("refunds %+v, calls %v", w.refunds, w.calls)
	}
}

func TestPaymentInputValidate(t *testing.T) {
	if err := payIn.Validate(); err != nil {
		t.Fatalf("good input: %v", err)
	}
	edits := map[string]func(*PaymentInput){
		"short key":        func(in *PaymentInput) { in.IdempotencyKey = "k" },
		"no customer":      func(in *PaymentInput) { in.CustomerID = "" },
		"kind":             func(in *PaymentInput) { in.Kind = "gift" },
		"no bills":         func(in *PaymentInput) { in.BillIDs = nil },
		"prepay and bills": func(in *PaymentInput) { in.Kind = "prepay" },
		"bill twice":       func(in *PaymentInput) { in.BillIDs = []string{"B1", "B1"} },
		"zero":             func(in *PaymentInput) { in.Amount = 0 },
		"too much":         func(in *PaymentInput) { in.Amount = money.Max + 1 },
		"no instruction":   func(in *PaymentInput) { in.Instruction = nil },
		"no signature":     func(in *PaymentInput) { in.Signature = nil },
	}
	for name, edit := range edits {
		in := payIn
		in.BillIDs = slices.Clone(payIn.BillIDs)
		edit(&in)
		if in.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if PaymentID("C1", testKey) != "payment/C1/"+testKey || RecoveryID("GP1") != "payment-recovery/GP1" {
		t.Error("workflow IDs")
	}
}

// The payment workflows replay their histories recorded from real runs
// (payment_integration_test.go with GRIDPAY_RECORD_HISTORY=1): a change
// that would break payments in flight fails here.
func TestReplayPaymentHistories(t *testing.T) {
	files := map[string]any{
		"pay.json":             Pay,
		"pay_refund.json":      Pay,
		"reconcile.json":       Reconcile,
		"recover_payment.json": RecoverPayment,
	}
	for file, wf := range files {
		t.Run(file, func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(wf)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, filepath.Join("testdata", file)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

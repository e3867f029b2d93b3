package workflows

// The payment saga: what the gateway, the client and the worker use.
//
//	Workflow    Pay(PaymentInput) → PaymentState, ID PaymentID(customer, key) = "payment/<customer>/<key>".
//	            The gateway checks PaymentInput.Validate, then starts it with update-with-start:
//	              StartWorkflowOptions{ID: PaymentID(…), TaskQueue: TaskQueue,
//	                WorkflowIDConflictPolicy: USE_EXISTING, WorkflowIDReusePolicy: REJECT_DUPLICATE}
//	              UpdateWorkflowOptions{UpdateName: UpdateOrder, Args: []any{OrderRequest{…}}, WaitForStage: Completed}
//	            so the same key sent any number of times, concurrently or not, reaches one workflow and
//	            gets the same Order. Once the workflow has closed, the start is refused
//	            (WorkflowExecutionAlreadyStarted): answer from QueryStatus, which closed workflows answer too.
//	Update      UpdateOrder "order" (OrderRequest) → Order, once the UnionPay order exists. A request
//	            whose content differs from the workflow's is refused by the validator; a payment
//	            rejected before any order fails the update with a *temporal.ApplicationError whose
//	            Type() is the reason's activities.ErrType… (BadInstruction, StaleInstruction,
//	            InstructionReplay, BillNotPayable, AmountMismatch, UnknownCustomer, NotBound,
//	            CertificateRevoked, PaymentConflict) or ErrTypeTokenUnbound / ErrTypeUnavailable.
//	Query       QueryStatus "status" → PaymentState (live status, amounts, bills, order, reason, receipt, refund).
//	Signals     SignalNotification "notification" (unionpay.Notification): a back notification the
//	            gateway verified, consume or refund. Find the workflow with store.PaymentByOrderID (it
//	            matches refund orders too): Payment.WorkflowID. Anything not about this payment's
//	            order or current refund, with another amount, or a duplicate, is ignored.
//	            SignalTokenUnbound "token-unbound" (string): from the unbinding saga (see below).
//	Recovery    RecoverPayment(RecoverInput) → PaymentState, ID RecoveryID(orderID): finishes a payment
//	            whose workflow closed while UnionPay had charged it (started by reconciliation).
//	Reconcile   Reconcile(ReconcileInput) → ReconcileResult, on the schedule ReconcileScheduleID
//	            (daily; see reconcile.go).
//	Activities  &activities.Payments{Records: store.Payments{DB: db}, Gateway: <*unionpay.Client>,
//	            Platform: <platform client>, FrontURL: …, BackURL: <gateway notify URL>}.
//	Search      CustomerID, TokenSerial, OperationKind "payment", OperationStatus (the statuses below),
//	            OrderID, BillIDs.
//
// Statuses: verifying (before the order) then the store's: awaiting_payment, paid, posted, refunding,
// refunded, expired, rejected. Business outcomes complete the workflow with PaymentState (Final
// true); the workflow fails only on a bug-like inconsistency of the records.
//
// Money rules the code keeps:
//   - Nothing is charged before the order exists, and nothing before it can move money: any
//     refusal up to there is a rejection, recorded and audited.
//   - The outcome comes from a verified notification or from queries (first after
//     PaymentTiming.QueryFirst, doubling up to QueryMax). 03/04/05/34 and anything unclear stay
//     unknown until resolved. Only after the pay deadline plus Grace (the gateway refuses payment
//     after payTimeout) does "order not found" (34) or a failed outcome mean never paid: expired.
//     A charge that shows up later (a late notification, or the reconciliation file) is still
//     posted or refunded.
//   - Posting retries for as long as it takes: one activity with an unlimited retry policy
//     (backoff up to PostRetryMax) per PostingWindow, in a loop, which costs a few history
//     events per window however long the platform is down. A permanent refusal (already
//     settled, amount mismatch, conflict…) refunds.
//   - A refund attempt is recorded before it is sent and is awaited (notification or query)
//     until it succeeded; it is re-sent unchanged (same orderId and txnTime: a duplicate is
//     harmless) when in doubt, and a new attempt, with a new orderId, is made only once the
//     previous one is known not to exist or to have failed. So at most one refund succeeds.
//   - Long waits continue as new (PaymentTiming.HistoryLimit) carrying the state.
//
// Token unbound: once an order exists the payer may already be paying, and money already moving
// is never abandoned, so the saga carries on to its end (paid → posted or refunded; not paid by
// the deadline → expired); it records and audits that the key was unbound and shows it in the
// status. Before the order exists, it stops: rejected (TokenUnbound), nothing moved.

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/unionpay"
)

var payments *activities.Payments

// Names of the payment workflow's messages.
const (
	UpdateOrder        = "order"
	QueryStatus        = "status"
	SignalNotification = "notification"
	SignalTokenUnbound = activities.SignalTokenUnbound
)

// Statuses of a payment workflow besides the store's payment statuses.
const (
	StatusVerifying = "verifying"
)

// Error types of rejections that are not an activity's.
const (
	ErrTypeTokenUnbound = "TokenUnbound"
	ErrTypeUnavailable  = "Unavailable"
	ErrTypeInvalidInput = "InvalidInput"
)

// PaymentID is the workflow ID of a customer's payment with an idempotency
// key.
func PaymentID(customerID, key string) string { return "payment/" + customerID + "/" + key }

// RecoveryID is the workflow ID of the recovery of an order's payment.
func RecoveryID(orderID string) string { return "payment-recovery/" + orderID }

// PaymentTiming tunes the saga's waits; zero fields take the defaults
// (DefaultPaymentTiming). Tests shorten them.
type PaymentTiming struct {
	// PayTimeout is how long the payer has to pay (UnionPay's payTimeout
	// is the order's txnTime plus this).
	PayTimeout time.Duration `json:"pay_timeout,omitempty"`
	// Grace is waited beyond the deadline before "not found" or "failed"
	// may mean never paid.
	Grace time.Duration `json:"grace,omitempty"`
	// QueryFirst is the wait before the first query of an order or
	// refund; the waits double up to QueryMax (orders) or RefundQueryMax.
	QueryFirst     time.Duration `json:"query_first,omitempty"`
	QueryMax       time.Duration `json:"query_max,omitempty"`
	RefundQueryMax time.Duration `json:"refund_query_max,omitempty"`
	// RefundResendAfter: an accepted refund the gateway still does not
	// know (34) after this long is sent again, unchanged.
	RefundResendAfter time.Duration `json:"refund_resend_after,omitempty"`
	// CheckWindow bounds verification, the bill check and the order's
	// creation: the payer is waiting; past it the payment is rejected as
	// unavailable, nothing charged.
	CheckWindow time.Duration `json:"check_window,omitempty"`
	// PostRetryFirst and PostRetryMax are the backoff of posting retries;
	// PostingWindow the schedule-to-close of one posting activity (the
	// loop starts another after it).
	PostRetryFirst time.Duration `json:"post_retry_first,omitempty"`
	PostRetryMax   time.Duration `json:"post_retry_max,omitempty"`
	PostingWindow  time.Duration `json:"posting_window,omitempty"`
	// HistoryLimit is the history length past which a waiting workflow
	// continues as new.
	HistoryLimit int `json:"history_limit,omitempty"`
}

// DefaultPaymentTiming is the production timing.
var DefaultPaymentTiming = PaymentTiming{
	PayTimeout:        15 * time.Minute,
	Grace:             5 * time.Minute,
	QueryFirst:        time.Minute,
	QueryMax:          5 * time.Minute,
	RefundQueryMax:    30 * time.Minute,
	RefundResendAfter: time.Hour,
	CheckWindow:       2 * time.Minute,
	PostRetryFirst:    10 * time.Second,
	PostRetryMax:      10 * time.Minute,
	PostingWindow:     24 * time.Hour,
	HistoryLimit:      5000,
}

func (t PaymentTiming) withDefaults() PaymentTiming {
	d := DefaultPaymentTiming
	set := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&t.PayTimeout, d.PayTimeout)
	set(&t.Grace, d.Grace)
	set(&t.QueryFirst, d.QueryFirst)
	set(&t.QueryMax, d.QueryMax)
	set(&t.RefundQueryMax, d.RefundQueryMax)
	set(&t.RefundResendAfter, d.RefundResendAfter)
	set(&t.CheckWindow, d.CheckWindow)
	set(&t.PostRetryFirst, d.PostRetryFirst)
	set(&t.PostRetryMax, d.PostRetryMax)
	set(&t.PostingWindow, d.PostingWindow)
	t.QueryFirst = min(t.QueryFirst, t.QueryMax)
	if t.HistoryLimit <= 0 {
		t.HistoryLimit = d.HistoryLimit
	}
	return t
}

// PaymentInput starts a payment. CustomerID, TokenSerial and CertSerial
// come from the client certificate the gateway authenticated; the rest
// from the request, and the signed instruction must say the same.
type PaymentInput struct {
	CustomerID     string    `json:"customer_id"`
	TokenSerial    string    `json:"token_serial"`
	CertSerial     string    `json:"cert_serial"`
	IdempotencyKey string    `json:"idempotency_key"`
	Kind           string    `json:"kind"` // "bills" or "prepay"
	BillIDs        []string  `json:"bill_ids,omitempty"`
	Amount         money.Fen `json:"amount"`
	// Instruction is the encoded protocol.PaymentInstruction, Signature
	// the USB key's over its digest.
	Instruction []byte        `json:"instruction"`
	Signature   []byte        `json:"signature"`
	Timing      PaymentTiming `json:"timing,omitempty"`
	// Resume is set by the workflow itself when it continues as new.
	Resume *PaymentResume `json:"resume,omitempty"`
}

// Validate checks the form of an input; the gateway calls it before
// starting a workflow, the workflow again first thing.
func (in PaymentInput) Validate() error {
	if err := protocol.CheckIdempotencyKey(in.IdempotencyKey); err != nil {
		return err
	}
	switch {
	case in.CustomerID == "" || in.TokenSerial == "" || in.CertSerial == "":
		return errors.New("customer, token and certificate must be known")
	case in.Kind != store.PaymentKindBills && in.Kind != store.PaymentKindPrepay:
		return fmt.Errorf("kind %q is neither bills nor prepay", in.Kind)
	case in.Kind == store.PaymentKindBills && (len(in.BillIDs) == 0 || len(in.BillIDs) > protocol.MaxPaymentBills):
		return fmt.Errorf("%d bills; a payment pays 1 to %d", len(in.BillIDs), protocol.MaxPaymentBills)
	case in.Kind == store.PaymentKindPrepay && len(in.BillIDs) != 0:
		return errors.New("a top-up names no bills")
	case len(protocol.SortBillIDs(in.BillIDs)) != len(in.BillIDs):
		return errors.New("a bill is named twice")
	case in.Amount <= 0 || in.Amount > money.Max:
		return fmt.Errorf("amount %d fen is outside 1 to %d", int64(in.Amount), int64(money.Max))
	case len(in.Instruction) == 0 || len(in.Instruction) > protocol.MaxPaymentInstructionSize:
		return fmt.Errorf("the signed instruction must be 1 to %d bytes", protocol.MaxPaymentInstructionSize)
	case len(in.Signature) == 0 || len(in.Signature) > 1024:
		return errors.New("the signature must be 1 to 1024 bytes")
	}
	return nil
}

// OrderRequest is the argument of UpdateOrder: what the caller asks to
// pay. A request that differs from the workflow's (the idempotency key
// reused for another payment) is refused.
type OrderRequest struct {
	CustomerID string    `json:"customer_id"`
	Kind       string    `json:"kind"`
	BillIDs    []string  `json:"bill_ids,omitempty"`
	Amount     money.Fen `json:"amount"`
}

// OrderRequest returns the update argument that matches the input.
func (in PaymentInput) OrderRequest() OrderRequest {
	return OrderRequest{CustomerID: in.CustomerID, Kind: in.Kind, BillIDs: in.BillIDs, Amount: in.Amount}
}

// Order is the answer of UpdateOrder: where and until when to pay.
type Order struct {
	WorkflowID     string    `json:"workflow_id"`
	IdempotencyKey string    `json:"idempotency_key"`
	OrderID        string    `json:"order_id"`
	Amount         money.Fen `json:"amount"`
	// Form is the signed consume form: posting its fields to its action
	// takes the payer's browser to UnionPay's pay page.
	Form        unionpay.Form `json:"form"`
	TxnTime     time.Time     `json:"txn_time"`
	PayDeadline time.Time     `json:"pay_deadline"`
	// Status is the payment's status when the update answered.
	Status string `json:"status"`
}

// RefundState is the current refund attempt of a payment.
type RefundState struct {
	Attempt int       `json:"attempt"`
	OrderID string    `json:"order_id"`
	TxnTime time.Time `json:"txn_time"`
	// Sent: the gateway answered the request (accepted, or maybe).
	Sent bool `json:"sent"`
	// Refused: the gateway refused the request outright.
	Refused    bool       `json:"refused,omitempty"`
	SentAt     time.Time  `json:"sent_at,omitempty"`
	QueryID    string     `json:"query_id,omitempty"`
	SettleDate string     `json:"settle_date,omitempty"`
	RefundedAt *time.Time `json:"refunded_at,omitempty"`
	LastAnswer string     `json:"last_answer,omitempty"`
}

// PaymentState is the live state of a payment (QueryStatus) and the
// workflow's result.
type PaymentState struct {
	WorkflowID     string                `json:"workflow_id"`
	Status         string                `json:"status"`
	CustomerID     string                `json:"customer_id"`
	TokenSerial    string                `json:"token_serial"`
	IdempotencyKey string                `json:"idempotency_key"`
	Kind           string                `json:"kind"`
	BillIDs        []string              `json:"bill_ids,omitempty"`
	Amount         money.Fen             `json:"amount"`
	Allocations    []platform.Allocation `json:"allocations,omitempty"`
	Order          *Order                `json:"order,omitempty"`
	QueryID        string                `json:"query_id,omitempty"` // UnionPay's ID of the charge
	SettleDate     string                `json:"settle_date,omitempty"`
	PaidAt         *time.Time            `json:"paid_at,omitempty"`
	Receipt        *activities.Receipt   `json:"receipt,omitempty"`
	Refund         *RefundState          `json:"refund,omitempty"`
	// Reason says why the payment was rejected, refunded or expired.
	Reason string `json:"reason,omitempty"`
	// ErrorType is the type of a rejection (activities.ErrType…).
	ErrorType string `json:"error_type,omitempty"`
	// LastOutcome is the latest word about the order, for people: "query:
	// 03 (processing)", "notification: declined"…
	LastOutcome string `json:"last_outcome,omitempty"`
	// Ignored counts notifications ignored: other orders or amounts,
	// duplicates.
	Ignored       int    `json:"ignored_notifications,omitempty"`
	TokenUnbound  bool   `json:"token_unbound,omitempty"`
	UnboundReason string `json:"unbound_reason,omitempty"`
	// Final: nothing more will happen.
	Final bool `json:"final"`
}

// PaymentResume carries a payment across continue-as-new.
type PaymentResume struct {
	State         PaymentState  `json:"state"`
	QueryInterval time.Duration `json:"query_interval"`
}

// Pay is the payment saga (see the top of this file).
func Pay(ctx workflow.Context, in PaymentInput) (PaymentState, error) {
	p := newPayImpl(in.Timing, PaymentState{
		WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID, Status: StatusVerifying, CustomerID: in.CustomerID,
		TokenSerial: in.TokenSerial, IdempotencyKey: in.IdempotencyKey, Kind: in.Kind, BillIDs: in.BillIDs, Amount: in.Amount,
	})
	p.request = in.OrderRequest()
	p.continueAsNew = func(ctx workflow.Context, r *PaymentResume) error {
		next := in
		next.Resume = r
		return workflow.NewContinueAsNewError(ctx, Pay, next)
	}
	if err := p.setup(ctx, "payment"); err != nil {
		return p.state, err
	}
	if in.Resume != nil {
		p.resume(in.Resume)
		return p.continueRun(ctx)
	}
	if err := in.Validate(); err != nil {
		p.failed = temporal.NewNonRetryableApplicationError("invalid payment request: "+err.Error(), ErrTypeInvalidInput, nil)
		p.state.Reason, p.state.ErrorType = p.failed.Error(), ErrTypeInvalidInput
		p.status(ctx, string(store.PaymentRejected))
		return p.finish(ctx)
	}
	return p.run(ctx, in)
}

// RecoverInput asks to finish the payment of an order whose workflow has
// closed: reconciliation found it charged.
type RecoverInput struct {
	OrderID string `json:"order_id"`
	// Charge is the reconciliation file's record of the consume; nil:
	// ask UnionPay.
	Charge *unionpay.Notification `json:"charge,omitempty"`
	Timing PaymentTiming          `json:"timing,omitempty"`
	Resume *PaymentResume         `json:"resume,omitempty"`
}

// RecoverPayment finishes a payment from its record: an expired (or
// abandoned) order that UnionPay charged after all is marked paid and
// posted — or refunded if the platform refuses it; a paid one is posted; a
// refund in progress is carried to its end. A final payment is left alone.
func RecoverPayment(ctx workflow.Context, in RecoverInput) (PaymentState, error) {
	p := newPayImpl(in.Timing, PaymentState{WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID})
	p.continueAsNew = func(ctx workflow.Context, r *PaymentResume) error {
		next := in
		next.Resume = r
		return workflow.NewContinueAsNewError(ctx, RecoverPayment, next)
	}
	if err := p.setup(ctx, "payment-recovery"); err != nil {
		return p.state, err
	}
	if in.Resume != nil {
		p.resume(in.Resume)
		return p.continueRun(ctx)
	}
	var rec store.Payment
	if err := workflow.ExecuteActivity(p.recordCtx(ctx), payments.LoadPayment, in.OrderID).Get(ctx, &rec); err != nil {
		return p.state, err
	}
	p.fromRecord(rec)
	p.upsertPaymentAttrs(ctx)
	if rec.Status == store.PaymentAwaiting || rec.Status == store.PaymentExpired {
		if c := in.Charge; c != nil && c.OrderID == rec.OrderID && c.Amount == money.Fen(rec.Amount) && c.Outcome == unionpay.Succeeded {
			p.charge = &charge{QueryID: c.QueryID, SettleDate: c.SettleDate, Source: "reconciliation"}
		} else {
			var res unionpay.QueryResult
			if err := workflow.ExecuteActivity(p.queryCtx(ctx), payments.QueryOrder, activities.OrderQuery{OrderID: rec.OrderID, TxnTime: rec.TxnTime}).Get(ctx, &res); err != nil {
				return p.state, err
			}
			p.onConsume(ctx, res.Outcome, res.Amount, res.QueryID, res.SettleDate, "query: "+res.RespCode+"/"+res.OrigRespCode, "query")
		}
		if p.charge == nil {
			p.state.Reason = "UnionPay does not confirm a charge: nothing to recover"
			return p.finish(ctx)
		}
	}
	return p.continueRun(ctx)
}

type charge struct {
	QueryID, SettleDate, Source string
}

type payImpl struct {
	t       PaymentTiming
	state   PaymentState
	request OrderRequest // what UpdateOrder must ask (Pay only)

	failed        error   // a rejection, for UpdateOrder
	charge        *charge // UnionPay charged the payer
	queryInterval time.Duration

	refundDone   *unionpay.QueryResult // the current refund attempt succeeded
	refundFailed bool                  // the current refund attempt failed for certain

	notes         workflow.ReceiveChannel
	noting        bool
	continueAsNew func(workflow.Context, *PaymentResume) error
}

func newPayImpl(t PaymentTiming, st PaymentState) *payImpl {
	t = t.withDefaults()
	return &payImpl{t: t, state: st, queryInterval: t.QueryFirst}
}

func (p *payImpl) setup(ctx workflow.Context, kind string) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (PaymentState, error) { return p.state, nil }); err != nil {
		return err
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateOrder, p.orderUpdate, workflow.UpdateHandlerOptions{
		Validator: func(ctx workflow.Context, req OrderRequest) error {
			want := p.request
			if kind != "payment" || req.CustomerID != want.CustomerID || req.Kind != want.Kind || req.Amount != want.Amount ||
				!slices.Equal(protocol.SortBillIDs(req.BillIDs), protocol.SortBillIDs(want.BillIDs)) {
				return fmt.Errorf("idempotency key %s was used for another payment; use a new key", p.state.IdempotencyKey)
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	p.notes = workflow.GetSignalChannel(ctx, SignalNotification)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var n unionpay.Notification
			p.notes.Receive(ctx, &n)
			p.notify(ctx, n)
		}
	})
	workflow.Go(ctx, func(ctx workflow.Context) {
		ch := workflow.GetSignalChannel(ctx, SignalTokenUnbound)
		for {
			var why string
			ch.Receive(ctx, &why)
			if p.state.TokenUnbound {
				continue
			}
			p.state.TokenUnbound, p.state.UnboundReason = true, why
			p.noting = true
			orderID := ""
			if p.state.Order != nil {
				orderID = p.state.Order.OrderID
			}
			err := workflow.ExecuteActivity(p.recordCtx(ctx), payments.NoteTokenUnbound, activities.UnboundNote{
				CustomerID: p.state.CustomerID, TokenSerial: p.state.TokenSerial, OrderID: orderID, Status: p.state.Status, Why: why,
			}).Get(ctx, nil)
			if err != nil {
				workflow.GetLogger(ctx).Error("token unbound not audited", "error", err)
			}
			p.noting = false
		}
	})
	return workflow.UpsertTypedSearchAttributes(ctx, AttrKind.ValueSet(kind), AttrStatus.ValueSet(p.state.Status))
}

func (p *payImpl) upsertPaymentAttrs(ctx workflow.Context) {
	ups := []temporal.SearchAttributeUpdate{AttrCustomerID.ValueSet(p.state.CustomerID), AttrToken.ValueSet(p.state.TokenSerial),
		AttrStatus.ValueSet(p.state.Status)}
	if len(p.state.BillIDs) > 0 {
		ups = append(ups, AttrBillIDs.ValueSet(p.state.BillIDs))
	}
	if p.state.Order != nil {
		ups = append(ups, AttrOrderID.ValueSet(p.state.Order.OrderID))
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, ups...); err != nil {
		workflow.GetLogger(ctx).Warn("search attributes not updated", "error", err)
	}
}

// orderUpdate answers once the order exists, or the payment was rejected.
func (p *payImpl) orderUpdate(ctx workflow.Context, _ OrderRequest) (Order, error) {
	if err := workflow.Await(ctx, func() bool { return p.state.Order != nil || p.failed != nil }); err != nil {
		return Order{}, err
	}
	if p.state.Order == nil {
		return Order{}, p.failed
	}
	o := *p.state.Order
	o.Status = p.state.Status
	return o, nil
}

func (p *payImpl) status(ctx workflow.Context, s string) {
	p.state.Status = s
	setStatus(ctx, s)
}

// run takes a new payment from its instruction to its end.
func (p *payImpl) run(ctx workflow.Context, in PaymentInput) (PaymentState, error) {
	p.upsertPaymentAttrs(ctx)
	// A workflow started again for a key already recorded carries on from
	// the record.
	var found activities.FoundPayment
	if err := workflow.ExecuteActivity(p.checkCtx(ctx), payments.FindPayment, activities.FindPayment{
		CustomerID: in.CustomerID, IdempotencyKey: in.IdempotencyKey,
	}).Get(ctx, &found); err != nil {
		return p.reject(ctx, in, nil, err)
	}
	if found.Found {
		return p.fromExistingRecord(ctx, in, found.Payment)
	}

	var verified activities.VerifiedInstruction
	if err := workflow.ExecuteActivity(p.checkCtx(ctx), payments.VerifyInstruction, activities.InstructionCheck{
		CustomerID: in.CustomerID, TokenSerial: in.TokenSerial, CertSerial: in.CertSerial, IdempotencyKey: in.IdempotencyKey,
		Kind: in.Kind, BillIDs: in.BillIDs, Amount: in.Amount, Instruction: in.Instruction, Signature: in.Signature,
	}).Get(ctx, &verified); err != nil {
		return p.reject(ctx, in, nil, err)
	}
	var checked activities.CheckedBills
	if err := workflow.ExecuteActivity(p.checkCtx(ctx), payments.CheckBills, activities.BillsCheck{
		CustomerID: in.CustomerID, Kind: in.Kind, BillIDs: in.BillIDs, Amount: in.Amount,
	}).Get(ctx, &checked); err != nil {
		return p.reject(ctx, in, verified.SHA256, err)
	}
	p.state.Allocations = checked.Allocations
	if p.state.TokenUnbound {
		return p.reject(ctx, in, verified.SHA256, temporal.NewNonRetryableApplicationError(
			"the USB key was unbound before the order was made ("+p.state.UnboundReason+"); nothing was charged", ErrTypeTokenUnbound, nil))
	}

	txnTime := workflow.Now(ctx).UTC().Truncate(time.Second)
	var created activities.CreatedOrder
	if err := workflow.ExecuteActivity(p.checkCtx(ctx), payments.CreateOrder, activities.NewOrder{
		CustomerID: in.CustomerID, TokenSerial: in.TokenSerial, CertSerial: in.CertSerial, IdempotencyKey: in.IdempotencyKey,
		Kind: in.Kind, Allocations: checked.Allocations, Amount: in.Amount, InstructionSHA256: verified.SHA256,
		TxnTime: txnTime, PayDeadline: txnTime.Add(p.t.PayTimeout),
	}).Get(ctx, &created); err != nil {
		if errType(err) == activities.ErrTypePaymentConflict {
			// The key is recorded for another payment: nothing of ours
			// to record.
			p.failed = temporal.NewNonRetryableApplicationError(reason(err), activities.ErrTypePaymentConflict, nil)
			p.state.Reason, p.state.ErrorType = reason(err), activities.ErrTypePaymentConflict
			p.status(ctx, string(store.PaymentRejected))
			return p.finish(ctx)
		}
		// Whether the order was recorded is not known: MarkRejected
		// records the rejection only if it was not, and reject carries on
		// with the order otherwise.
		return p.reject(ctx, in, verified.SHA256, err)
	}
	p.setOrder(ctx, created)
	p.status(ctx, string(store.PaymentAwaiting))
	return p.continueRun(ctx)
}

func (p *payImpl) setOrder(ctx workflow.Context, c activities.CreatedOrder) {
	p.state.Order = &Order{WorkflowID: p.state.WorkflowID, IdempotencyKey: p.state.IdempotencyKey, OrderID: c.OrderID, Amount: c.Amount,
		Form: c.Form, TxnTime: c.TxnTime, PayDeadline: c.PayDeadline}
	p.upsertPaymentAttrs(ctx)
}

// reject ends a payment refused before any order: recorded with its
// reason, audited, and the update answered with the refusal.
func (p *payImpl) reject(ctx workflow.Context, in PaymentInput, instructionSHA []byte, cause error) (PaymentState, error) {
	typ := errType(cause)
	msg := reason(cause)
	var timeout *temporal.TimeoutError
	if errors.As(cause, &timeout) || typ == "" {
		typ, msg = ErrTypeUnavailable, "GridPay could not check the payment in time (a service is unavailable); nothing was charged, try again with a new payment"
	}
	err := workflow.ExecuteActivity(p.recordCtx(ctx), payments.MarkRejected, activities.Rejection{
		CustomerID: in.CustomerID, TokenSerial: in.TokenSerial, CertSerial: in.CertSerial, IdempotencyKey: in.IdempotencyKey,
		Kind: in.Kind, BillIDs: in.BillIDs, Amount: in.Amount, InstructionSHA256: instructionSHA, Reason: msg,
	}).Get(ctx, nil)
	if errType(err) == activities.ErrTypeIllegalTransition {
		// The order was recorded after all (CreateOrder failed after
		// recording it): the payer may get it and pay, so the saga
		// carries on with it.
		var found activities.FoundPayment
		if ferr := workflow.ExecuteActivity(p.recordCtx(ctx), payments.FindPayment, activities.FindPayment{
			CustomerID: in.CustomerID, IdempotencyKey: in.IdempotencyKey,
		}).Get(ctx, &found); ferr == nil && found.Found {
			return p.fromExistingRecord(ctx, in, found.Payment)
		}
	}
	if err != nil {
		return p.state, err
	}
	// The update answers only now, once the rejection is recorded.
	p.failed = temporal.NewNonRetryableApplicationError(msg, typ, nil)
	p.state.Reason, p.state.ErrorType = msg, typ
	p.status(ctx, string(store.PaymentRejected))
	return p.finish(ctx)
}

// fromExistingRecord carries on a payment recorded by an earlier run of
// this workflow.
func (p *payImpl) fromExistingRecord(ctx workflow.Context, in PaymentInput, rec store.Payment) (PaymentState, error) {
	if rec.WorkflowID != p.state.WorkflowID {
		p.failed = temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("idempotency key %s is recorded for another payment (%s)", in.IdempotencyKey, rec.WorkflowID), activities.ErrTypePaymentConflict, nil)
		p.state.Reason, p.state.ErrorType = p.failed.Error(), activities.ErrTypePaymentConflict
		p.status(ctx, string(store.PaymentRejected))
		return p.finish(ctx)
	}
	p.fromRecord(rec)
	p.upsertPaymentAttrs(ctx)
	switch rec.Status {
	case store.PaymentRejected:
		p.failed = temporal.NewNonRetryableApplicationError(rec.Reason, "Rejected", nil)
		return p.finish(ctx)
	case store.PaymentAwaiting:
		// Hand out the same order again: CreateOrder finds the record.
		var created activities.CreatedOrder
		if err := workflow.ExecuteActivity(p.recordCtx(ctx), payments.CreateOrder, activities.NewOrder{
			CustomerID: rec.CustomerID, TokenSerial: rec.TokenSerial, CertSerial: rec.CertSerial, IdempotencyKey: rec.IdempotencyKey,
			Kind: rec.Kind, Allocations: p.state.Allocations, Amount: money.Fen(rec.Amount), InstructionSHA256: rec.InstructionSHA256,
			TxnTime: rec.TxnTime, PayDeadline: rec.PayDeadline,
		}).Get(ctx, &created); err != nil {
			return p.state, err
		}
		p.setOrder(ctx, created)
	}
	return p.continueRun(ctx)
}

// fromRecord sets the state from a payment's record.
func (p *payImpl) fromRecord(rec store.Payment) {
	s := &p.state
	s.CustomerID, s.TokenSerial, s.IdempotencyKey, s.Kind = rec.CustomerID, rec.TokenSerial, rec.IdempotencyKey, rec.Kind
	s.BillIDs, s.Amount, s.Reason, s.Status = rec.BillIDs, money.Fen(rec.Amount), rec.Reason, string(rec.Status)
	s.Allocations = nil
	for i, id := range rec.BillIDs {
		s.Allocations = append(s.Allocations, platform.Allocation{BillID: id, Amount: money.Fen(rec.BillAmounts[i])})
	}
	if rec.OrderID != "" {
		s.Order = &Order{WorkflowID: rec.WorkflowID, IdempotencyKey: rec.IdempotencyKey, OrderID: rec.OrderID, Amount: money.Fen(rec.Amount),
			TxnTime: rec.TxnTime, PayDeadline: rec.PayDeadline}
	}
	if rec.QueryID != "" {
		s.QueryID, s.SettleDate, s.PaidAt = rec.QueryID, rec.SettleDate, rec.PaidAt
		p.charge = &charge{QueryID: rec.QueryID, SettleDate: rec.SettleDate, Source: "record"}
	}
	if rec.PostedAt != nil {
		s.Receipt = &activities.Receipt{WorkflowID: rec.WorkflowID, CustomerID: rec.CustomerID, Kind: rec.Kind, Amount: money.Fen(rec.Amount),
			Allocations: s.Allocations, OrderID: rec.OrderID, QueryID: rec.QueryID, PostingRef: rec.PostingRef, SettleDate: rec.SettleDate,
			PaidAt: *rec.PaidAt, PostedAt: *rec.PostedAt}
	}
	if rec.RefundAttempt > 0 {
		// Whether the attempt was sent is not recorded: sending it again
		// is harmless (a duplicate).
		s.Refund = &RefundState{Attempt: rec.RefundAttempt, OrderID: rec.RefundOrderID, TxnTime: *rec.RefundTxnTime,
			QueryID: rec.RefundQueryID, SettleDate: rec.RefundSettleDate, RefundedAt: rec.RefundedAt}
	}
}

func (p *payImpl) resume(r *PaymentResume) {
	p.state = r.State
	if r.QueryInterval > 0 {
		p.queryInterval = r.QueryInterval
	}
	if p.state.QueryID != "" {
		p.charge = &charge{QueryID: p.state.QueryID, SettleDate: p.state.SettleDate, Source: "resumed"}
	}
}

// continueRun takes the payment from its current status to its end.
func (p *payImpl) continueRun(ctx workflow.Context) (PaymentState, error) {
	switch store.PaymentStatus(p.state.Status) {
	case store.PaymentAwaiting:
		paid, err := p.awaitPayment(ctx)
		if err != nil {
			return p.state, err
		}
		if !paid {
			if err := p.expire(ctx); err != nil {
				return p.state, err
			}
			return p.finish(ctx)
		}
		if err := p.settle(ctx); err != nil {
			return p.state, err
		}
	case store.PaymentPaid, store.PaymentExpired:
		if p.charge != nil {
			if err := p.settle(ctx); err != nil {
				return p.state, err
			}
		}
	case store.PaymentRefunding:
		if err := p.refund(ctx, p.state.Reason); err != nil {
			return p.state, err
		}
	}
	return p.finish(ctx)
}

// finish ends the workflow: a charge that arrived meanwhile (a late
// notification for an expired order) is still settled; handlers in flight
// are let finish.
func (p *payImpl) finish(ctx workflow.Context) (PaymentState, error) {
	for {
		p.drain(ctx)
		if p.state.Status == string(store.PaymentExpired) && p.charge != nil {
			if err := p.settle(ctx); err != nil {
				return p.state, err
			}
			continue
		}
		if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) && !p.noting }); err != nil {
			return p.state, err
		}
		// Signals that came while waiting for the handlers.
		if p.notes.Len() == 0 {
			break
		}
	}
	p.state.Final = true
	return p.state, nil
}

// drain handles the notifications already delivered.
func (p *payImpl) drain(ctx workflow.Context) {
	for {
		var n unionpay.Notification
		if !p.notes.ReceiveAsync(&n) {
			return
		}
		p.notify(ctx, n)
	}
}

// maybeContinueAsNew continues as new when the history grew long, at a
// point where the state says everything.
func (p *payImpl) maybeContinueAsNew(ctx workflow.Context) error {
	info := workflow.GetInfo(ctx)
	if info.GetCurrentHistoryLength() < p.t.HistoryLimit && !info.GetContinueAsNewSuggested() {
		return nil
	}
	p.drain(ctx)
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) && !p.noting }); err != nil {
		return err
	}
	p.drain(ctx)
	// News that just came is handled by this run, which is about to move on.
	if p.charge != nil && p.state.PaidAt == nil || p.refundDone != nil || p.refundFailed {
		return nil
	}
	st := p.state
	if p.charge != nil {
		st.QueryID, st.SettleDate = p.charge.QueryID, p.charge.SettleDate
	}
	return p.continueAsNew(ctx, &PaymentResume{State: st, QueryInterval: p.queryInterval})
}

// notify handles a notification the gateway verified.
func (p *payImpl) notify(ctx workflow.Context, n unionpay.Notification) {
	log := workflow.GetLogger(ctx)
	switch {
	case p.state.Order != nil && n.OrderID == p.state.Order.OrderID && n.TxnType == unionpay.TxnConsume:
		p.onConsume(ctx, n.Outcome, n.Amount, n.QueryID, n.SettleDate, "notification: "+n.RespCode+" "+n.RespMsg, "notification")
	case p.state.Refund != nil && n.OrderID == p.state.Refund.OrderID && (n.TxnType == unionpay.TxnRefund || n.TxnType == unionpay.TxnCancel):
		p.onRefund(ctx, n.Outcome, n.Amount, n.QueryID, n.SettleDate, "notification: "+n.RespCode+" "+n.RespMsg)
	default:
		p.state.Ignored++
		log.Warn("notification ignored: not about this payment", "order_id", n.OrderID, "txn_type", n.TxnType)
	}
}

// onConsume takes in what UnionPay says about the order. Only a success
// for exactly the order's amount is a charge; unknown stays unknown, and a
// failure before the deadline is one attempt of the payer, who may try
// again.
func (p *payImpl) onConsume(ctx workflow.Context, o unionpay.Outcome, amount money.Fen, queryID, settleDate, what, source string) {
	log := workflow.GetLogger(ctx)
	if p.charge != nil {
		if o == unionpay.Succeeded && queryID != p.charge.QueryID {
			log.Error("a second charge reported for one order: left to reconciliation", "query_id", queryID, "charged", p.charge.QueryID)
		}
		if source == "notification" {
			p.state.Ignored++
		}
		return
	}
	p.state.LastOutcome = what
	if o != unionpay.Succeeded {
		return
	}
	if amount != p.state.Amount {
		p.state.Ignored++
		p.state.LastOutcome = fmt.Sprintf("%s: reports %s, the order is for %s (ignored)", what, amount.Display(), p.state.Amount.Display())
		log.Error("UnionPay reports a charge of another amount", "amount", int64(amount), "order_amount", int64(p.state.Amount))
		return
	}
	p.charge = &charge{QueryID: queryID, SettleDate: settleDate, Source: source}
}

// awaitPayment waits for the charge: a notification, or queries with
// backoff. It returns false only once, past the deadline and its grace,
// UnionPay says the order does not exist or failed.
func (p *payImpl) awaitPayment(ctx workflow.Context) (bool, error) {
	deadline := p.state.Order.PayDeadline.Add(p.t.Grace)
	for p.charge == nil {
		wait := p.queryInterval
		if left := deadline.Sub(workflow.Now(ctx)); left > 0 && left < wait {
			wait = left
		}
		if _, err := workflow.AwaitWithTimeout(ctx, wait, func() bool { return p.charge != nil }); err != nil {
			return false, err
		}
		if p.charge != nil {
			break
		}
		var res unionpay.QueryResult
		err := workflow.ExecuteActivity(p.queryCtx(ctx), payments.QueryOrder, activities.OrderQuery{
			OrderID: p.state.Order.OrderID, TxnTime: p.state.Order.TxnTime,
		}).Get(ctx, &res)
		p.queryInterval = min(2*p.queryInterval, p.t.QueryMax)
		if err != nil {
			p.state.LastOutcome = "query failed: " + reason(err)
		} else {
			p.onConsume(ctx, res.Outcome, res.Amount, res.QueryID, res.SettleDate, describeQuery(res), "query")
			if p.charge == nil && !workflow.Now(ctx).Before(deadline) && neverPaid(res) {
				return false, nil
			}
		}
		if err := p.maybeContinueAsNew(ctx); err != nil {
			return false, err
		}
	}
	return true, nil
}

// neverPaid: the gateway does not know the order (34), or knows it failed.
// Meaningful only after the deadline.
func neverPaid(res unionpay.QueryResult) bool {
	return res.RespCode == unionpay.RespNotFound || res.RespCode == unionpay.RespSuccess && res.Outcome == unionpay.Failed
}

func describeQuery(res unionpay.QueryResult) string {
	if res.RespCode != unionpay.RespSuccess {
		return fmt.Sprintf("query: %s %s", res.RespCode, res.RespMsg)
	}
	return fmt.Sprintf("query: %s %s (%s)", res.OrigRespCode, res.OrigRespMsg, res.Outcome)
}

func (p *payImpl) expire(ctx workflow.Context) error {
	why := fmt.Sprintf("not paid by the deadline %s", p.state.Order.PayDeadline.In(platform.Shanghai).Format("2006-01-02 15:04:05 MST"))
	if err := workflow.ExecuteActivity(p.recordCtx(ctx), payments.MarkExpired, activities.ExpireRequest{
		OrderID: p.state.Order.OrderID, Reason: why,
	}).Get(ctx, nil); err != nil {
		return err
	}
	p.state.Reason = why
	p.status(ctx, string(store.PaymentExpired))
	return nil
}

// settle records the charge and posts it, or refunds it if the platform
// refuses it for good.
func (p *payImpl) settle(ctx workflow.Context) error {
	orderID := p.state.Order.OrderID
	if p.state.PaidAt == nil {
		var rec store.Payment
		if err := workflow.ExecuteActivity(p.recordCtx(ctx), payments.MarkPaid, activities.PaidRequest{
			OrderID: orderID, QueryID: p.charge.QueryID, SettleDate: p.charge.SettleDate, Source: p.charge.Source,
		}).Get(ctx, &rec); err != nil {
			return err
		}
		p.state.QueryID, p.state.SettleDate, p.state.PaidAt = rec.QueryID, rec.SettleDate, rec.PaidAt
		p.state.Reason = ""
	}
	p.status(ctx, string(store.PaymentPaid))
	for {
		var posted platform.Payment
		err := workflow.ExecuteActivity(p.postCtx(ctx), payments.PostToPlatform, orderID).Get(ctx, &posted)
		switch errType(err) {
		case "":
			if err != nil {
				break
			}
			var rc activities.Receipt
			if err := workflow.ExecuteActivity(p.recordCtx(ctx), payments.MarkPosted, activities.PostedRequest{
				OrderID: orderID, PostingRef: posted.Reference, PostedAt: posted.PostedAt,
			}).Get(ctx, &rc); err != nil {
				return err
			}
			p.state.Receipt = &rc
			p.status(ctx, string(store.PaymentPosted))
			return nil
		case activities.ErrTypePostingRefused:
			return p.refund(ctx, "refunded because "+reason(err))
		case activities.ErrTypeIllegalTransition:
			return err
		}
		// The posting window ran out with the platform still down: go on.
		p.state.LastOutcome = "posting not done yet: " + reason(err)
		workflow.GetLogger(ctx).Warn("posting still failing; trying again", "error", err)
		if err := p.maybeContinueAsNew(ctx); err != nil {
			return err
		}
	}
}

// refund gives the charge back (see the top of this file for the rules on
// attempts) and records it.
func (p *payImpl) refund(ctx workflow.Context, why string) error {
	if p.state.Refund == nil {
		p.state.Refund = &RefundState{Attempt: 1}
	}
	p.state.Reason = why
	p.status(ctx, string(store.PaymentRefunding))
	pause := p.t.QueryFirst
	for {
		r := p.state.Refund
		if r.OrderID == "" {
			r.OrderID = activities.RefundOrderIDFor(p.state.Order.OrderID, r.Attempt)
		}
		if r.TxnTime.IsZero() {
			r.TxnTime = workflow.Now(ctx).UTC().Truncate(time.Second)
		}
		if !r.Sent {
			ans, err := p.sendRefund(ctx)
			if err != nil {
				return err
			}
			r.OrderID, r.LastAnswer = ans.RefundOrderID, ans.Result+": "+ans.RespCode+" "+ans.RespMsg
			r.Sent, r.Refused, r.SentAt = true, ans.Result == activities.RefundRefused, workflow.Now(ctx)
		}
		outcome, err := p.awaitRefund(ctx)
		if err != nil {
			return err
		}
		switch outcome {
		case refundSucceeded:
			var rec store.Payment
			if err := workflow.ExecuteActivity(p.recordCtx(ctx), payments.MarkRefunded, activities.RefundedRequest{
				OrderID: p.state.Order.OrderID, RefundOrderID: r.OrderID, QueryID: p.refundDone.QueryID, SettleDate: p.refundDone.SettleDate,
			}).Get(ctx, &rec); err != nil {
				return err
			}
			r.QueryID, r.SettleDate, r.RefundedAt = p.refundDone.QueryID, p.refundDone.SettleDate, rec.RefundedAt
			p.status(ctx, string(store.PaymentRefunded))
			return nil
		case refundResend:
			r.Sent = false
		case refundAgain:
			// This attempt did not and will not go through: a new one,
			// with its own orderId, after a pause.
			if err := workflow.Sleep(ctx, pause); err != nil {
				return err
			}
			pause = min(2*pause, p.t.RefundQueryMax)
			p.state.Refund = &RefundState{Attempt: r.Attempt + 1, LastAnswer: r.LastAnswer}
		}
		p.refundDone, p.refundFailed = nil, false
	}
}

// sendRefund sends the current attempt until the gateway answers: its
// transport failures are retried by the activity, window after window.
func (p *payImpl) sendRefund(ctx workflow.Context) (activities.RefundAnswer, error) {
	r := p.state.Refund
	for {
		var ans activities.RefundAnswer
		err := workflow.ExecuteActivity(p.refundCtx(ctx), payments.Refund, activities.RefundRequest{
			OrderID: p.state.Order.OrderID, Attempt: r.Attempt, TxnTime: r.TxnTime, Reason: p.state.Reason,
		}).Get(ctx, &ans)
		if err == nil {
			return ans, nil
		}
		if errType(err) == activities.ErrTypeIllegalTransition {
			return ans, err
		}
		r.LastAnswer = "refund not sent yet: " + reason(err)
		if err := p.maybeContinueAsNew(ctx); err != nil {
			return ans, err
		}
	}
}

type refundOutcome int

const (
	refundSucceeded refundOutcome = iota
	refundResend                  // send the same attempt again
	refundAgain                   // the attempt failed for certain, or never existed: a new attempt
)

// onRefund takes in what UnionPay says about the current refund attempt.
func (p *payImpl) onRefund(ctx workflow.Context, o unionpay.Outcome, amount money.Fen, queryID, settleDate, what string) {
	r := p.state.Refund
	if p.refundDone != nil || p.refundFailed {
		p.state.Ignored++
		return
	}
	r.LastAnswer = what
	switch o {
	case unionpay.Succeeded:
		if amount != p.state.Amount {
			workflow.GetLogger(ctx).Error("UnionPay reports a refund of another amount", "amount", int64(amount), "payment_amount", int64(p.state.Amount))
			return
		}
		p.refundDone = &unionpay.QueryResult{QueryID: queryID, SettleDate: settleDate}
	case unionpay.Failed:
		p.refundFailed = true
	}
}

// awaitRefund waits for the current attempt's outcome: a notification, or
// queries with backoff.
func (p *payImpl) awaitRefund(ctx workflow.Context) (refundOutcome, error) {
	r := p.state.Refund
	interval := p.t.QueryFirst
	for {
		if _, err := workflow.AwaitWithTimeout(ctx, interval, func() bool { return p.refundDone != nil || p.refundFailed }); err != nil {
			return 0, err
		}
		if p.refundDone == nil && !p.refundFailed {
			var res unionpay.QueryResult
			err := workflow.ExecuteActivity(p.queryCtx(ctx), payments.QueryRefund, activities.OrderQuery{OrderID: r.OrderID, TxnTime: r.TxnTime}).Get(ctx, &res)
			interval = min(2*interval, p.t.RefundQueryMax)
			switch {
			case err != nil:
				r.LastAnswer = "query failed: " + reason(err)
			case res.RespCode == unionpay.RespNotFound:
				r.LastAnswer = describeQuery(res)
				if r.Refused {
					// Refused, and the gateway confirms it has no such
					// refund: safe to make a new one.
					return refundAgain, nil
				}
				if workflow.Now(ctx).Sub(r.SentAt) >= p.t.RefundResendAfter {
					return refundResend, nil
				}
			case res.RespCode == unionpay.RespSuccess:
				p.onRefund(ctx, res.Outcome, res.Amount, res.QueryID, res.SettleDate, describeQuery(res))
			default:
				r.LastAnswer = describeQuery(res)
			}
		}
		switch {
		case p.refundDone != nil:
			return refundSucceeded, nil
		case p.refundFailed:
			return refundAgain, nil
		}
		if err := p.maybeContinueAsNew(ctx); err != nil {
			return 0, err
		}
	}
}

// Activity options of the saga's steps.

func retry(first, max time.Duration) *temporal.RetryPolicy {
	// A maximum below the first interval (a short post_retry_max with the
	// default first retry) is refused by the server: the maximum wins.
	first = min(first, max)
	return &temporal.RetryPolicy{
		InitialInterval: first, BackoffCoefficient: 2, MaximumInterval: max,
		NonRetryableErrorTypes: []string{
			activities.ErrTypeBadInstruction, activities.ErrTypeStaleInstruction, activities.ErrTypeReplay,
			activities.ErrTypeBillNotPayable, activities.ErrTypeAmountMismatch, activities.ErrTypePaymentConflict,
			activities.ErrTypePostingRefused, activities.ErrTypeIllegalTransition, activities.ErrTypeUnknownCustomer,
			activities.ErrTypeNotBound, activities.ErrTypeRevoked,
		},
	}
}

// checkCtx: the steps before the order, while the payer waits.
func (p *payImpl) checkCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second, ScheduleToCloseTimeout: p.t.CheckWindow, RetryPolicy: retry(time.Second, 10*time.Second),
	})
}

// recordCtx: writes of the payment's record, retried until the database
// answers (money may be moving).
func (p *payImpl) recordCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second, RetryPolicy: retry(time.Second, time.Minute),
	})
}

// queryCtx: one query; a failure is one unknown answer more.
func (p *payImpl) queryCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second, ScheduleToCloseTimeout: 2 * time.Minute, RetryPolicy: retry(time.Second, 10*time.Second),
	})
}

// postCtx: posting, retried with backoff for a whole window.
func (p *payImpl) postCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute, ScheduleToCloseTimeout: p.t.PostingWindow, RetryPolicy: retry(p.t.PostRetryFirst, p.t.PostRetryMax),
	})
}

// refundCtx: sending a refund, retried like posting.
func (p *payImpl) refundCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute, ScheduleToCloseTimeout: p.t.PostingWindow, RetryPolicy: retry(p.t.PostRetryFirst, p.t.PostRetryMax),
	})
}

// errType is the type of an activity's application error, "" for others
// (timeouts, cancellations).
func errType(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Type()
	}
	return ""
}

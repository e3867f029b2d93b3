package workflows

// The load saga (patent CN101211451A, 圈存): prepaid funds from the
// customer's account at the platform onto the wallet of the USB key. What
// the gateway, the client and the worker use:
//
//	Workflow  Load(LoadInput) → LoadState, ID LoadWorkflowID(token, sequence) = "load/<token-serial>/<sequence>".
//	          The gateway checks LoadInput.Validate, then starts it with update-with-start:
//	            StartWorkflowOptions{ID: LoadWorkflowID(…), TaskQueue: TaskQueue,
//	              WorkflowIDConflictPolicy: USE_EXISTING, WorkflowIDReusePolicy: REJECT_DUPLICATE}
//	            UpdateWorkflowOptions{UpdateName: UpdateAllow, Args: []any{in.AllowRequest()}, WaitForStage: Completed}
//	          The same signed request sent again reaches the same workflow and gets the same allow; another
//	          request for the same sequence is refused by the validator; once the workflow has closed the
//	          start is refused (WorkflowExecutionAlreadyStarted): each (token, sequence) is accepted once.
//	Update    UpdateAllow "allow" (AllowRequest) → AllowAnswer: the HSM-signed allow command, once the platform
//	          debited the account. A load refused before the debit fails the update with a
//	          *temporal.ApplicationError whose Type() is the reason's activities.ErrType… (BadLoadRequest,
//	          StaleLoadRequest, LoadReplay, LoadPending, WalletMismatch, AccountMismatch, LoadAmount,
//	          UnknownCustomer, NotBound, CertificateRevoked, DebitRefused) or ErrTypeTokenUnbound,
//	          ErrTypeUnavailable, ErrTypeInvalidInput.
//	Update    UpdateReport "report" (ReportInput) → LoadOutcome: a token-signed load report the gateway
//	          received (receipt, error report, or state report at the start of a session). An activity
//	          verifies it (a bad one fails the update, audited); the answer says where the load stands.
//	Update    UpdateOperatorSettle "operator-settle" (OperatorSettlement) → LoadOutcome: an operator settles
//	          a load the key can no longer settle (see "Token unbound" below). Accepted only while the load
//	          awaits the key's contact, its allow has expired and its key is unbound; audited with the
//	          operator's name and reason (adminctl loads settle).
//	Query     QueryStatus "status" → LoadState.
//	Signal    SignalTokenUnbound "token-unbound" (string), from the unbinding saga.
//	Activities &activities.Loads{Records: store.Loads{DB: db}, Platform: <platform client>,
//	          Signer: &activities.ServiceKey{Keys: <HSM keys>, Label: load.signer_key_label, Intermediates: <services CA>}}.
//	Search    CustomerID, TokenSerial, OperationKind "load", OperationStatus (the statuses below): operators
//	          find loads waiting for the key with OperationKind = "load" AND OperationStatus = "awaiting-contact".
//
// Statuses: verifying, debiting, signing, awaiting-receipt (the allow is out), awaiting-contact (no
// receipt by the allow's expiry plus LoadTiming.ReceiptGrace: waiting for the key's next session),
// cancelling (the key said it did not take the load: refunded once the allow has expired), and the
// final confirmed, refunded, rejected. Business outcomes complete the workflow with LoadState (Final
// true); it fails only on a bug-like inconsistency of the records.
//
// Money rules the code keeps:
//   - Nothing is debited before the request is verified and recorded, and any refusal up to the debit
//     is a rejection: nothing moved.
//   - The debit is keyed by the load ID at the platform and retried for as long as it takes; only a
//     permanent refusal (insufficient funds...) rejects the load.
//   - The allow is created only by the signing activity. If it cannot be signed, it was never handed
//     out: the debit is refunded at once.
//   - Once the allow is out, the outcome is decided by what the key signed, never by guessing: a
//     receipt carrying the very wallet state GridPay signed, or a state report whose sequence reached
//     the load, confirms it. A bad receipt or an error report means not applied; a state report means
//     not applied only when GridPay received it after the allow's expiry (the key refuses an expired
//     allow, so it can never be applied later). Not applied is refunded, but never before the allow
//     has expired. Without any of these the load waits (awaiting-contact) for as long as it takes: every
//     session of the client sends the key's signed wallet state first.
//   - The word of a revoked key can confirm a load (its wallet has the money) but never cancel one.
//   - The refund is keyed by the load ID too; confirmed and refunded never both (the store enforces
//     it again).
//
// Token unbound: before the debit the load is rejected, nothing moved; after the debit and before the
// allow exists it is refunded; once the allow is out, money is moving and the load carries on to its
// outcome (the unbinding is recorded, audited and shown in the status). An unbound key cannot reach
// the gateway any more, so a load that ends up awaiting its contact would wait for ever: once its allow
// has expired an operator settles it (UpdateOperatorSettle) on evidence from outside the system: the
// key read at the desk, the meter card's records. Refunding is safe then (the key refuses an expired
// allow); confirming says the money is on the lost key.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/store"
)

var loads *activities.Loads

// Names of the load workflow's updates (QueryStatus and SignalTokenUnbound
// are shared with the payment saga).
const (
	UpdateAllow          = "allow"
	UpdateReport         = "report"
	UpdateOperatorSettle = "operator-settle"
)

// Statuses of a load workflow besides the store's.
const (
	LoadStatusVerifying       = "verifying"
	LoadStatusDebiting        = "debiting"
	LoadStatusSigning         = "signing"
	LoadStatusAwaitingReceipt = "awaiting-receipt"
	LoadStatusAwaitingContact = "awaiting-contact"
	LoadStatusCancelling      = "cancelling"
)

// maxLoadReports bounds the reports one load takes, and so its history.
const maxLoadReports = 200

// LoadWorkflowID is the workflow ID of a token's load with a sequence.
func LoadWorkflowID(tokenSerial string, sequence uint64) string {
	return "load/" + tokenSerial + "/" + strconv.FormatUint(sequence, 10)
}

// LoadTiming tunes the saga's waits; zero fields take the defaults
// (DefaultLoadTiming).
type LoadTiming struct {
	// AllowValidity is how long an allow is good for (its expiry).
	AllowValidity time.Duration `json:"allow_validity,omitempty"`
	// ReceiptGrace is waited for the receipt beyond the expiry before the
	// load waits for the key's next contact.
	ReceiptGrace time.Duration `json:"receipt_grace,omitempty"`
	// CheckWindow bounds verification while the customer waits.
	CheckWindow time.Duration `json:"check_window,omitempty"`
	// SignWindow bounds the HSM's signing; past it the debit is refunded.
	SignWindow time.Duration `json:"sign_window,omitempty"`
	// RetryFirst and RetryMax are the backoff of debit and refund
	// retries; MoneyWindow the schedule-to-close of one such activity (the
	// loop starts another after it).
	RetryFirst  time.Duration `json:"retry_first,omitempty"`
	RetryMax    time.Duration `json:"retry_max,omitempty"`
	MoneyWindow time.Duration `json:"money_window,omitempty"`
}

// DefaultLoadTiming is the production timing.
var DefaultLoadTiming = LoadTiming{
	AllowValidity: 2 * time.Minute,
	ReceiptGrace:  30 * time.Second,
	CheckWindow:   2 * time.Minute,
	SignWindow:    time.Minute,
	RetryFirst:    time.Second,
	RetryMax:      time.Minute,
	MoneyWindow:   24 * time.Hour,
}

func (t LoadTiming) withDefaults() LoadTiming {
	d := DefaultLoadTiming
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.AllowValidity, &d.AllowValidity}, {&t.ReceiptGrace, &d.ReceiptGrace}, {&t.CheckWindow, &d.CheckWindow},
		{&t.SignWindow, &d.SignWindow}, {&t.RetryFirst, &d.RetryFirst}, {&t.RetryMax, &d.RetryMax}, {&t.MoneyWindow, &d.MoneyWindow},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	t.RetryFirst = min(t.RetryFirst, t.RetryMax)
	return t
}

// LoadInput starts a load. CustomerID, TokenSerial and CertSerial come
// from the client certificate the gateway authenticated, Sequence and
// Amount from the request, which the key signed and which must say the
// same.
type LoadInput struct {
	CustomerID  string    `json:"customer_id"`
	TokenSerial string    `json:"token_serial"`
	CertSerial  string    `json:"cert_serial"`
	Sequence    uint64    `json:"sequence"`
	Amount      money.Fen `json:"amount"`
	// Request is the encoded protocol.LoadRequest, Signature the USB key's
	// over its digest.
	Request   []byte     `json:"request"`
	Signature []byte     `json:"signature"`
	Timing    LoadTiming `json:"timing,omitempty"`
}

// Validate checks the form of an input; the gateway calls it before
// starting a workflow, the workflow again first thing.
func (in LoadInput) Validate() error {
	switch {
	case in.CustomerID == "" || in.TokenSerial == "" || in.CertSerial == "":
		return errors.New("customer, token and certificate must be known")
	case in.Sequence == 0 || in.Sequence > 1<<63-1:
		return fmt.Errorf("sequence %d is outside 1 to 2^63-1", in.Sequence)
	case in.Amount <= 0 || in.Amount > money.Max:
		return fmt.Errorf("amount %d fen is outside 1 to %d", int64(in.Amount), int64(money.Max))
	case len(in.Request) == 0 || len(in.Request) > protocol.MaxLoadRequestSize:
		return fmt.Errorf("the signed request must be 1 to %d bytes", protocol.MaxLoadRequestSize)
	case len(in.Signature) == 0 || len(in.Signature) > protocol.MaxSignatureSize:
		return fmt.Errorf("the signature must be 1 to %d bytes", protocol.MaxSignatureSize)
	}
	return nil
}

// AllowRequest is the argument of UpdateAllow: which signed request the
// caller holds. Another request than the workflow's is refused.
type AllowRequest struct {
	RequestSHA256 []byte `json:"request_sha256"`
}

// AllowRequest returns the update argument that matches the input.
func (in LoadInput) AllowRequest() AllowRequest {
	sum := sha256.Sum256(in.Request)
	return AllowRequest{RequestSHA256: sum[:]}
}

// AllowAnswer is the answer of UpdateAllow: the signed allow command.
type AllowAnswer struct {
	WorkflowID string    `json:"workflow_id"`
	LoadID     string    `json:"load_id"`
	Sequence   uint64    `json:"sequence"`
	Amount     money.Fen `json:"amount"`
	NewBalance money.Fen `json:"new_balance"`
	// Allow is the encoded protocol.LoadAllow, Signature the load signer's
	// over its digest, Chain the signer's certificate and the services CA
	// (DER) that lead to GridPay's root.
	Allow     []byte    `json:"allow"`
	Signature []byte    `json:"signature"`
	Chain     [][]byte  `json:"chain"`
	Expires   time.Time `json:"expires"`
	Status    string    `json:"status"`
}

// ReportInput is the argument of UpdateReport: a key's signed report with
// the identity of the client certificate it came with.
type ReportInput struct {
	CustomerID  string `json:"customer_id"`
	TokenSerial string `json:"token_serial"`
	CertSerial  string `json:"cert_serial"`
	Report      []byte `json:"report"`
	Signature   []byte `json:"signature"`
}

// Outcomes an operator can decide (OperatorSettlement.Outcome).
const (
	SettleConfirm = "confirm" // the wallet took the load: the money is on the key
	SettleRefund  = "refund"  // the wallet did not take it: credit the prepaid account back
)

// OperatorSettlement is the argument of UpdateOperatorSettle.
type OperatorSettlement struct {
	Outcome  string `json:"outcome"`  // SettleConfirm or SettleRefund
	Operator string `json:"operator"` // who decided, for the audit log
	Reason   string `json:"reason"`   // the evidence, for the audit log and the customer
}

// Validate checks the form of a settlement.
func (o OperatorSettlement) Validate() error {
	switch {
	case o.Outcome != SettleConfirm && o.Outcome != SettleRefund:
		return fmt.Errorf("outcome %q is neither %q nor %q", o.Outcome, SettleConfirm, SettleRefund)
	case strings.TrimSpace(o.Operator) == "":
		return errors.New("the operator must be named")
	case len(strings.TrimSpace(o.Reason)) < 10 || len(o.Reason) > 500:
		return errors.New("the reason must say what the decision rests on (10 to 500 characters)")
	}
	return nil
}

// LoadOutcome is where a load stands: the answer of UpdateReport.
type LoadOutcome struct {
	WorkflowID string     `json:"workflow_id"`
	LoadID     string     `json:"load_id"`
	Sequence   uint64     `json:"sequence"`
	Amount     money.Fen  `json:"amount"`
	Status     string     `json:"status"`
	Reason     string     `json:"reason,omitempty"`
	Expires    *time.Time `json:"expires,omitempty"`
	Final      bool       `json:"final"`
}

// LoadState is the live state of a load (QueryStatus) and the workflow's
// result.
type LoadState struct {
	WorkflowID    string     `json:"workflow_id"`
	LoadID        string     `json:"load_id"`
	Status        string     `json:"status"`
	CustomerID    string     `json:"customer_id"`
	TokenSerial   string     `json:"token_serial"`
	Sequence      uint64     `json:"sequence"`
	Amount        money.Fen  `json:"amount"`
	WalletBalance money.Fen  `json:"wallet_balance"`
	NewBalance    money.Fen  `json:"new_balance,omitempty"`
	Expires       *time.Time `json:"expires,omitempty"`
	// ConfirmedBy is store.ConfirmedByReceipt, ConfirmedByContact or
	// ConfirmedByOperator.
	ConfirmedBy string `json:"confirmed_by,omitempty"`
	// Reason says why the load was rejected or refunded.
	Reason    string `json:"reason,omitempty"`
	ErrorType string `json:"error_type,omitempty"`
	// LastReport is the latest word of the key, for people.
	LastReport    string `json:"last_report,omitempty"`
	Reports       int    `json:"reports,omitempty"`
	TokenUnbound  bool   `json:"token_unbound,omitempty"`
	UnboundReason string `json:"unbound_reason,omitempty"`
	Final         bool   `json:"final"`
}

// Load is the load saga (see the top of this file).
func Load(ctx workflow.Context, in LoadInput) (LoadState, error) {
	l := &loadImpl{t: in.Timing.withDefaults(), in: in, state: LoadState{
		WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID, Status: LoadStatusVerifying, CustomerID: in.CustomerID,
		TokenSerial: in.TokenSerial, Sequence: in.Sequence, Amount: in.Amount, LoadID: protocol.LoadID(in.TokenSerial, in.Sequence),
	}}
	l.request = in.AllowRequest()
	if err := l.setup(ctx); err != nil {
		return l.state, err
	}
	// The workflow's ID is not checked against the sequence: it is the
	// gateway's to derive, and a load started under another ID could not
	// move money twice anyway (the records are unique by load ID, which is
	// the token's and the sequence's).
	if err := in.Validate(); err != nil {
		l.failed = temporal.NewNonRetryableApplicationError("invalid load request: "+err.Error(), ErrTypeInvalidInput, nil)
		l.state.Reason, l.state.ErrorType = l.failed.Error(), ErrTypeInvalidInput
		l.status(ctx, string(store.LoadRejected))
		return l.finish(ctx)
	}
	return l.run(ctx)
}

// queuedReport is a verified report waiting for the main loop.
type queuedReport struct {
	n int
	r activities.VerifiedReport
}

type loadImpl struct {
	t       LoadTiming
	in      LoadInput
	state   LoadState
	request AllowRequest

	failed error        // a refusal, for UpdateAllow
	allow  *AllowAnswer // the allow handed out
	signed *activities.SignedAllow

	reports   []queuedReport
	queued    int // reports queued so far
	processed int // reports the main loop has taken in

	// notApplied: the key said it did not and will not take the load;
	// refunded once the allow has expired.
	notApplied    bool
	notAppliedWhy string

	noting bool

	// operator is an operator's settlement the main loop has yet to take.
	operator *OperatorSettlement
}

func (l *loadImpl) setup(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (LoadState, error) { return l.state, nil }); err != nil {
		return err
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateAllow, l.allowUpdate, workflow.UpdateHandlerOptions{
		Validator: func(ctx workflow.Context, req AllowRequest) error {
			if !bytes.Equal(req.RequestSHA256, l.request.RequestSHA256) {
				return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
					"sequence %d of this USB key is taken by another load request; sign a new request", l.state.Sequence), activities.ErrTypeLoadReplay, nil)
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, UpdateReport, l.reportUpdate, workflow.UpdateHandlerOptions{
		Validator: func(ctx workflow.Context, in ReportInput) error {
			var why string
			switch {
			case in.CustomerID != l.state.CustomerID || in.TokenSerial != l.state.TokenSerial:
				why = fmt.Sprintf("load %s is not a load of this key", l.state.LoadID)
			case len(in.Report) == 0 || len(in.Report) > protocol.MaxLoadReportSize || len(in.Signature) == 0 || len(in.Signature) > protocol.MaxSignatureSize:
				why = "a report and its signature must not be empty or oversize"
			case l.queued >= maxLoadReports:
				why = fmt.Sprintf("load %s has taken %d reports; no more", l.state.LoadID, maxLoadReports)
			default:
				return nil
			}
			return temporal.NewNonRetryableApplicationError(why, activities.ErrTypeBadLoadReport, nil)
		},
	})
	if err != nil {
		return err
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, UpdateOperatorSettle, l.operatorUpdate, workflow.UpdateHandlerOptions{
		Validator: l.validateSettlement,
	})
	if err != nil {
		return err
	}
	workflow.Go(ctx, func(ctx workflow.Context) {
		ch := workflow.GetSignalChannel(ctx, SignalTokenUnbound)
		for {
			var why string
			ch.Receive(ctx, &why)
			if l.state.TokenUnbound {
				continue
			}
			l.state.TokenUnbound, l.state.UnboundReason = true, why
			l.noting = true
			err := workflow.ExecuteActivity(l.recordCtx(ctx), loads.NoteLoadTokenUnbound, activities.UnboundNote{
				CustomerID: l.state.CustomerID, TokenSerial: l.state.TokenSerial, Status: l.state.Status, Why: why,
			}).Get(ctx, nil)
			if err != nil {
				workflow.GetLogger(ctx).Error("token unbound not audited", "error", err)
			}
			l.noting = false
		}
	})
	return workflow.UpsertTypedSearchAttributes(ctx, AttrKind.ValueSet("load"), AttrStatus.ValueSet(l.state.Status),
		AttrCustomerID.ValueSet(l.state.CustomerID), AttrToken.ValueSet(l.state.TokenSerial))
}

func (l *loadImpl) status(ctx workflow.Context, s string) {
	l.state.Status = s
	setStatus(ctx, s)
}

// allowUpdate answers once the allow is out, or the load was refused.
func (l *loadImpl) allowUpdate(ctx workflow.Context, _ AllowRequest) (AllowAnswer, error) {
	if err := workflow.Await(ctx, func() bool { return l.allow != nil || l.failed != nil }); err != nil {
		return AllowAnswer{}, err
	}
	if l.allow == nil {
		return AllowAnswer{}, l.failed
	}
	a := *l.allow
	a.Status = l.state.Status
	return a, nil
}

// reportUpdate verifies a key's report and answers where the load stands
// once the main loop has taken it in.
func (l *loadImpl) reportUpdate(ctx workflow.Context, in ReportInput) (LoadOutcome, error) {
	if l.state.Final {
		return l.outcome(), nil
	}
	var v activities.VerifiedReport
	err := workflow.ExecuteActivity(l.reportCtx(ctx), loads.VerifyReport, activities.ReportCheck{
		CustomerID: in.CustomerID, TokenSerial: in.TokenSerial, CertSerial: in.CertSerial, Report: in.Report, Signature: in.Signature,
	}).Get(ctx, &v)
	if err != nil {
		return LoadOutcome{}, err
	}
	l.state.Reports++
	if l.allow == nil || l.state.Final {
		// Nothing the key says can be about an allow it never had.
		l.state.LastReport = describeReport(v) + " (before the allow)"
		return l.outcome(), nil
	}
	l.queued++
	n := l.queued
	l.reports = append(l.reports, queuedReport{n: n, r: v})
	if err := workflow.Await(ctx, func() bool { return l.processed >= n || l.state.Final }); err != nil {
		return LoadOutcome{}, err
	}
	return l.outcome(), nil
}

// validateSettlement accepts an operator's settlement only where nothing
// else can settle the load: its key unbound, its allow expired, the key's
// word awaited.
func (l *loadImpl) validateSettlement(ctx workflow.Context, o OperatorSettlement) error {
	if err := o.Validate(); err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, nil)
	}
	var why string
	switch {
	case l.state.Final:
		why = fmt.Sprintf("load %s is already %s", l.state.LoadID, l.state.Status)
	case l.operator != nil:
		why = fmt.Sprintf("load %s is being settled by %s", l.state.LoadID, l.operator.Operator)
	case l.allow == nil:
		why = fmt.Sprintf("load %s is still %s; it settles itself", l.state.LoadID, l.state.Status)
	case !l.state.TokenUnbound:
		why = fmt.Sprintf("USB key %s is still bound: its next session settles load %s (unbind a lost key first)", l.state.TokenSerial, l.state.LoadID)
	case workflow.Now(ctx).Before(*l.state.Expires):
		why = fmt.Sprintf("the allow of load %s is valid until %s: the key could still take it", l.state.LoadID, l.state.Expires.Format(time.RFC3339))
	case l.state.Status != LoadStatusAwaitingContact:
		why = fmt.Sprintf("load %s is %s, not awaiting the key's contact", l.state.LoadID, l.state.Status)
	default:
		return nil
	}
	return temporal.NewNonRetryableApplicationError(why, ErrTypeSettlementRefused, nil)
}

// ErrTypeSettlementRefused: an operator's settlement came when the load
// can still be settled by its key, or is settled already.
const ErrTypeSettlementRefused = "SettlementRefused"

// operatorUpdate hands the settlement to the main loop and answers once
// the load is final.
func (l *loadImpl) operatorUpdate(ctx workflow.Context, o OperatorSettlement) (LoadOutcome, error) {
	l.operator = &o
	if err := workflow.Await(ctx, func() bool { return l.state.Final }); err != nil {
		return LoadOutcome{}, err
	}
	return l.outcome(), nil
}

// settleByOperator carries out an operator's settlement, audited first.
func (l *loadImpl) settleByOperator(ctx workflow.Context) error {
	o := *l.operator
	if err := workflow.ExecuteActivity(l.recordCtx(ctx), loads.NoteOperatorSettlement, activities.OperatorNote{
		CustomerID: l.state.CustomerID, TokenSerial: l.state.TokenSerial, Outcome: o.Outcome, Operator: o.Operator, Reason: o.Reason,
	}).Get(ctx, nil); err != nil {
		return err
	}
	l.state.LastReport = fmt.Sprintf("settled by %s (%s): %s", o.Operator, o.Outcome, o.Reason)
	if o.Outcome == SettleConfirm {
		return l.confirm(ctx, store.ConfirmedByOperator, nil)
	}
	return l.refund(ctx, "settled by GridPay after the USB key was unbound: "+o.Reason)
}

func (l *loadImpl) outcome() LoadOutcome {
	return LoadOutcome{WorkflowID: l.state.WorkflowID, LoadID: l.state.LoadID, Sequence: l.state.Sequence, Amount: l.state.Amount,
		Status: l.state.Status, Reason: l.state.Reason, Expires: l.state.Expires, Final: l.state.Final}
}

func describeReport(r activities.VerifiedReport) string {
	s := fmt.Sprintf("%s: wallet at load %d holding %s", r.Kind, r.WalletSequence, r.WalletBalance.Display())
	if r.Kind == activities.ReportError {
		s += fmt.Sprintf(" (error %d: %s)", r.ErrorCode, r.ErrorText)
	}
	if r.Revoked {
		s += " [revoked key]"
	}
	return s + " at " + r.At.Format(time.RFC3339)
}

// run takes a new load from its request to its end.
func (l *loadImpl) run(ctx workflow.Context) (LoadState, error) {
	var acc activities.AcceptedLoad
	if err := workflow.ExecuteActivity(l.checkCtx(ctx), loads.AcceptLoad, activities.LoadCheck{
		CustomerID: l.in.CustomerID, TokenSerial: l.in.TokenSerial, CertSerial: l.in.CertSerial, Sequence: l.in.Sequence,
		Request: l.in.Request, Signature: l.in.Signature,
	}).Get(ctx, &acc); err != nil {
		return l.reject(ctx, err)
	}
	l.state.Amount, l.state.WalletBalance, l.state.LoadID = acc.Amount, acc.WalletBalance, acc.LoadID
	if l.state.TokenUnbound {
		return l.reject(ctx, temporal.NewNonRetryableApplicationError(
			"the USB key was unbound before the load was debited ("+l.state.UnboundReason+"); nothing was taken", ErrTypeTokenUnbound, nil))
	}

	l.status(ctx, LoadStatusDebiting)
	for {
		err := workflow.ExecuteActivity(l.moneyCtx(ctx), loads.DebitAccount).Get(ctx, nil)
		if err == nil {
			break
		}
		switch errType(err) {
		case activities.ErrTypeDebitRefused:
			return l.reject(ctx, err)
		case activities.ErrTypeIllegalTransition:
			return l.state, err
		}
		// The window ran out with the platform still down: go on.
		l.state.LastReport = "debit not made yet: " + reason(err)
		workflow.GetLogger(ctx).Warn("debit still failing; trying again", "error", err)
	}
	if l.state.TokenUnbound {
		return l.refundBeforeAllow(ctx, "the USB key was unbound before the allow was signed ("+l.state.UnboundReason+")", ErrTypeTokenUnbound)
	}

	l.status(ctx, LoadStatusSigning)
	host := workflow.Now(ctx).UTC().Truncate(time.Second)
	expires := host.Add(l.t.AllowValidity)
	var signed activities.SignedAllow
	if err := workflow.ExecuteActivity(l.signCtx(ctx), loads.SignAllow, activities.AllowSpec{HostTime: host, Expires: expires}).Get(ctx, &signed); err != nil {
		if errType(err) == activities.ErrTypeIllegalTransition {
			return l.state, err
		}
		workflow.GetLogger(ctx).Error("the allow could not be signed; refunding", "error", err)
		return l.refundBeforeAllow(ctx, "GridPay could not sign the load (its HSM is unavailable)", ErrTypeUnavailable)
	}
	l.signed = &signed
	l.allow = &AllowAnswer{WorkflowID: l.state.WorkflowID, LoadID: l.state.LoadID, Sequence: l.state.Sequence, Amount: l.state.Amount,
		NewBalance: signed.NewBalance, Allow: signed.Allow, Signature: signed.Signature, Chain: signed.Chain, Expires: signed.Expires}
	l.state.NewBalance = signed.NewBalance
	exp := signed.Expires
	l.state.Expires = &exp
	l.status(ctx, LoadStatusAwaitingReceipt)
	if err := l.settle(ctx); err != nil {
		return l.state, err
	}
	return l.finish(ctx)
}

// reject ends a load refused before any money moved: a record the request
// may have left is closed with the reason, and the update answered with
// the refusal.
func (l *loadImpl) reject(ctx workflow.Context, cause error) (LoadState, error) {
	typ, msg := errType(cause), reason(cause)
	var timeout *temporal.TimeoutError
	if errors.As(cause, &timeout) || typ == "" {
		typ, msg = ErrTypeUnavailable, "GridPay could not check the load in time (a service is unavailable); nothing was taken from your account, try again"
	}
	if err := workflow.ExecuteActivity(l.recordCtx(ctx), loads.RejectLoad, msg).Get(ctx, nil); err != nil {
		return l.state, err
	}
	l.failed = temporal.NewNonRetryableApplicationError(msg, typ, nil)
	l.state.Reason, l.state.ErrorType = msg, typ
	l.status(ctx, string(store.LoadRejected))
	return l.finish(ctx)
}

// refundBeforeAllow gives the debit back when no allow was ever handed
// out, and answers the update with why.
func (l *loadImpl) refundBeforeAllow(ctx workflow.Context, why, typ string) (LoadState, error) {
	msg := why + "; the amount was credited back to your prepaid account"
	if err := l.refund(ctx, msg); err != nil {
		return l.state, err
	}
	l.failed = temporal.NewNonRetryableApplicationError(msg, typ, nil)
	l.state.ErrorType = typ
	return l.finish(ctx)
}

// settle waits for what the key signs and decides the outcome (see the
// top of this file). A report's update answers once everything it made
// decidable is done.
func (l *loadImpl) settle(ctx workflow.Context) error {
	expires := *l.state.Expires
	taken := l.processed
	defer func() { l.processed = taken }()
	for {
		now := workflow.Now(ctx)
		var wait time.Duration
		switch {
		case l.state.Status == string(store.LoadConfirmed):
			return nil
		case l.operator != nil:
			return l.settleByOperator(ctx)
		case l.notApplied && !now.Before(expires):
			return l.refund(ctx, l.notAppliedWhy)
		case l.notApplied:
			wait = expires.Sub(now)
		case l.state.Status == LoadStatusAwaitingReceipt:
			if deadline := expires.Add(l.t.ReceiptGrace); now.Before(deadline) {
				wait = deadline.Sub(now)
			} else {
				l.status(ctx, LoadStatusAwaitingContact)
			}
		}
		l.processed = taken
		ready := func() bool { return len(l.reports) > 0 || l.operator != nil }
		if wait > 0 {
			if _, err := workflow.AwaitWithTimeout(ctx, wait, ready); err != nil {
				return err
			}
		} else if err := workflow.Await(ctx, ready); err != nil {
			return err
		}
		for len(l.reports) > 0 && l.state.Status != string(store.LoadConfirmed) {
			q := l.reports[0]
			l.reports = l.reports[1:]
			if err := l.apply(ctx, q.r); err != nil {
				return err
			}
			taken = q.n
		}
	}
}

// apply takes in one verified report.
func (l *loadImpl) apply(ctx workflow.Context, r activities.VerifiedReport) error {
	l.state.LastReport = describeReport(r)
	seq := l.state.Sequence
	switch r.Kind {
	case activities.ReportReceipt:
		if r.LoadSequence != seq {
			return nil
		}
		if r.WalletSequence == seq && bytes.Equal(r.StateSHA256, l.signed.StateSHA256) {
			return l.confirm(ctx, store.ConfirmedByReceipt, r.SHA256)
		}
		l.markNotApplied(ctx, r, "the USB key's receipt does not show the wallet GridPay signed for this load")
	case activities.ReportError:
		if r.LoadSequence != seq {
			return nil
		}
		why := "the USB key refused the load"
		if r.ErrorText != "" {
			why += ": " + r.ErrorText
		}
		l.markNotApplied(ctx, r, why)
	case activities.ReportState:
		switch {
		case r.WalletSequence > seq, r.WalletSequence == seq && r.WalletLastLoad == l.state.LoadID:
			return l.confirm(ctx, store.ConfirmedByContact, r.SHA256)
		case r.WalletSequence == seq:
			workflow.GetLogger(ctx).Error("the key reports this load's sequence with another load ID: left alone", "wallet_last_load", r.WalletLastLoad)
		case r.At.Before(*l.state.Expires):
			// The key may still take the allow before it expires.
		default:
			l.markNotApplied(ctx, r, fmt.Sprintf("the USB key had not taken the load when its allow expired (its wallet is at load %d)", r.WalletSequence))
		}
	}
	return nil
}

func (l *loadImpl) markNotApplied(ctx workflow.Context, r activities.VerifiedReport, why string) {
	if l.notApplied {
		return
	}
	if r.Revoked {
		l.state.LastReport += " — a revoked key cannot cancel a load"
		return
	}
	l.notApplied, l.notAppliedWhy = true, why
	l.state.Reason = why
	l.status(ctx, LoadStatusCancelling)
}

func (l *loadImpl) confirm(ctx workflow.Context, by string, reportSHA []byte) error {
	if err := workflow.ExecuteActivity(l.recordCtx(ctx), loads.ConfirmLoad, activities.ConfirmRequest{By: by, ReportSHA256: reportSHA}).Get(ctx, nil); err != nil {
		return err
	}
	l.notApplied, l.state.Reason = false, ""
	l.state.ConfirmedBy = by
	l.status(ctx, string(store.LoadConfirmed))
	return nil
}

// refund credits the debit back (retried for as long as it takes) and
// records why.
func (l *loadImpl) refund(ctx workflow.Context, why string) error {
	l.status(ctx, LoadStatusCancelling)
	for {
		err := workflow.ExecuteActivity(l.moneyCtx(ctx), loads.RefundLoad, why).Get(ctx, nil)
		if err == nil {
			break
		}
		if errType(err) == activities.ErrTypeIllegalTransition {
			return err
		}
		l.state.LastReport = "refund not made yet: " + reason(err)
	}
	l.state.Reason = why
	l.status(ctx, string(store.LoadRefunded))
	return nil
}

// finish ends the workflow once every handler in flight has answered.
func (l *loadImpl) finish(ctx workflow.Context) (LoadState, error) {
	l.state.Final = true
	l.processed = l.queued
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) && !l.noting }); err != nil {
		return l.state, err
	}
	return l.state, nil
}

// Activity options of the saga's steps.

func loadRetry(first, max time.Duration) *temporal.RetryPolicy {
	first = min(first, max)
	return &temporal.RetryPolicy{
		InitialInterval: first, BackoffCoefficient: 2, MaximumInterval: max,
		NonRetryableErrorTypes: []string{
			activities.ErrTypeBadLoadRequest, activities.ErrTypeStaleLoadRequest, activities.ErrTypeLoadReplay,
			activities.ErrTypeLoadPending, activities.ErrTypeWalletMismatch, activities.ErrTypeAccountMismatch,
			activities.ErrTypeLoadAmount, activities.ErrTypeDebitRefused, activities.ErrTypeBadLoadReport,
			activities.ErrTypeIllegalTransition, activities.ErrTypeUnknownCustomer, activities.ErrTypeNotBound,
			activities.ErrTypeRevoked,
		},
	}
}

// checkCtx: verification, while the customer waits.
func (l *loadImpl) checkCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second, ScheduleToCloseTimeout: l.t.CheckWindow, RetryPolicy: loadRetry(time.Second, 10*time.Second),
	})
}

// recordCtx: writes of the load's record, retried until the database
// answers (money may be moving).
func (l *loadImpl) recordCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second, RetryPolicy: loadRetry(time.Second, time.Minute),
	})
}

// moneyCtx: the debit and the refund at the platform, retried with
// backoff for a whole window (the loops start another).
func (l *loadImpl) moneyCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute, ScheduleToCloseTimeout: l.t.MoneyWindow, RetryPolicy: loadRetry(l.t.RetryFirst, l.t.RetryMax),
	})
}

// signCtx: the HSM's signing, bounded: past it, no allow exists and the
// debit goes back.
func (l *loadImpl) signCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second, ScheduleToCloseTimeout: l.t.SignWindow, RetryPolicy: loadRetry(time.Second, 10*time.Second),
	})
}

// reportCtx: verifying a report while the gateway waits.
func (l *loadImpl) reportCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second, ScheduleToCloseTimeout: time.Minute, RetryPolicy: loadRetry(time.Second, 10*time.Second),
	})
}

package activities

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/unionpay"
)

// Error types of the payment activities' non-retryable failures. The
// payment workflow turns those raised before an order exists into a
// rejection the customer sees; the gateway maps them to API codes.
const (
	// ErrTypeBadInstruction: the signed instruction does not decode, does
	// not verify, or says something else than the request.
	ErrTypeBadInstruction = "BadInstruction"
	// ErrTypeStaleInstruction: its timestamp is too far from now.
	ErrTypeStaleInstruction = "StaleInstruction"
	// ErrTypeReplay: its nonce was used before.
	ErrTypeReplay = "InstructionReplay"
	// ErrTypeBillNotPayable: a bill is unknown, another customer's, or
	// already settled.
	ErrTypeBillNotPayable = "BillNotPayable"
	// ErrTypeAmountMismatch: the amount is not the sum due on the bills, or
	// a top-up outside the limits.
	ErrTypeAmountMismatch = "AmountMismatch"
	// ErrTypePaymentConflict: the idempotency key is recorded for another
	// payment.
	ErrTypePaymentConflict = "PaymentConflict"
	// ErrTypePostingRefused: the platform refused the posting for good
	// (already settled, amount mismatch…): the workflow refunds.
	ErrTypePostingRefused = "PostingRefused"
	// ErrTypeIllegalTransition: the payment's record is not in a state
	// that allows the step (never posting a refunded payment and so on).
	ErrTypeIllegalTransition = "IllegalTransition"
)

// PaymentGateway is the UnionPay gateway as the payment sagas use it;
// *unionpay.Client is one.
type PaymentGateway interface {
	ConsumeForm(o unionpay.Order) (unionpay.Form, error)
	Query(ctx context.Context, orderID string, txnTime time.Time) (unionpay.QueryResult, error)
	Refund(ctx context.Context, r unionpay.RefundRequest) (unionpay.Accepted, error)
	// DownloadFile fetches the reconciliation file of a settle date (MMDD).
	DownloadFile(ctx context.Context, settleDate string) ([]unionpay.ReconRecord, error)
}

// PaymentPlatform is the part of the platform web service the payment
// sagas use; platform.Service (and *platform.Client) is one.
type PaymentPlatform interface {
	Customer(ctx context.Context, customerID string) (platform.Customer, error)
	Bill(ctx context.Context, customerID, billID string) (platform.Bill, error)
	PostPayment(ctx context.Context, p platform.PostPayment) (platform.Payment, error)
	Payment(ctx context.Context, reference string) (platform.Payment, error)
}

// PaymentRecords is GridPay's own records as the payment sagas use them;
// store.Payments is one. Every write appends its audit entry in the same
// transaction.
type PaymentRecords interface {
	Certificate(ctx context.Context, serial string) (store.Certificate, error)
	ActiveBindingForCert(ctx context.Context, serial string) (store.Binding, error)
	IsRevoked(ctx context.Context, serial string) (bool, error)
	RecordNonce(ctx context.Context, tokenSerial string, nonce []byte, workflowID string, at time.Time, rec *store.AuditRecord) error
	Audit(ctx context.Context, rec store.AuditRecord) error

	CreatePayment(ctx context.Context, np store.NewPayment, actor string) (store.Payment, error)
	RejectPayment(ctx context.Context, np store.NewPayment, reason, actor string) (store.Payment, error)
	MarkPaid(ctx context.Context, orderID string, c store.Charge, actor string) (store.Payment, error)
	MarkExpired(ctx context.Context, orderID, reason, actor string) (store.Payment, error)
	MarkPosted(ctx context.Context, orderID, postingRef string, postedAt time.Time, actor string) (store.Payment, error)
	MarkRefunding(ctx context.Context, orderID string, r store.RefundStart, actor string) (store.Payment, error)
	MarkRefunded(ctx context.Context, orderID string, d store.RefundDone, actor string) (store.Payment, error)

	PaymentByOrderID(ctx context.Context, orderID string) (store.Payment, error)
	PaymentByQueryID(ctx context.Context, queryID string) (store.Payment, error)
	PaymentByKey(ctx context.Context, customerID, key string) (store.Payment, error)
	PaymentsSettledOn(ctx context.Context, mmdd string, from, to time.Time) ([]store.Payment, error)

	StartReconRun(ctx context.Context, settleDate, workflowID, runID string) (store.ReconRun, error)
	RecordReconIssue(ctx context.Context, i store.ReconIssue) (store.ReconIssue, error)
	SetReconIssueAction(ctx context.Context, runID int64, kind, orderID, action string) error
	FinishReconRun(ctx context.Context, id int64, c store.ReconCounts) (store.ReconRun, error)
}

var _ PaymentRecords = store.Payments{}

// Defaults of Payments' settings.
const (
	DefaultMaxClockSkew = 5 * time.Minute
	DefaultPrepayMin    = money.Fen(100)                // ¥1.00
	DefaultPrepayMax    = money.Fen(10_000_000_00)      // ¥10,000,000.00
	PaymentChannel      = "unionpay"                    // platform.PostPayment.Channel
	orderDescription    = "GridPay electricity payment" // shown on the pay page; no personal data
)

// Payments is the activities of the payment saga and of reconciliation.
type Payments struct {
	Records  PaymentRecords
	Gateway  PaymentGateway
	Platform PaymentPlatform
	// FrontURL is where the payer's browser returns after paying; BackURL
	// is the gateway's notify endpoint, for consumes and refunds alike.
	FrontURL string
	BackURL  string
	// MaxClockSkew is how far an instruction's timestamp may be from now
	// (default DefaultMaxClockSkew).
	MaxClockSkew time.Duration
	// PrepayMin and PrepayMax bound a prepaid top-up (defaults
	// DefaultPrepayMin, DefaultPrepayMax).
	PrepayMin, PrepayMax money.Fen
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

func (a *Payments) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

// OrderIDFor is the UnionPay orderId of a payment workflow: "GP" and 30
// hex digits of SHA-256 of the workflow ID. Deriving it makes a retried
// CreateOrder, or a restarted workflow, make the very same order.
func OrderIDFor(workflowID string) string {
	sum := sha256.Sum256([]byte("gridpay order\x00" + workflowID))
	return "GP" + hex.EncodeToString(sum[:])[:30]
}

// RefundOrderIDFor is the orderId of refund attempt n (from 1) of an
// order: "GR" and 30 hex digits, a new one per attempt.
func RefundOrderIDFor(orderID string, attempt int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "gridpay refund\x00%s\x00%d", orderID, attempt))
	return "GR" + hex.EncodeToString(sum[:])[:30]
}

// PostingReference is the reference of a payment at the platform, its
// idempotency key there: readable "gp:<customer>:<key>", or "gp:" and a
// hash of both when that would exceed the platform's 128 characters.
func PostingReference(customerID, key string) string {
	ref := "gp:" + customerID + ":" + key
	if len(ref) <= 128 {
		return ref
	}
	sum := sha256.Sum256([]byte(customerID + "\x00" + key))
	return "gp:" + hex.EncodeToString(sum[:20])
}

func nonRetryable(errType, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), errType, nil)
}

// InstructionCheck is a payment request as the gateway received it: the
// identity from the client certificate, what the request asks, and the
// token-signed instruction that must say exactly the same.
type InstructionCheck struct {
	CustomerID     string    `json:"customer_id"`
	TokenSerial    string    `json:"token_serial"`
	CertSerial     string    `json:"cert_serial"`
	IdempotencyKey string    `json:"idempotency_key"`
	Kind           string    `json:"kind"`
	BillIDs        []string  `json:"bill_ids"`
	Amount         money.Fen `json:"amount"`
	Instruction    []byte    `json:"instruction"`
	Signature      []byte    `json:"signature"`
}

// VerifiedInstruction is what VerifyInstruction vouches for.
type VerifiedInstruction struct {
	SHA256    []byte    `json:"sha256"`
	Timestamp time.Time `json:"timestamp"`
}

// VerifyInstruction checks a payment instruction: the certificate is
// GridPay's record for this customer and key, not revoked and actively
// bound; the instruction decodes and its signature verifies with it; every
// field equals the request; the timestamp is within MaxClockSkew of now;
// the nonce was never used by another payment. It records the nonce and
// audits the outcome ("payment.instruction", ok or refused) either way.
// Refusals are non-retryable.
func (a *Payments) VerifyInstruction(ctx context.Context, req InstructionCheck) (VerifiedInstruction, error) {
	wfID := activity.GetInfo(ctx).WorkflowExecution.ID
	sum := sha256.Sum256(req.Instruction)
	detail := map[string]any{"customer_id": req.CustomerID, "token_serial": req.TokenSerial, "cert_serial": req.CertSerial,
		"idempotency_key": req.IdempotencyKey, "amount_fen": int64(req.Amount), "instruction_sha256": hex.EncodeToString(sum[:])}
	refuse := func(errType, format string, args ...any) (VerifiedInstruction, error) {
		why := fmt.Sprintf(format, args...)
		d := map[string]any{"reason": why, "error_type": errType}
		for k, v := range detail {
			d[k] = v
		}
		if err := a.Records.Audit(ctx, store.AuditRecord{Actor: actor(ctx), Action: "payment.instruction", Subject: wfID,
			Outcome: store.OutcomeRefused, Detail: d}); err != nil {
			// A refusal that cannot be audited is retried until it is.
			return VerifiedInstruction{}, err
		}
		return VerifiedInstruction{}, nonRetryable(errType, "%s", why)
	}

	rec, err := a.Records.Certificate(ctx, req.CertSerial)
	if errors.Is(err, store.ErrNotFound) {
		return refuse(ErrTypeBadInstruction, "certificate %s was not issued by GridPay", req.CertSerial)
	}
	if err != nil {
		return VerifiedInstruction{}, err
	}
	if rec.CustomerID != req.CustomerID || rec.TokenSerial != req.TokenSerial {
		return refuse(ErrTypeBadInstruction, "certificate %s belongs to customer %s and key %s", req.CertSerial, rec.CustomerID, rec.TokenSerial)
	}
	revoked, err := a.Records.IsRevoked(ctx, req.CertSerial)
	if err != nil {
		return VerifiedInstruction{}, err
	}
	if revoked {
		return refuse(ErrTypeRevoked, "certificate %s is revoked", req.CertSerial)
	}
	if _, err := a.Records.ActiveBindingForCert(ctx, req.CertSerial); errors.Is(err, store.ErrNotFound) {
		return refuse(ErrTypeNotBound, "the USB key %s has no active binding", req.TokenSerial)
	} else if err != nil {
		return VerifiedInstruction{}, err
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return VerifiedInstruction{}, fmt.Errorf("recorded certificate %s does not parse: %w", req.CertSerial, err)
	}
	p, err := protocol.VerifyPaymentInstruction(cert, req.Instruction, req.Signature)
	if err != nil {
		return refuse(ErrTypeBadInstruction, "%v", err)
	}
	if field := mismatch(p, req); field != "" {
		return refuse(ErrTypeBadInstruction, "the signed instruction's %s differs from the request's", field)
	}
	now := a.now()
	skew := a.MaxClockSkew
	if skew <= 0 {
		skew = DefaultMaxClockSkew
	}
	if d := p.Timestamp.Sub(now); d > skew || d < -skew {
		return refuse(ErrTypeStaleInstruction, "the instruction was signed at %s, more than %s from the server's time %s; check the computer's clock",
			p.Timestamp.Format(time.RFC3339), skew, now.Truncate(time.Second).Format(time.RFC3339))
	}
	ok := store.AuditRecord{Actor: actor(ctx), Action: "payment.instruction", Subject: wfID, Outcome: store.OutcomeOK, Detail: detail}
	if err := a.Records.RecordNonce(ctx, p.TokenSerial, p.Nonce, wfID, now, &ok); errors.Is(err, store.ErrReplay) {
		return refuse(ErrTypeReplay, "replayed instruction: %v", err)
	} else if err != nil {
		return VerifiedInstruction{}, err
	}
	return VerifiedInstruction{SHA256: sum[:], Timestamp: p.Timestamp}, nil
}

// mismatch names the first field of the instruction that differs from the
// request, or "".
func mismatch(p protocol.PaymentInstruction, req InstructionCheck) string {
	switch {
	case p.IdempotencyKey != req.IdempotencyKey:
		return "idempotency key"
	case p.CustomerID != req.CustomerID:
		return "customer ID"
	case p.TokenSerial != req.TokenSerial:
		return "token serial"
	case p.CertSerial != req.CertSerial:
		return "certificate serial"
	case string(p.Kind) != req.Kind:
		return "kind"
	case !slices.Equal(p.BillIDs, protocol.SortBillIDs(req.BillIDs)) || len(p.BillIDs) != len(req.BillIDs):
		return "bill IDs"
	case p.Amount != req.Amount:
		return "amount"
	}
	return ""
}

// BillsCheck asks whether a payment may be made.
type BillsCheck struct {
	CustomerID string    `json:"customer_id"`
	Kind       string    `json:"kind"`
	BillIDs    []string  `json:"bill_ids"`
	Amount     money.Fen `json:"amount"`
}

// CheckedBills is what the payment will pay: each bill's amount due now.
type CheckedBills struct {
	CustomerName string                `json:"customer_name"`
	Allocations  []platform.Allocation `json:"allocations,omitempty"`
}

// CheckBills asks the platform about the customer and each bill: every bill
// must be the customer's and unpaid, and the amount must be exactly the sum
// due (no paying a settled bill, no overpaying, no partial payment through
// this channel); a top-up must lie within PrepayMin..PrepayMax. Refusals
// are non-retryable; the platform being down is retried.
func (a *Payments) CheckBills(ctx context.Context, req BillsCheck) (CheckedBills, error) {
	c, err := a.Platform.Customer(ctx, req.CustomerID)
	if errors.Is(err, platform.ErrUnknownCustomer) {
		return CheckedBills{}, nonRetryable(ErrTypeUnknownCustomer, "the platform does not know customer %s", req.CustomerID)
	}
	if err != nil {
		return CheckedBills{}, err
	}
	out := CheckedBills{CustomerName: c.Name}
	if req.Kind == store.PaymentKindPrepay {
		lo, hi := a.PrepayMin, a.PrepayMax
		if lo <= 0 {
			lo = DefaultPrepayMin
		}
		if hi <= 0 {
			hi = DefaultPrepayMax
		}
		if req.Amount < lo || req.Amount > hi {
			return CheckedBills{}, nonRetryable(ErrTypeAmountMismatch, "a top-up must be between %s and %s, not %s", lo.Display(), hi.Display(), req.Amount.Display())
		}
		return out, nil
	}
	var due money.Fen
	for _, id := range req.BillIDs {
		b, err := a.Platform.Bill(ctx, req.CustomerID, id)
		if errors.Is(err, platform.ErrBillNotFound) {
			return CheckedBills{}, nonRetryable(ErrTypeBillNotPayable, "bill %s is not a bill of customer %s", id, req.CustomerID)
		}
		if err != nil {
			return CheckedBills{}, err
		}
		if b.Status == platform.BillSettled || b.AmountDue <= 0 {
			return CheckedBills{}, nonRetryable(ErrTypeBillNotPayable, "bill %s is already settled", id)
		}
		due += b.AmountDue
		out.Allocations = append(out.Allocations, platform.Allocation{BillID: id, Amount: b.AmountDue})
	}
	if req.Amount != due {
		return CheckedBills{}, nonRetryable(ErrTypeAmountMismatch, "the amount %s differs from the %s due on the bills", req.Amount.Display(), due.Display())
	}
	return out, nil
}

// NewOrder asks CreateOrder for a payment's UnionPay order.
type NewOrder struct {
	CustomerID        string                `json:"customer_id"`
	TokenSerial       string                `json:"token_serial"`
	CertSerial        string                `json:"cert_serial"`
	IdempotencyKey    string                `json:"idempotency_key"`
	Kind              string                `json:"kind"`
	Allocations       []platform.Allocation `json:"allocations,omitempty"`
	Amount            money.Fen             `json:"amount"`
	InstructionSHA256 []byte                `json:"instruction_sha256"`
	// TxnTime and PayDeadline are fixed by the workflow.
	TxnTime     time.Time `json:"txn_time"`
	PayDeadline time.Time `json:"pay_deadline"`
}

// CreatedOrder is the order and the signed form that takes the payer to
// UnionPay's pay page.
type CreatedOrder struct {
	OrderID     string        `json:"order_id"`
	TxnTime     time.Time     `json:"txn_time"`
	PayDeadline time.Time     `json:"pay_deadline"`
	Amount      money.Fen     `json:"amount"`
	Form        unionpay.Form `json:"form"`
}

// CreateOrder records the payment, awaiting payment, under the orderId
// derived from the workflow ID (OrderIDFor), and signs the consume form. It
// is idempotent: a payment already recorded for this workflow and key is
// reused with its own txnTime and deadline, so a retry, or a workflow
// restarted later, hands out the very same order. The key recorded for
// another payment is non-retryable (PaymentConflict).
func (a *Payments) CreateOrder(ctx context.Context, req NewOrder) (CreatedOrder, error) {
	wfID := activity.GetInfo(ctx).WorkflowExecution.ID
	np := store.NewPayment{
		IdempotencyKey: req.IdempotencyKey, CustomerID: req.CustomerID, WorkflowID: wfID, TokenSerial: req.TokenSerial,
		CertSerial: req.CertSerial, Kind: req.Kind, Amount: int64(req.Amount), InstructionSHA256: req.InstructionSHA256,
		OrderID: OrderIDFor(wfID), TxnTime: req.TxnTime, PayDeadline: req.PayDeadline,
	}
	for _, al := range req.Allocations {
		np.BillIDs = append(np.BillIDs, al.BillID)
		np.BillAmounts = append(np.BillAmounts, int64(al.Amount))
	}
	p, err := a.Records.PaymentByKey(ctx, req.CustomerID, req.IdempotencyKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		p, err = a.Records.CreatePayment(ctx, np, actor(ctx))
	case err == nil:
		if p.WorkflowID != wfID || p.OrderID != np.OrderID || p.Amount != np.Amount || !slices.Equal(p.BillIDs, nonNilStrings(np.BillIDs)) {
			return CreatedOrder{}, nonRetryable(ErrTypePaymentConflict, "idempotency key %s is recorded for another payment (%s)", req.IdempotencyKey, p.WorkflowID)
		}
	}
	if errors.Is(err, store.ErrConflict) {
		return CreatedOrder{}, nonRetryable(ErrTypePaymentConflict, "%v", err)
	}
	if err != nil {
		return CreatedOrder{}, err
	}
	return a.form(p)
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *Payments) form(p store.Payment) (CreatedOrder, error) {
	f, err := a.Gateway.ConsumeForm(unionpay.Order{
		OrderID: p.OrderID, TxnTime: p.TxnTime, Amount: money.Fen(p.Amount), PayTimeout: p.PayDeadline,
		FrontURL: a.FrontURL, BackURL: a.BackURL, Description: orderDescription,
	})
	if err != nil {
		return CreatedOrder{}, fmt.Errorf("signing the consume form of order %s: %w", p.OrderID, err)
	}
	return CreatedOrder{OrderID: p.OrderID, TxnTime: p.TxnTime, PayDeadline: p.PayDeadline, Amount: money.Fen(p.Amount), Form: f}, nil
}

// Rejection records a payment request refused before any order.
type Rejection struct {
	CustomerID        string    `json:"customer_id"`
	TokenSerial       string    `json:"token_serial"`
	CertSerial        string    `json:"cert_serial"`
	IdempotencyKey    string    `json:"idempotency_key"`
	Kind              string    `json:"kind"`
	BillIDs           []string  `json:"bill_ids"`
	Amount            money.Fen `json:"amount"`
	InstructionSHA256 []byte    `json:"instruction_sha256,omitempty"`
	Reason            string    `json:"reason"`
}

// MarkRejected records a rejected payment with its reason (for the
// customer's history) and audits it. Idempotent.
func (a *Payments) MarkRejected(ctx context.Context, r Rejection) (store.Payment, error) {
	np := store.NewPayment{
		IdempotencyKey: r.IdempotencyKey, CustomerID: r.CustomerID, WorkflowID: activity.GetInfo(ctx).WorkflowExecution.ID,
		TokenSerial: r.TokenSerial, CertSerial: r.CertSerial, Kind: r.Kind, BillIDs: r.BillIDs,
		BillAmounts: make([]int64, len(r.BillIDs)), Amount: int64(r.Amount), InstructionSHA256: r.InstructionSHA256,
	}
	p, err := a.Records.RejectPayment(ctx, np, r.Reason, actor(ctx))
	return p, storeErr(err)
}

// storeErr makes the store's refusals of a transition non-retryable: no
// retry can make an illegal transition legal.
func storeErr(err error) error {
	switch {
	case errors.Is(err, store.ErrIllegalTransition), errors.Is(err, store.ErrConflict):
		return nonRetryable(ErrTypeIllegalTransition, "%v", err)
	case errors.Is(err, store.ErrInvalid):
		return temporal.NewNonRetryableApplicationError(err.Error(), "Invalid", err)
	}
	return err
}

// FindPayment returns the payment recorded for a customer's key, if any:
// a payment workflow started again (after an operator ended it, or after
// Temporal forgot a closed one) carries on from the record instead of
// starting over.
type FindPayment struct {
	CustomerID     string `json:"customer_id"`
	IdempotencyKey string `json:"idempotency_key"`
}

// FoundPayment is FindPayment's answer; Found is false when there is none.
type FoundPayment struct {
	Found   bool          `json:"found"`
	Payment store.Payment `json:"payment"`
}

// FindPayment looks a payment up by customer and idempotency key.
func (a *Payments) FindPayment(ctx context.Context, req FindPayment) (FoundPayment, error) {
	p, err := a.Records.PaymentByKey(ctx, req.CustomerID, req.IdempotencyKey)
	if errors.Is(err, store.ErrNotFound) {
		return FoundPayment{}, nil
	}
	if err != nil {
		return FoundPayment{}, err
	}
	return FoundPayment{Found: true, Payment: p}, nil
}

// LoadPayment returns the payment of an order (or refund order).
func (a *Payments) LoadPayment(ctx context.Context, orderID string) (store.Payment, error) {
	p, err := a.Records.PaymentByOrderID(ctx, orderID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Payment{}, temporal.NewNonRetryableApplicationError("no payment has order "+orderID, "NotFound", err)
	}
	return p, err
}

// OrderQuery names a UnionPay transaction: orderId and txnTime.
type OrderQuery struct {
	OrderID string    `json:"order_id"`
	TxnTime time.Time `json:"txn_time"`
}

// QueryOrder asks UnionPay about a consume. The answer is returned as it
// is: the workflow decides what it means (03/04/05/34 stay unknown).
func (a *Payments) QueryOrder(ctx context.Context, q OrderQuery) (unionpay.QueryResult, error) {
	return a.Gateway.Query(ctx, q.OrderID, q.TxnTime)
}

// QueryRefund asks UnionPay about a refund attempt (its own orderId and
// txnTime).
func (a *Payments) QueryRefund(ctx context.Context, q OrderQuery) (unionpay.QueryResult, error) {
	return a.Gateway.Query(ctx, q.OrderID, q.TxnTime)
}

// PaidRequest records a charge.
type PaidRequest struct {
	OrderID    string `json:"order_id"`
	QueryID    string `json:"query_id"`
	SettleDate string `json:"settle_date"`
	// Source says how it became known, for the audit log: notification,
	// query, reconciliation.
	Source string `json:"source"`
}

// MarkPaid records that UnionPay charged the payer. The first recording's
// time stays (it is the payment's paid_at at the platform).
func (a *Payments) MarkPaid(ctx context.Context, r PaidRequest) (store.Payment, error) {
	p, err := a.Records.MarkPaid(ctx, r.OrderID, store.Charge{QueryID: r.QueryID, SettleDate: r.SettleDate, PaidAt: a.now(), Source: r.Source}, actor(ctx))
	return p, storeErr(err)
}

// ExpireRequest closes an order never paid.
type ExpireRequest struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// MarkExpired records that the order was not paid by its deadline.
func (a *Payments) MarkExpired(ctx context.Context, r ExpireRequest) (store.Payment, error) {
	p, err := a.Records.MarkExpired(ctx, r.OrderID, r.Reason, actor(ctx))
	return p, storeErr(err)
}

// PostToPlatform posts a paid payment to the platform under its reference
// (PostingReference), with one allocation per bill or as a prepaid top-up,
// from what is recorded (so every retry, and a recovery, sends the same
// content and the platform's idempotency holds). It refuses to post a
// payment that is not paid (or already posted). A permanent refusal of the
// platform is non-retryable (PostingRefused: the workflow refunds); the
// platform being down is retried.
func (a *Payments) PostToPlatform(ctx context.Context, orderID string) (platform.Payment, error) {
	p, err := a.Records.PaymentByOrderID(ctx, orderID)
	if err != nil {
		return platform.Payment{}, err
	}
	if p.Status != store.PaymentPaid && p.Status != store.PaymentPosted {
		return platform.Payment{}, nonRetryable(ErrTypeIllegalTransition, "payment of order %s is %s; only a paid payment is posted", orderID, p.Status)
	}
	pp := platform.PostPayment{
		Reference: PostingReference(p.CustomerID, p.IdempotencyKey), CustomerID: p.CustomerID, Amount: money.Fen(p.Amount),
		Prepaid: p.Kind == store.PaymentKindPrepay, Channel: PaymentChannel, ChannelTxnID: p.QueryID, PaidAt: *p.PaidAt,
	}
	for i, id := range p.BillIDs {
		pp.Allocations = append(pp.Allocations, platform.Allocation{BillID: id, Amount: money.Fen(p.BillAmounts[i])})
	}
	posted, err := a.Platform.PostPayment(ctx, pp)
	if err != nil && !platform.Retryable(err) {
		// Before giving the money back, make sure this very payment is not
		// posted already (an earlier attempt whose answer was lost, then a
		// refusal that did not look at the reference first): posted and
		// refunded would pay the customer twice.
		prev, perr := a.Platform.Payment(ctx, pp.Reference)
		switch {
		case perr == nil && prev.Status == platform.PaymentPosted:
			return prev, nil
		case perr != nil && !errors.Is(perr, platform.ErrNotFound):
			return platform.Payment{}, fmt.Errorf("posting refused (%w), and whether it was posted before cannot be told: %w", err, perr)
		}
		var pe *platform.Error
		msg := err.Error()
		if errors.As(err, &pe) {
			msg = fmt.Sprintf("%s (%s)", pe.Message, pe.Code)
		}
		return platform.Payment{}, temporal.NewNonRetryableApplicationError("the platform refused the payment: "+msg, ErrTypePostingRefused, err)
	}
	return posted, err
}

// PostedRequest records a posting.
type PostedRequest struct {
	OrderID    string    `json:"order_id"`
	PostingRef string    `json:"posting_ref"`
	PostedAt   time.Time `json:"posted_at"`
}

// Receipt is what the customer keeps of a posted payment.
type Receipt struct {
	WorkflowID  string                `json:"workflow_id"`
	CustomerID  string                `json:"customer_id"`
	Kind        string                `json:"kind"`
	Amount      money.Fen             `json:"amount"`
	Allocations []platform.Allocation `json:"allocations,omitempty"`
	OrderID     string                `json:"order_id"`
	QueryID     string                `json:"query_id"`    // UnionPay's transaction ID
	PostingRef  string                `json:"posting_ref"` // the platform's payment reference
	SettleDate  string                `json:"settle_date,omitempty"`
	PaidAt      time.Time             `json:"paid_at"`
	PostedAt    time.Time             `json:"posted_at"`
}

// MarkPosted records the posting and returns the receipt.
func (a *Payments) MarkPosted(ctx context.Context, r PostedRequest) (Receipt, error) {
	at := r.PostedAt
	if at.IsZero() {
		at = a.now()
	}
	p, err := a.Records.MarkPosted(ctx, r.OrderID, r.PostingRef, at, actor(ctx))
	if err != nil {
		return Receipt{}, storeErr(err)
	}
	rc := Receipt{WorkflowID: p.WorkflowID, CustomerID: p.CustomerID, Kind: p.Kind, Amount: money.Fen(p.Amount), OrderID: p.OrderID,
		QueryID: p.QueryID, PostingRef: p.PostingRef, SettleDate: p.SettleDate, PaidAt: *p.PaidAt, PostedAt: *p.PostedAt}
	for i, id := range p.BillIDs {
		rc.Allocations = append(rc.Allocations, platform.Allocation{BillID: id, Amount: money.Fen(p.BillAmounts[i])})
	}
	return rc, nil
}

// RefundRequest is one refund attempt of a paid payment.
type RefundRequest struct {
	OrderID string    `json:"order_id"` // the consume's
	Attempt int       `json:"attempt"`  // from 1
	TxnTime time.Time `json:"txn_time"` // fixed by the workflow for the attempt
	Reason  string    `json:"reason"`
}

// Refund answers, as far as the request's answer tells.
const (
	RefundAccepted = "accepted" // 00 or 12 (duplicate: sent before): the outcome comes by notification or query
	RefundUnknown  = "unknown"  // 03/04/05: maybe received; query
	RefundRefused  = "refused"  // refused outright: this attempt did nothing
)

// RefundAnswer is the answer to a refund attempt.
type RefundAnswer struct {
	RefundOrderID string    `json:"refund_order_id"`
	TxnTime       time.Time `json:"txn_time"`
	Result        string    `json:"result"` // RefundAccepted, RefundUnknown, RefundRefused
	RespCode      string    `json:"resp_code"`
	RespMsg       string    `json:"resp_msg"`
}

// Refund makes refund attempt n of a paid payment: it records the attempt
// (refunding; RefundOrderIDFor gives its orderId) before sending it, so a
// crash between the two leaves the attempt known, then sends the refund of
// the full amount. Sending it again is safe: same orderId and txnTime, and
// the gateway answers a duplicate (12), taken as accepted.
func (a *Payments) Refund(ctx context.Context, r RefundRequest) (RefundAnswer, error) {
	p, err := a.Records.PaymentByOrderID(ctx, r.OrderID)
	if err != nil {
		return RefundAnswer{}, err
	}
	refundID := RefundOrderIDFor(p.OrderID, r.Attempt)
	if _, err := a.Records.MarkRefunding(ctx, p.OrderID, store.RefundStart{Attempt: r.Attempt, RefundOrderID: refundID, TxnTime: r.TxnTime, Reason: r.Reason}, actor(ctx)); err != nil {
		return RefundAnswer{}, storeErr(err)
	}
	acc, err := a.Gateway.Refund(ctx, unionpay.RefundRequest{OrderID: refundID, TxnTime: r.TxnTime, OrigQueryID: p.QueryID, Amount: money.Fen(p.Amount), BackURL: a.BackURL})
	if err != nil {
		return RefundAnswer{}, err
	}
	ans := RefundAnswer{RefundOrderID: refundID, TxnTime: r.TxnTime, RespCode: acc.RespCode, RespMsg: acc.RespMsg}
	switch {
	case acc.RespCode == unionpay.RespSuccess || acc.RespCode == unionpay.RespDuplicate:
		ans.Result = RefundAccepted
	case acc.Outcome == unionpay.Failed:
		ans.Result = RefundRefused
	default:
		ans.Result = RefundUnknown
	}
	return ans, nil
}

// RefundedRequest records a refund that went through.
type RefundedRequest struct {
	OrderID       string `json:"order_id"`
	RefundOrderID string `json:"refund_order_id"`
	QueryID       string `json:"query_id"`
	SettleDate    string `json:"settle_date"`
}

// MarkRefunded records that the refund went through.
func (a *Payments) MarkRefunded(ctx context.Context, r RefundedRequest) (store.Payment, error) {
	p, err := a.Records.MarkRefunded(ctx, r.OrderID, store.RefundDone{RefundOrderID: r.RefundOrderID, QueryID: r.QueryID, SettleDate: r.SettleDate, RefundedAt: a.now()}, actor(ctx))
	return p, storeErr(err)
}

// UnboundNote says a payment's USB key was unbound while it ran.
type UnboundNote struct {
	CustomerID  string `json:"customer_id"`
	TokenSerial string `json:"token_serial"`
	OrderID     string `json:"order_id,omitempty"`
	Status      string `json:"status"`
	Why         string `json:"why"`
}

// NoteTokenUnbound audits that the payment's key was unbound meanwhile
// ("payment.token_unbound") and what the payment does about it.
func (a *Payments) NoteTokenUnbound(ctx context.Context, n UnboundNote) error {
	return a.Records.Audit(ctx, store.AuditRecord{Actor: actor(ctx), Action: "payment.token_unbound",
		Subject: activity.GetInfo(ctx).WorkflowExecution.ID, Outcome: store.OutcomeOK,
		Detail: map[string]any{"customer_id": n.CustomerID, "token_serial": n.TokenSerial, "order_id": n.OrderID,
			"status": n.Status, "why": strings.TrimSpace(n.Why)}})
}

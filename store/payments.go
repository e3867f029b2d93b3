package store

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gridpay/gridpay/internal/derrors"
)

// PaymentStatus is where a payment stands (migrations/0004_payments.up.sql
// draws the transitions).
type PaymentStatus string

const (
	// PaymentAwaiting: the order is made; the payer may pay until the
	// deadline.
	PaymentAwaiting PaymentStatus = "awaiting_payment"
	// PaymentPaid: UnionPay charged the payer; not yet posted.
	PaymentPaid PaymentStatus = "paid"
	// PaymentPosted: the platform recorded the payment. Final.
	PaymentPosted PaymentStatus = "posted"
	// PaymentRefunding: the platform refused it; the charge is being
	// refunded.
	PaymentRefunding PaymentStatus = "refunding"
	// PaymentRefunded: the payer got the money back. Final.
	PaymentRefunded PaymentStatus = "refunded"
	// PaymentExpired: not paid by the deadline. Final unless
	// reconciliation finds it paid after all.
	PaymentExpired PaymentStatus = "expired"
	// PaymentRejected: refused before any order was made. Final.
	PaymentRejected PaymentStatus = "rejected"
)

// Final reports whether nothing more happens to a payment in this status
// (an expired one may still be found paid by reconciliation).
func (s PaymentStatus) Final() bool {
	return s == PaymentPosted || s == PaymentRefunded || s == PaymentExpired || s == PaymentRejected
}

// Kinds of payment.
const (
	PaymentKindBills  = "bills"
	PaymentKindPrepay = "prepay"
)

// nextStatuses is the transition table: what each status may become.
var nextStatuses = map[PaymentStatus][]PaymentStatus{
	PaymentAwaiting:  {PaymentPaid, PaymentExpired},
	PaymentExpired:   {PaymentPaid},
	PaymentPaid:      {PaymentPosted, PaymentRefunding},
	PaymentRefunding: {PaymentRefunding, PaymentRefunded}, // refunding → refunding: the next attempt
}

// ErrIllegalTransition means a payment cannot move from its status to the
// one asked for (posted → refunded, refunded → posted, …).
var ErrIllegalTransition = errors.New("illegal payment transition")

// ErrReplay means an instruction's nonce was already used.
var ErrReplay = errors.New("instruction nonce already used")

// Payment is a payment as recorded. Amounts are fen.
type Payment struct {
	ID             int64
	IdempotencyKey string
	CustomerID     string
	WorkflowID     string
	TokenSerial    string
	CertSerial     string
	Kind           string
	BillIDs        []string
	BillAmounts    []int64 // parallel to BillIDs
	Amount         int64
	// InstructionSHA256 is the SHA-256 of the signed instruction's
	// encoding; nil for a rejection that had none that decoded.
	InstructionSHA256 []byte
	OrderID           string // "" for a rejected payment
	TxnTime           time.Time
	PayDeadline       time.Time
	Status            PaymentStatus
	QueryID           string
	SettleDate        string // MMDD
	PaidAt            *time.Time
	PostingRef        string
	PostedAt          *time.Time
	RefundAttempt     int
	RefundOrderID     string
	RefundTxnTime     *time.Time
	RefundQueryID     string
	RefundSettleDate  string
	RefundedAt        *time.Time
	Reason            string
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// NewPayment is what CreatePayment and RejectPayment record.
type NewPayment struct {
	IdempotencyKey    string
	CustomerID        string
	WorkflowID        string
	TokenSerial       string
	CertSerial        string
	Kind              string
	BillIDs           []string
	BillAmounts       []int64
	Amount            int64
	InstructionSHA256 []byte
	// The order, for CreatePayment; empty for RejectPayment.
	OrderID     string
	TxnTime     time.Time
	PayDeadline time.Time
}

const paymentColumns = `id, idempotency_key, customer_id, workflow_id, token_serial, cert_serial, kind, bill_ids, bill_amounts,
	amount, instruction_sha256, coalesce(order_id, ''), txn_time, pay_deadline, status, coalesce(query_id, ''),
	coalesce(settle_date, ''), paid_at, coalesce(posting_ref, ''), posted_at, refund_attempt, coalesce(refund_order_id, ''),
	refund_txn_time, coalesce(refund_query_id, ''), coalesce(refund_settle_date, ''), refunded_at, reason, created_at, updated_at`

func scanPayment(row pgx.Row) (Payment, error) {
	var (
		p                     Payment
		status                string
		txnTime, payDeadline  *time.Time
		billIDs               []string
		billAmounts           []int64
		paidAt, postedAt      *time.Time
		refundTxn, refundedAt *time.Time
	)
	err := row.Scan(&p.ID, &p.IdempotencyKey, &p.CustomerID, &p.WorkflowID, &p.TokenSerial, &p.CertSerial, &p.Kind,
		&billIDs, &billAmounts, &p.Amount, &p.InstructionSHA256, &p.OrderID, &txnTime, &payDeadline, &status, &p.QueryID,
		&p.SettleDate, &paidAt, &p.PostingRef, &postedAt, &p.RefundAttempt, &p.RefundOrderID,
		&refundTxn, &p.RefundQueryID, &p.RefundSettleDate, &refundedAt, &p.Reason, &p.CreatedAt, &p.UpdatedAt)
	if err != nil {
		return Payment{}, translate(err)
	}
	p.Status = PaymentStatus(status)
	p.BillIDs, p.BillAmounts = billIDs, billAmounts
	if p.BillIDs == nil {
		p.BillIDs = []string{}
	}
	if p.BillAmounts == nil {
		p.BillAmounts = []int64{}
	}
	if txnTime != nil {
		p.TxnTime = txnTime.UTC()
	}
	if payDeadline != nil {
		p.PayDeadline = payDeadline.UTC()
	}
	p.PaidAt, p.PostedAt, p.RefundTxnTime, p.RefundedAt = utcPtr(paidAt), utcPtr(postedAt), utcPtr(refundTxn), utcPtr(refundedAt)
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// sameRequest tells whether an existing row records the same request as
// np, so that recording it again is an idempotent repeat.
func (p Payment) sameRequest(np NewPayment) bool {
	return p.WorkflowID == np.WorkflowID && p.CustomerID == np.CustomerID && p.IdempotencyKey == np.IdempotencyKey &&
		p.Kind == np.Kind && p.Amount == np.Amount && slices.Equal(p.BillIDs, nonNil(np.BillIDs)) &&
		slices.Equal(p.BillAmounts, nonNil(np.BillAmounts)) && p.OrderID == np.OrderID &&
		p.TxnTime.Equal(np.TxnTime.UTC().Truncate(time.Microsecond))
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (np NewPayment) check() error {
	switch {
	case np.Kind != PaymentKindBills && np.Kind != PaymentKindPrepay:
		return fmt.Errorf("%w: kind %q", ErrInvalid, np.Kind)
	case len(np.BillIDs) != len(np.BillAmounts):
		return fmt.Errorf("%w: %d bill IDs but %d bill amounts", ErrInvalid, len(np.BillIDs), len(np.BillAmounts))
	case np.Amount <= 0:
		return fmt.Errorf("%w: amount %d fen", ErrInvalid, np.Amount)
	}
	return nil
}

func paymentDetail(p Payment) map[string]any {
	d := map[string]any{
		"customer_id": p.CustomerID, "idempotency_key": p.IdempotencyKey, "token_serial": p.TokenSerial,
		"cert_serial": p.CertSerial, "kind": p.Kind, "bill_ids": anySlice(p.BillIDs), "amount_fen": p.Amount,
	}
	if p.OrderID != "" {
		d["order_id"] = p.OrderID
	}
	if p.InstructionSHA256 != nil {
		d["instruction_sha256"] = hex.EncodeToString(p.InstructionSHA256)
	}
	return d
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// CreatePayment records a payment with its UnionPay order, awaiting
// payment, and audits it ("payment.awaiting_payment") in the same
// transaction. Recording the same payment again (same workflow, key, order
// and content) returns it unchanged; anything else under the same key, order
// or workflow is ErrConflict.
func CreatePayment(ctx context.Context, q Querier, np NewPayment, actor string) (_ Payment, err error) {
	defer derrors.Wrap(&err, "store.CreatePayment(ctx, %q)", np.WorkflowID)
	if err := np.check(); err != nil {
		return Payment{}, err
	}
	if np.OrderID == "" || np.TxnTime.IsZero() || np.PayDeadline.IsZero() {
		return Payment{}, fmt.Errorf("%w: a payment awaiting payment needs its order, txn time and deadline", ErrInvalid)
	}
	return insertPayment(ctx, q, np, PaymentAwaiting, "", actor)
}

// RejectPayment records a payment request refused before any order was
// made, with the reason the customer sees, and audits it
// ("payment.rejected", outcome refused). Idempotent like CreatePayment.
func RejectPayment(ctx context.Context, q Querier, np NewPayment, reason, actor string) (_ Payment, err error) {
	defer derrors.Wrap(&err, "store.RejectPayment(ctx, %q)", np.WorkflowID)
	if err := np.check(); err != nil {
		return Payment{}, err
	}
	np.OrderID, np.TxnTime, np.PayDeadline = "", time.Time{}, time.Time{}
	return insertPayment(ctx, q, np, PaymentRejected, reason, actor)
}

func insertPayment(ctx context.Context, q Querier, np NewPayment, status PaymentStatus, reason, actor string) (Payment, error) {
	tx, err := q.Begin(ctx)
	if err != nil {
		return Payment{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var orderID, txnTime, deadline any
	if np.OrderID != "" {
		orderID, txnTime, deadline = np.OrderID, np.TxnTime.UTC(), np.PayDeadline.UTC()
	}
	p, err := scanPayment(tx.QueryRow(ctx, `
		INSERT INTO payments (idempotency_key, customer_id, workflow_id, token_serial, cert_serial, kind, bill_ids, bill_amounts,
			amount, instruction_sha256, order_id, txn_time, pay_deadline, status, reason)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
		ON CONFLICT DO NOTHING
		RETURNING `+paymentColumns,
		np.IdempotencyKey, np.CustomerID, np.WorkflowID, np.TokenSerial, np.CertSerial, np.Kind, nonNil(np.BillIDs), nonNil(np.BillAmounts),
		np.Amount, np.InstructionSHA256, orderID, txnTime, deadline, string(status), reason))
	if errors.Is(err, ErrNotFound) {
		// Something with the same key, workflow or order exists.
		existing, gerr := scanPayment(tx.QueryRow(ctx, `SELECT `+paymentColumns+` FROM payments
			WHERE (customer_id = $1 AND idempotency_key = $2) OR workflow_id = $3 OR order_id = $4 LIMIT 1`,
			np.CustomerID, np.IdempotencyKey, np.WorkflowID, np.OrderID))
		if gerr != nil {
			return Payment{}, gerr
		}
		if !existing.sameRequest(np) {
			return Payment{}, fmt.Errorf("%w: payment %s (key %s, order %s) is recorded with other content", ErrConflict,
				existing.WorkflowID, existing.IdempotencyKey, existing.OrderID)
		}
		if status == PaymentRejected && existing.Status != PaymentRejected {
			return Payment{}, fmt.Errorf("%w: payment %s has an order (%s); it cannot be rejected", ErrIllegalTransition, existing.WorkflowID, existing.Status)
		}
		return existing, nil
	}
	if err != nil {
		return Payment{}, err
	}
	outcome, detail := OutcomeOK, paymentDetail(p)
	if status == PaymentRejected {
		outcome, detail["reason"] = OutcomeRefused, reason
	} else {
		detail["pay_deadline"] = p.PayDeadline.Format(time.RFC3339)
	}
	if _, err := AppendAudit(ctx, tx, AuditRecord{Actor: actor, Action: "payment." + string(status), Subject: p.WorkflowID,
		Outcome: outcome, Detail: detail}); err != nil {
		return Payment{}, err
	}
	return p, tx.Commit(ctx)
}

// Charge is UnionPay's confirmation that the payer paid.
type Charge struct {
	QueryID    string
	SettleDate string // MMDD, may be ""
	PaidAt     time.Time
	// Source says how it became known: "notification", "query",
	// "reconciliation 2026-03-01"…
	Source string
}

// MarkPaymentPaid records the charge of a payment awaiting payment (or an
// expired one that reconciliation found paid after all). Recording the same
// charge again, at any later status, returns the payment unchanged; another
// queryId is ErrConflict.
func MarkPaymentPaid(ctx context.Context, q Querier, orderID string, c Charge, actor string) (_ Payment, err error) {
	defer derrors.Wrap(&err, "store.MarkPaymentPaid(ctx, %q)", orderID)
	if c.QueryID == "" || c.PaidAt.IsZero() {
		return Payment{}, fmt.Errorf("%w: a charge needs its queryId and time", ErrInvalid)
	}
	return transition(ctx, q, orderID, PaymentPaid, actor,
		func(cur Payment) (bool, error) {
			if cur.QueryID == "" {
				return false, nil
			}
			if cur.QueryID != c.QueryID {
				return false, fmt.Errorf("%w: order %s was charged with queryId %s, not %s", ErrConflict, orderID, cur.QueryID, c.QueryID)
			}
			return true, nil
		},
		`query_id = $2, settle_date = nullif($3, ''), paid_at = $4`, []any{c.QueryID, c.SettleDate, c.PaidAt.UTC()},
		map[string]any{"query_id": c.QueryID, "settle_date": c.SettleDate, "source": c.Source})
}

// MarkPaymentExpired closes a payment that was not paid by its deadline.
// Again is a no-op.
func MarkPaymentExpired(ctx context.Context, q Querier, orderID, reason, actor string) (_ Payment, err error) {
	defer derrors.Wrap(&err, "store.MarkPaymentExpired(ctx, %q)", orderID)
	return transition(ctx, q, orderID, PaymentExpired, actor,
		func(cur Payment) (bool, error) { return cur.Status == PaymentExpired, nil },
		`reason = $2`, []any{reason}, map[string]any{"reason": reason})
}

// MarkPaymentPosted records that the platform posted a paid payment under
// postingRef. Again with the same reference is a no-op; another reference is
// ErrConflict.
func MarkPaymentPosted(ctx context.Context, q Querier, orderID, postingRef string, postedAt time.Time, actor string) (_ Payment, err error) {
	defer derrors.Wrap(&err, "store.MarkPaymentPosted(ctx, %q)", orderID)
	if postingRef == "" {
		return Payment{}, fmt.Errorf("%w: empty posting reference", ErrInvalid)
	}
	return transition(ctx, q, orderID, PaymentPosted, actor,
		func(cur Payment) (bool, error) {
			if cur.Status != PaymentPosted {
				return false, nil
			}
			if cur.PostingRef != postingRef {
				return false, fmt.Errorf("%w: order %s was posted as %s, not %s", ErrConflict, orderID, cur.PostingRef, postingRef)
			}
			return true, nil
		},
		`posting_ref = $2, posted_at = $3`, []any{postingRef, postedAt.UTC()},
		map[string]any{"posting_ref": postingRef})
}

// RefundStart is one attempt at refunding a payment.
type RefundStart struct {
	// Attempt counts from 1; attempt n+1 may start only after attempt n
	// failed for certain.
	Attempt       int
	RefundOrderID string
	TxnTime       time.Time
	// Reason is why the payment is refunded, for the customer.
	Reason string
}

// MarkPaymentRefunding records a refund attempt before it is sent: attempt
// 1 of a paid payment, or attempt n+1 of one whose attempt n failed.
// Recording the same attempt again is a no-op.
func MarkPaymentRefunding(ctx context.Context, q Querier, orderID string, r RefundStart, actor string) (_ Payment, err error) {
	defer derrors.Wrap(&err, "store.MarkPaymentRefunding(ctx, %q, %d)", orderID, r.Attempt)
	if r.Attempt < 1 || r.RefundOrderID == "" || r.TxnTime.IsZero() {
		return Payment{}, fmt.Errorf("%w: a refund attempt needs its number, order and txn time", ErrInvalid)
	}
	return transition(ctx, q, orderID, PaymentRefunding, actor,
		func(cur Payment) (bool, error) {
			switch {
			case cur.Status == PaymentRefunding && cur.RefundAttempt == r.Attempt:
				if cur.RefundOrderID != r.RefundOrderID || !cur.RefundTxnTime.Equal(r.TxnTime.UTC().Truncate(time.Microsecond)) {
					return false, fmt.Errorf("%w: refund attempt %d of order %s is %s", ErrConflict, r.Attempt, orderID, cur.RefundOrderID)
				}
				return true, nil
			case cur.Status == PaymentPaid && r.Attempt != 1, cur.Status == PaymentRefunding && r.Attempt != cur.RefundAttempt+1:
				return false, fmt.Errorf("%w: order %s is at refund attempt %d, not before %d", ErrIllegalTransition, orderID, cur.RefundAttempt, r.Attempt)
			}
			return false, nil
		},
		`refund_attempt = $2, refund_order_id = $3, refund_txn_time = $4, reason = $5`,
		[]any{r.Attempt, r.RefundOrderID, r.TxnTime.UTC(), r.Reason},
		map[string]any{"attempt": r.Attempt, "refund_order_id": r.RefundOrderID, "reason": r.Reason})
}

// RefundDone is UnionPay's confirmation that a refund went through.
type RefundDone struct {
	RefundOrderID string // the attempt that succeeded
	QueryID       string
	SettleDate    string // MMDD, may be ""
	RefundedAt    time.Time
}

// MarkPaymentRefunded records that the current refund attempt succeeded.
// Again is a no-op; a refund order other than the current attempt's is
// ErrConflict.
func MarkPaymentRefunded(ctx context.Context, q Querier, orderID string, d RefundDone, actor string) (_ Payment, err error) {
	defer derrors.Wrap(&err, "store.MarkPaymentRefunded(ctx, %q)", orderID)
	if d.RefundOrderID == "" || d.RefundedAt.IsZero() {
		return Payment{}, fmt.Errorf("%w: a refund needs its order and time", ErrInvalid)
	}
	return transition(ctx, q, orderID, PaymentRefunded, actor,
		func(cur Payment) (bool, error) {
			if cur.RefundOrderID != "" && cur.RefundOrderID != d.RefundOrderID {
				return false, fmt.Errorf("%w: order %s is being refunded as %s, not %s", ErrConflict, orderID, cur.RefundOrderID, d.RefundOrderID)
			}
			return cur.Status == PaymentRefunded, nil
		},
		`refund_query_id = nullif($2, ''), refund_settle_date = nullif($3, ''), refunded_at = $4`,
		[]any{d.QueryID, d.SettleDate, d.RefundedAt.UTC()},
		map[string]any{"refund_order_id": d.RefundOrderID, "refund_query_id": d.QueryID, "settle_date": d.SettleDate})
}

// transition moves the payment of orderID to status `to` under a row lock,
// with the audit entry "payment.<to>" in the same transaction. done says,
// from the current row, whether the transition is already made (a no-op
// then) or conflicts; otherwise the table of legal transitions decides.
// set is the SET clause for the new data ($1 is the payment's ID).
func transition(ctx context.Context, q Querier, orderID string, to PaymentStatus, actor string,
	done func(Payment) (bool, error), set string, args []any, detail map[string]any) (Payment, error) {
	tx, err := q.Begin(ctx)
	if err != nil {
		return Payment{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	cur, err := scanPayment(tx.QueryRow(ctx, `SELECT `+paymentColumns+` FROM payments WHERE order_id = $1 FOR UPDATE`, orderID))
	if err != nil {
		return Payment{}, err
	}
	already, err := done(cur)
	if err != nil {
		return Payment{}, err
	}
	if already {
		return cur, nil
	}
	if !slices.Contains(nextStatuses[cur.Status], to) {
		return Payment{}, fmt.Errorf("%w: order %s is %s and cannot become %s", ErrIllegalTransition, orderID, cur.Status, to)
	}
	p, err := scanPayment(tx.QueryRow(ctx, `UPDATE payments SET status = '`+string(to)+`', updated_at = now(), `+set+`
		WHERE id = $1 RETURNING `+paymentColumns, append([]any{cur.ID}, args...)...))
	if err != nil {
		return Payment{}, err
	}
	d := map[string]any{"order_id": orderID, "customer_id": p.CustomerID, "amount_fen": p.Amount, "from": string(cur.Status)}
	for k, v := range detail {
		d[k] = v
	}
	outcome := OutcomeOK
	if to == PaymentExpired {
		outcome = OutcomeRefused
	}
	if _, err := AppendAudit(ctx, tx, AuditRecord{Actor: actor, Action: "payment." + string(to), Subject: p.WorkflowID,
		Outcome: outcome, Detail: d}); err != nil {
		return Payment{}, err
	}
	return p, tx.Commit(ctx)
}

// GetPayment returns a payment by ID.
func GetPayment(ctx context.Context, q Querier, id int64) (Payment, error) {
	return scanPayment(q.QueryRow(ctx, `SELECT `+paymentColumns+` FROM payments WHERE id = $1`, id))
}

// PaymentByOrderID returns the payment whose UnionPay order, or one of
// whose refund orders (the current attempt), is orderID: the gateway finds
// the workflow to signal with a notification this way.
func PaymentByOrderID(ctx context.Context, q Querier, orderID string) (Payment, error) {
	return scanPayment(q.QueryRow(ctx, `SELECT `+paymentColumns+` FROM payments WHERE order_id = $1 OR refund_order_id = $1`, orderID))
}

// PaymentByQueryID returns the payment UnionPay charged under queryId
// (reconciliation finds a refund's consume by its origQryId this way).
func PaymentByQueryID(ctx context.Context, q Querier, queryID string) (Payment, error) {
	return scanPayment(q.QueryRow(ctx, `SELECT `+paymentColumns+` FROM payments WHERE query_id = $1`, queryID))
}

// PaymentByKey returns a customer's payment by idempotency key.
func PaymentByKey(ctx context.Context, q Querier, customerID, key string) (Payment, error) {
	return scanPayment(q.QueryRow(ctx, `SELECT `+paymentColumns+` FROM payments WHERE customer_id = $1 AND idempotency_key = $2`, customerID, key))
}

// PaymentByWorkflowID returns the payment of a workflow.
func PaymentByWorkflowID(ctx context.Context, q Querier, workflowID string) (Payment, error) {
	return scanPayment(q.QueryRow(ctx, `SELECT `+paymentColumns+` FROM payments WHERE workflow_id = $1`, workflowID))
}

// PaymentsForCustomer lists a customer's payments, newest first, at most
// limit (0: 100).
func PaymentsForCustomer(ctx context.Context, q Querier, customerID string, limit int) (_ []Payment, err error) {
	defer derrors.Wrap(&err, "store.PaymentsForCustomer(ctx, %q)", customerID)
	if limit <= 0 {
		limit = 100
	}
	return listPayments(ctx, q, `WHERE customer_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, customerID, limit)
}

// PaymentsSettledOn lists the payments UnionPay settled (or refunded) on a
// settle date: its MMDD, with the charge or refund made between from and
// to (the settle date has no year; the window picks the right one).
func PaymentsSettledOn(ctx context.Context, q Querier, mmdd string, from, to time.Time) (_ []Payment, err error) {
	defer derrors.Wrap(&err, "store.PaymentsSettledOn(ctx, %q)", mmdd)
	return listPayments(ctx, q, `WHERE (settle_date = $1 AND paid_at BETWEEN $2 AND $3)
		OR (refund_settle_date = $1 AND refunded_at BETWEEN $2 AND $3) ORDER BY id`, mmdd, from.UTC(), to.UTC())
}

func listPayments(ctx context.Context, q Querier, where string, args ...any) ([]Payment, error) {
	rows, err := q.Query(ctx, `SELECT `+paymentColumns+` FROM payments `+where, args...)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []Payment
	for rows.Next() {
		p, err := scanPayment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, translate(rows.Err())
}

// RecordNonce accepts a token's instruction nonce once. The workflow that
// recorded it may record it again (a retried activity); any other use is
// ErrReplay. The audit record, if any, is appended in the same
// transaction.
func RecordNonce(ctx context.Context, q Querier, tokenSerial string, nonce []byte, workflowID string, at time.Time, rec *AuditRecord) (err error) {
	defer derrors.Wrap(&err, "store.RecordNonce(ctx, %q)", tokenSerial)
	tx, err := q.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	tag, err := tx.Exec(ctx, `INSERT INTO instruction_nonces (token_serial, nonce, workflow_id, seen_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`, tokenSerial, nonce, workflowID, at.UTC())
	if err != nil {
		return translate(err)
	}
	if tag.RowsAffected() == 0 {
		var by string
		var seen time.Time
		if err := tx.QueryRow(ctx, `SELECT workflow_id, seen_at FROM instruction_nonces WHERE token_serial = $1 AND nonce = $2`,
			tokenSerial, nonce).Scan(&by, &seen); err != nil {
			return translate(err)
		}
		if by != workflowID {
			return fmt.Errorf("%w: nonce %x of token %s was used at %s", ErrReplay, nonce, tokenSerial, seen.UTC().Format(time.RFC3339))
		}
		return nil
	}
	if rec != nil {
		if _, err := AppendAudit(ctx, tx, *rec); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// ReconRun is one reconciliation of a settle date.
type ReconRun struct {
	ID           int64
	SettleDate   string // YYYY-MM-DD
	WorkflowID   string
	RunID        string
	Status       string // running, done
	Records      int
	Matched      int
	Issues       int
	FixesStarted int
	StartedAt    time.Time
	FinishedAt   *time.Time
}

const reconRunColumns = `id, settle_date::text, workflow_id, run_id, status, records, matched, issues, fixes_started, started_at, finished_at`

func scanReconRun(row pgx.Row) (ReconRun, error) {
	var r ReconRun
	err := row.Scan(&r.ID, &r.SettleDate, &r.WorkflowID, &r.RunID, &r.Status, &r.Records, &r.Matched, &r.Issues, &r.FixesStarted,
		&r.StartedAt, &r.FinishedAt)
	r.StartedAt, r.FinishedAt = r.StartedAt.UTC(), utcPtr(r.FinishedAt)
	return r, translate(err)
}

// StartReconRun records the start of a reconciliation run, or returns the
// one this workflow run started already (a retried activity).
func StartReconRun(ctx context.Context, q Querier, settleDate, workflowID, runID string) (_ ReconRun, err error) {
	defer derrors.Wrap(&err, "store.StartReconRun(ctx, %q)", settleDate)
	r, err := scanReconRun(q.QueryRow(ctx, `INSERT INTO recon_runs (settle_date, workflow_id, run_id, status) VALUES ($1, $2, $3, 'running')
		ON CONFLICT (workflow_id, run_id) DO UPDATE SET status = recon_runs.status RETURNING `+reconRunColumns, settleDate, workflowID, runID))
	if err != nil {
		return ReconRun{}, err
	}
	if r.SettleDate != settleDate {
		return ReconRun{}, fmt.Errorf("%w: run %s/%s reconciles %s", ErrConflict, workflowID, runID, r.SettleDate)
	}
	return r, nil
}

// ReconCounts are a run's totals.
type ReconCounts struct {
	Records      int // transactions in the file
	Matched      int // that agree everywhere
	Issues       int
	FixesStarted int
}

// FinishReconRun records a run's totals and marks it done.
func FinishReconRun(ctx context.Context, q Querier, id int64, c ReconCounts) (_ ReconRun, err error) {
	defer derrors.Wrap(&err, "store.FinishReconRun(ctx, %d)", id)
	return scanReconRun(q.QueryRow(ctx, `UPDATE recon_runs SET status = 'done', finished_at = coalesce(finished_at, now()),
		records = $2, matched = $3, issues = $4, fixes_started = $5 WHERE id = $1 RETURNING `+reconRunColumns,
		id, c.Records, c.Matched, c.Issues, c.FixesStarted))
}

// Kinds of reconciliation issue.
const (
	// UnionPay charged (the file), GridPay has not posted or refunded.
	IssuePaidNotPosted = "paid_not_posted"
	// GridPay (or the platform) has it posted, the file has no charge.
	IssuePostedNotPaid = "posted_not_paid"
	// The file's amount differs from GridPay's.
	IssueAmountDiffers = "amount_differs"
	// A refund GridPay recorded is not in the file, or one in the file
	// was never asked for.
	IssueRefundMissing = "refund_missing"
	// The file has an order GridPay does not know.
	IssueUnknownOrder = "unknown_order"
	// The platform's posting disagrees with GridPay's (missing, reversed,
	// other amount).
	IssuePlatformMismatch = "platform_mismatch"
)

// Actions reconciliation takes on an issue.
const (
	ReconReport  = "report"  // nothing safe to do: people look at it
	ReconSignal  = "signal"  // the payment workflow, still running, was told the file's outcome
	ReconRecover = "recover" // a recovery workflow posts (or refunds) it
)

// ReconIssue is a mismatch found by a run.
type ReconIssue struct {
	ID             int64
	RunID          int64
	Kind           string
	OrderID        string
	QueryID        string
	PaymentID      *int64
	FileAmount     *int64
	GridPayAmount  *int64
	PlatformAmount *int64
	Detail         string
	Action         string
	CreatedAt      time.Time
}

const reconIssueColumns = `id, run_id, kind, order_id, query_id, payment_id, file_amount, gridpay_amount, platform_amount, detail, action, created_at`

func scanReconIssue(row pgx.Row) (ReconIssue, error) {
	var i ReconIssue
	err := row.Scan(&i.ID, &i.RunID, &i.Kind, &i.OrderID, &i.QueryID, &i.PaymentID, &i.FileAmount, &i.GridPayAmount, &i.PlatformAmount,
		&i.Detail, &i.Action, &i.CreatedAt)
	i.CreatedAt = i.CreatedAt.UTC()
	return i, translate(err)
}

// RecordReconIssue records a mismatch of a run; recording the same kind for
// the same order again in the run replaces it (a retried activity).
func RecordReconIssue(ctx context.Context, q Querier, i ReconIssue) (_ ReconIssue, err error) {
	defer derrors.Wrap(&err, "store.RecordReconIssue(ctx, %q, %q)", i.Kind, i.OrderID)
	if i.Action == "" {
		i.Action = ReconReport
	}
	return scanReconIssue(q.QueryRow(ctx, `
		INSERT INTO recon_issues (run_id, kind, order_id, query_id, payment_id, file_amount, gridpay_amount, platform_amount, detail, action)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (run_id, kind, order_id) DO UPDATE SET query_id = EXCLUDED.query_id, payment_id = EXCLUDED.payment_id,
			file_amount = EXCLUDED.file_amount, gridpay_amount = EXCLUDED.gridpay_amount, platform_amount = EXCLUDED.platform_amount,
			detail = EXCLUDED.detail, action = EXCLUDED.action
		RETURNING `+reconIssueColumns,
		i.RunID, i.Kind, i.OrderID, i.QueryID, i.PaymentID, i.FileAmount, i.GridPayAmount, i.PlatformAmount, i.Detail, i.Action))
}

// SetReconIssueAction records what was done about an issue (a signal that
// found its workflow closed becomes a recovery).
func SetReconIssueAction(ctx context.Context, q Querier, runID int64, kind, orderID, action string) (err error) {
	defer derrors.Wrap(&err, "store.SetReconIssueAction(ctx, %d, %q, %q)", runID, kind, orderID)
	tag, err := q.Exec(ctx, `UPDATE recon_issues SET action = $4 WHERE run_id = $1 AND kind = $2 AND order_id = $3`, runID, kind, orderID, action)
	if err != nil {
		return translate(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// ReconIssues lists the issues of a run in the order found.
func ReconIssues(ctx context.Context, q Querier, runID int64) (_ []ReconIssue, err error) {
	defer derrors.Wrap(&err, "store.ReconIssues(ctx, %d)", runID)
	rows, err := q.Query(ctx, `SELECT `+reconIssueColumns+` FROM recon_issues WHERE run_id = $1 ORDER BY id`, runID)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []ReconIssue
	for rows.Next() {
		i, err := scanReconIssue(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, translate(rows.Err())
}

// Violation is a payment that breaks the money invariant.
type Violation struct {
	PaymentID  int64
	WorkflowID string
	OrderID    string
	Status     PaymentStatus
	Problem    string
	// Open is true when the payment is merely not finished (awaiting
	// payment, paid, refunding): a violation only once its workflow is
	// closed. Callers checking mid-flight skip these.
	Open bool
}

func (v Violation) String() string {
	return fmt.Sprintf("payment %d (%s, order %s, %s): %s", v.PaymentID, v.WorkflowID, v.OrderID, v.Status, v.Problem)
}

// CheckPaymentInvariants checks the money invariant over every payment:
// each UnionPay charge is posted exactly once or refunded exactly once,
// never both, never neither; nothing uncharged is posted or refunded. It
// reads the rows and the audit log (one "payment.posted" or
// "payment.refunded" entry per payment at most), so a payment that was
// posted twice shows up even though its row can only say "posted".
// Payments still in flight come back with Open set.
func CheckPaymentInvariants(ctx context.Context, q Querier) (_ []Violation, err error) {
	defer derrors.Wrap(&err, "store.CheckPaymentInvariants")
	rows, err := q.Query(ctx, `
		WITH events AS (
			SELECT subject,
				count(*) FILTER (WHERE action = 'payment.posted')   AS posted,
				count(*) FILTER (WHERE action = 'payment.refunded') AS refunded,
				count(*) FILTER (WHERE action = 'payment.paid')     AS paid
			FROM audit_log WHERE action IN ('payment.posted', 'payment.refunded', 'payment.paid') GROUP BY subject
		)
		SELECT p.id, p.workflow_id, coalesce(p.order_id, ''), p.status, p.query_id IS NOT NULL,
			p.posted_at IS NOT NULL, p.refunded_at IS NOT NULL, p.refund_order_id IS NOT NULL,
			coalesce(e.posted, 0), coalesce(e.refunded, 0), coalesce(e.paid, 0)
		FROM payments p LEFT JOIN events e ON e.subject = p.workflow_id
		ORDER BY p.id`)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []Violation
	for rows.Next() {
		var (
			v                                     Violation
			status                                string
			charged, posted, refunded, refunding  bool
			postedEvents, refundedEvents, paidEvs int64
		)
		if err := rows.Scan(&v.PaymentID, &v.WorkflowID, &v.OrderID, &status, &charged, &posted, &refunded, &refunding,
			&postedEvents, &refundedEvents, &paidEvs); err != nil {
			return nil, translate(err)
		}
		v.Status = PaymentStatus(status)
		report := func(open bool, format string, args ...any) {
			w := v
			w.Open, w.Problem = open, fmt.Sprintf(format, args...)
			out = append(out, w)
		}
		switch {
		case posted && (refunded || refunding):
			report(false, "both posted and refunded")
		case charged && !posted && !refunded:
			report(v.Status == PaymentPaid || v.Status == PaymentRefunding, "charged but neither posted nor refunded")
		case !charged && (posted || refunded):
			report(false, "posted or refunded without a charge")
		case v.Status == PaymentAwaiting:
			report(true, "outcome of the order not known yet")
		}
		if postedEvents > 1 || refundedEvents > 1 || paidEvs > 1 {
			report(false, "audit log records %d postings, %d refunds and %d charges", postedEvents, refundedEvents, paidEvs)
		}
		if postedEvents > 0 && refundedEvents > 0 {
			report(false, "audit log records both a posting and a refund")
		}
		if (postedEvents == 1) != posted || (refundedEvents == 1) != refunded {
			report(false, "audit log (%d postings, %d refunds) disagrees with the record", postedEvents, refundedEvents)
		}
	}
	return out, translate(rows.Err())
}

// PaymentTotals sums GridPay's payments in fen, for comparing with the
// platform's postings and the gateway's charges and refunds.
type PaymentTotals struct {
	Payments int   // with an order
	Charged  int64 // UnionPay charged (paid, posted, refunding, refunded)
	Posted   int64
	Refunded int64
	// InFlight is charged but neither posted nor refunded yet.
	InFlight int64
}

// SumPayments returns the totals over every payment.
func SumPayments(ctx context.Context, q Querier) (_ PaymentTotals, err error) {
	defer derrors.Wrap(&err, "store.SumPayments")
	var t PaymentTotals
	err = q.QueryRow(ctx, `SELECT count(order_id),
		coalesce(sum(amount) FILTER (WHERE paid_at IS NOT NULL), 0),
		coalesce(sum(amount) FILTER (WHERE status = 'posted'), 0),
		coalesce(sum(amount) FILTER (WHERE status = 'refunded'), 0),
		coalesce(sum(amount) FILTER (WHERE status IN ('paid', 'refunding')), 0)
		FROM payments`).Scan(&t.Payments, &t.Charged, &t.Posted, &t.Refunded, &t.InFlight)
	return t, translate(err)
}

// Payments is the payment records as the payment activities use them (the
// interface activities.PaymentRecords): each method is the function of the
// same name on the pool, every write with its audit entry in one
// transaction.
type Payments struct{ DB *DB }

func (s Payments) Certificate(ctx context.Context, serial string) (Certificate, error) {
	return GetCertificate(ctx, s.DB, serial)
}

func (s Payments) ActiveBindingForCert(ctx context.Context, serial string) (Binding, error) {
	return ActiveBindingForCert(ctx, s.DB, serial)
}

func (s Payments) IsRevoked(ctx context.Context, serial string) (bool, error) {
	return IsRevoked(ctx, s.DB, serial)
}

func (s Payments) RecordNonce(ctx context.Context, tokenSerial string, nonce []byte, workflowID string, at time.Time, rec *AuditRecord) error {
	return RecordNonce(ctx, s.DB, tokenSerial, nonce, workflowID, at, rec)
}

func (s Payments) Audit(ctx context.Context, rec AuditRecord) error {
	_, err := AppendAudit(ctx, s.DB, rec)
	return err
}

func (s Payments) CreatePayment(ctx context.Context, np NewPayment, actor string) (Payment, error) {
	return CreatePayment(ctx, s.DB, np, actor)
}

func (s Payments) RejectPayment(ctx context.Context, np NewPayment, reason, actor string) (Payment, error) {
	return RejectPayment(ctx, s.DB, np, reason, actor)
}

func (s Payments) MarkPaid(ctx context.Context, orderID string, c Charge, actor string) (Payment, error) {
	return MarkPaymentPaid(ctx, s.DB, orderID, c, actor)
}

func (s Payments) MarkExpired(ctx context.Context, orderID, reason, actor string) (Payment, error) {
	return MarkPaymentExpired(ctx, s.DB, orderID, reason, actor)
}

func (s Payments) MarkPosted(ctx context.Context, orderID, postingRef string, postedAt time.Time, actor string) (Payment, error) {
	return MarkPaymentPosted(ctx, s.DB, orderID, postingRef, postedAt, actor)
}

func (s Payments) MarkRefunding(ctx context.Context, orderID string, r RefundStart, actor string) (Payment, error) {
	return MarkPaymentRefunding(ctx, s.DB, orderID, r, actor)
}

func (s Payments) MarkRefunded(ctx context.Context, orderID string, d RefundDone, actor string) (Payment, error) {
	return MarkPaymentRefunded(ctx, s.DB, orderID, d, actor)
}

func (s Payments) PaymentByOrderID(ctx context.Context, orderID string) (Payment, error) {
	return PaymentByOrderID(ctx, s.DB, orderID)
}

func (s Payments) PaymentByQueryID(ctx context.Context, queryID string) (Payment, error) {
	return PaymentByQueryID(ctx, s.DB, queryID)
}

func (s Payments) PaymentByKey(ctx context.Context, customerID, key string) (Payment, error) {
	return PaymentByKey(ctx, s.DB, customerID, key)
}

func (s Payments) PaymentsSettledOn(ctx context.Context, mmdd string, from, to time.Time) ([]Payment, error) {
	return PaymentsSettledOn(ctx, s.DB, mmdd, from, to)
}

func (s Payments) StartReconRun(ctx context.Context, settleDate, workflowID, runID string) (ReconRun, error) {
	return StartReconRun(ctx, s.DB, settleDate, workflowID, runID)
}

func (s Payments) RecordReconIssue(ctx context.Context, i ReconIssue) (ReconIssue, error) {
	return RecordReconIssue(ctx, s.DB, i)
}

func (s Payments) SetReconIssueAction(ctx context.Context, runID int64, kind, orderID, action string) error {
	return SetReconIssueAction(ctx, s.DB, runID, kind, orderID, action)
}

func (s Payments) FinishReconRun(ctx context.Context, id int64, c ReconCounts) (ReconRun, error) {
	return FinishReconRun(ctx, s.DB, id, c)
}

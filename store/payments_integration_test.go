//go:build integration

package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var payAt = time.Date(2026, 3, 1, 8, 30, 0, 0, time.UTC)

func newPayment(n int) NewPayment {
	key := fmt.Sprintf("key-%016d", n)
	return NewPayment{
		IdempotencyKey: key, CustomerID: "C100", WorkflowID: "payment/C100/" + key, TokenSerial: "TOK-A", CertSerial: "ab01",
		Kind: PaymentKindBills, BillIDs: []string{"B1", "B2"}, BillAmounts: []int64{1000, 2345}, Amount: 3345,
		InstructionSHA256: bytes.Repeat([]byte{7}, 32),
		OrderID:           fmt.Sprintf("GP%016d", n), TxnTime: payAt, PayDeadline: payAt.Add(15 * time.Minute),
	}
}

// auditActions lists the actions of the audit entries about a payment.
func auditActions(t *testing.T, db *DB, workflowID string) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT action || ':' || outcome FROM audit_log WHERE subject = $1 ORDER BY seq`, workflowID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		out = append(out, s)
	}
	return out
}

func TestPaymentPostedPath(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	np := newPayment(1)
	p, err := CreatePayment(ctx, db, np, "wf")
	if err != nil || p.Status != PaymentAwaiting || p.OrderID != np.OrderID || p.BillAmounts[1] != 2345 || !p.PayDeadline.Equal(np.PayDeadline) {
		t.Fatalf("create: %+v %v", p, err)
	}
	// The same request again is a no-op; another under the same key is not.
	again, err := CreatePayment(ctx, db, np, "wf")
	if err != nil || again.ID != p.ID {
		t.Fatalf("create again: %+v %v", again, err)
	}
	other := np
	other.Amount = 9999
	other.BillAmounts = []int64{1000, 8999}
	if _, err := CreatePayment(ctx, db, other, "wf"); !errors.Is(err, ErrConflict) {
		t.Fatalf("same key, other amount: %v", err)
	}
	stolen := newPayment(2)
	stolen.OrderID = np.OrderID
	if _, err := CreatePayment(ctx, db, stolen, "wf"); !errors.Is(err, ErrConflict) {
		t.Fatalf("same order ID for another payment: %v", err)
	}

	// Posting before the charge is refused.
	if _, err := MarkPaymentPosted(ctx, db, np.OrderID, "ref-1", payAt, "wf"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("posted before paid: %v", err)
	}
	charge := Charge{QueryID: "Q123", SettleDate: "0301", PaidAt: payAt.Add(time.Minute), Source: "notification"}
	p, err = MarkPaymentPaid(ctx, db, np.OrderID, charge, "wf")
	if err != nil || p.Status != PaymentPaid || p.QueryID != "Q123" || p.SettleDate != "0301" {
		t.Fatalf("paid: %+v %v", p, err)
	}
	if _, err := MarkPaymentPaid(ctx, db, np.OrderID, charge, "wf"); err != nil {
		t.Fatalf("paid again: %v", err)
	}
	if _, err := MarkPaymentPaid(ctx, db, np.OrderID, Charge{QueryID: "Q999", PaidAt: payAt}, "wf"); !errors.Is(err, ErrConflict) {
		t.Fatalf("paid with another queryId: %v", err)
	}
	if _, err := MarkPaymentExpired(ctx, db, np.OrderID, "late", "wf"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("paid → expired: %v", err)
	}
	if p, err = MarkPaymentPosted(ctx, db, np.OrderID, "ref-1", payAt.Add(2*time.Minute), "wf"); err != nil || p.Status != PaymentPosted {
		t.Fatalf("posted: %+v %v", p, err)
	}
	if _, err := MarkPaymentPosted(ctx, db, np.OrderID, "ref-1", payAt.Add(3*time.Minute), "wf"); err != nil {
		t.Fatalf("posted again: %v", err)
	}
	if _, err := MarkPaymentPosted(ctx, db, np.OrderID, "ref-2", payAt, "wf"); !errors.Is(err, ErrConflict) {
		t.Fatalf("posted under another reference: %v", err)
	}
	// posted → refunding / refunded is illegal.
	if _, err := MarkPaymentRefunding(ctx, db, np.OrderID, RefundStart{Attempt: 1, RefundOrderID: "GR00000001", TxnTime: payAt}, "wf"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("posted → refunding: %v", err)
	}
	if _, err := MarkPaymentRefunded(ctx, db, np.OrderID, RefundDone{RefundOrderID: "GR00000001", RefundedAt: payAt}, "wf"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("posted → refunded: %v", err)
	}
	// The paid charge recorded again after posting is still a no-op.
	if p, err = MarkPaymentPaid(ctx, db, np.OrderID, charge, "wf"); err != nil || p.Status != PaymentPosted {
		t.Fatalf("paid after posted: %+v %v", p, err)
	}
	want := []string{"payment.awaiting_payment:ok", "payment.paid:ok", "payment.posted:ok"}
	if got := auditActions(t, db, np.WorkflowID); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("audit %v, want %v", got, want)
	}
	for _, find := range []func() (Payment, error){
		func() (Payment, error) { return PaymentByOrderID(ctx, db, np.OrderID) },
		func() (Payment, error) { return PaymentByKey(ctx, db, "C100", np.IdempotencyKey) },
		func() (Payment, error) { return PaymentByWorkflowID(ctx, db, np.WorkflowID) },
		func() (Payment, error) { return GetPayment(ctx, db, p.ID) },
	} {
		if got, err := find(); err != nil || got.ID != p.ID || got.PostingRef != "ref-1" {
			t.Fatalf("lookup: %+v %v", got, err)
		}
	}
	if _, err := PaymentByOrderID(ctx, db, "NOSUCHORDER"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown order: %v", err)
	}
	if v, err := CheckPaymentInvariants(ctx, db); err != nil || len(v) != 0 {
		t.Fatalf("invariants: %v %v", v, err)
	}
	if _, err := db.VerifyAudit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPaymentRefundPath(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	np := newPayment(3)
	if _, err := CreatePayment(ctx, db, np, "wf"); err != nil {
		t.Fatal(err)
	}
	if _, err := MarkPaymentPaid(ctx, db, np.OrderID, Charge{QueryID: "Q3", PaidAt: payAt}, "wf"); err != nil {
		t.Fatal(err)
	}
	r1 := RefundStart{Attempt: 1, RefundOrderID: "GR00000031", TxnTime: payAt.Add(time.Hour), Reason: "bill B1 was settled at a counter"}
	// Attempt 2 cannot come first.
	if _, err := MarkPaymentRefunding(ctx, db, np.OrderID, RefundStart{Attempt: 2, RefundOrderID: "GR00000032", TxnTime: payAt}, "wf"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("attempt 2 first: %v", err)
	}
	p, err := MarkPaymentRefunding(ctx, db, np.OrderID, r1, "wf")
	if err != nil || p.Status != PaymentRefunding || p.RefundAttempt != 1 || p.Reason != r1.Reason {
		t.Fatalf("refunding: %+v %v", p, err)
	}
	if _, err := MarkPaymentRefunding(ctx, db, np.OrderID, r1, "wf"); err != nil {
		t.Fatalf("refunding again: %v", err)
	}
	bad := r1
	bad.RefundOrderID = "GR99999999"
	if _, err := MarkPaymentRefunding(ctx, db, np.OrderID, bad, "wf"); !errors.Is(err, ErrConflict) {
		t.Fatalf("attempt 1 with another order: %v", err)
	}
	// The refund order finds the payment, for notifications.
	if got, err := PaymentByOrderID(ctx, db, "GR00000031"); err != nil || got.ID != p.ID {
		t.Fatalf("by refund order: %+v %v", got, err)
	}
	// Attempt 1 failed for certain: attempt 2.
	r2 := RefundStart{Attempt: 2, RefundOrderID: "GR00000032", TxnTime: payAt.Add(2 * time.Hour), Reason: r1.Reason}
	if p, err = MarkPaymentRefunding(ctx, db, np.OrderID, r2, "wf"); err != nil || p.RefundAttempt != 2 || p.RefundOrderID != "GR00000032" {
		t.Fatalf("attempt 2: %+v %v", p, err)
	}
	if _, err := MarkPaymentRefunded(ctx, db, np.OrderID, RefundDone{RefundOrderID: "GR00000031", RefundedAt: payAt}, "wf"); !errors.Is(err, ErrConflict) {
		t.Fatalf("refunded by the failed attempt: %v", err)
	}
	if _, err := MarkPaymentPosted(ctx, db, np.OrderID, "ref", payAt, "wf"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("refunding → posted: %v", err)
	}
	if v, err := CheckPaymentInvariants(ctx, db); err != nil || len(v) != 1 || !v[0].Open {
		t.Fatalf("a payment being refunded should be an open violation: %v %v", v, err)
	}
	done := RefundDone{RefundOrderID: "GR00000032", QueryID: "RQ1", SettleDate: "0302", RefundedAt: payAt.Add(3 * time.Hour)}
	if p, err = MarkPaymentRefunded(ctx, db, np.OrderID, done, "wf"); err != nil || p.Status != PaymentRefunded || p.RefundQueryID != "RQ1" {
		t.Fatalf("refunded: %+v %v", p, err)
	}
	if _, err := MarkPaymentRefunded(ctx, db, np.OrderID, done, "wf"); err != nil {
		t.Fatalf("refunded again: %v", err)
	}
	if _, err := MarkPaymentPosted(ctx, db, np.OrderID, "ref", payAt, "wf"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("refunded → posted: %v", err)
	}
	if v, err := CheckPaymentInvariants(ctx, db); err != nil || len(v) != 0 {
		t.Fatalf("invariants: %v %v", v, err)
	}
	if tot, err := SumPayments(ctx, db); err != nil || tot != (PaymentTotals{Payments: 1, Charged: 3345, Refunded: 3345}) {
		t.Fatalf("totals %+v %v", tot, err)
	}
	want := "payment.awaiting_payment:ok,payment.paid:ok,payment.refunding:ok,payment.refunding:ok,payment.refunded:ok"
	if got := strings.Join(auditActions(t, db, np.WorkflowID), ","); got != want {
		t.Fatalf("audit %s", got)
	}
}

func TestPaymentExpiredThenFoundPaid(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	np := newPayment(4)
	if _, err := CreatePayment(ctx, db, np, "wf"); err != nil {
		t.Fatal(err)
	}
	p, err := MarkPaymentExpired(ctx, db, np.OrderID, "not paid by 08:45", "wf")
	if err != nil || p.Status != PaymentExpired || p.Reason != "not paid by 08:45" {
		t.Fatalf("expired: %+v %v", p, err)
	}
	if _, err := MarkPaymentExpired(ctx, db, np.OrderID, "not paid by 08:45", "wf"); err != nil {
		t.Fatalf("expired again: %v", err)
	}
	if _, err := MarkPaymentPosted(ctx, db, np.OrderID, "ref", payAt, "wf"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("expired → posted: %v", err)
	}
	if v, err := CheckPaymentInvariants(ctx, db); err != nil || len(v) != 0 {
		t.Fatalf("an expired payment never charged is fine: %v %v", v, err)
	}
	// Reconciliation finds it charged after all.
	if p, err = MarkPaymentPaid(ctx, db, np.OrderID, Charge{QueryID: "Q4", SettleDate: "0301", PaidAt: payAt, Source: "reconciliation 2026-03-01"}, "recon"); err != nil || p.Status != PaymentPaid {
		t.Fatalf("expired → paid: %+v %v", p, err)
	}
	v, err := CheckPaymentInvariants(ctx, db)
	if err != nil || len(v) != 1 || !v[0].Open || !strings.Contains(v[0].Problem, "neither posted nor refunded") {
		t.Fatalf("paid, not posted: %v %v", v, err)
	}
}

func TestRejectPayment(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	np := newPayment(5)
	np.OrderID, np.TxnTime, np.PayDeadline = "", time.Time{}, time.Time{}
	p, err := RejectPayment(ctx, db, np, "bill B1 is already settled", "wf")
	if err != nil || p.Status != PaymentRejected || p.OrderID != "" || p.Reason != "bill B1 is already settled" {
		t.Fatalf("reject: %+v %v", p, err)
	}
	if again, err := RejectPayment(ctx, db, np, "bill B1 is already settled", "wf"); err != nil || again.ID != p.ID {
		t.Fatalf("reject again: %+v %v", again, err)
	}
	if got := strings.Join(auditActions(t, db, np.WorkflowID), ","); got != "payment.rejected:refused" {
		t.Fatalf("audit %s", got)
	}
	// A payment with an order cannot be turned into a rejection.
	withOrder := newPayment(6)
	if _, err := CreatePayment(ctx, db, withOrder, "wf"); err != nil {
		t.Fatal(err)
	}
	if _, err := RejectPayment(ctx, db, withOrder, "late", "wf"); !errors.Is(err, ErrConflict) && !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("reject a payment with an order: %v", err)
	}
	bad := newPayment(7)
	bad.Amount = 0
	if _, err := CreatePayment(ctx, db, bad, "wf"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero amount: %v", err)
	}
	list, err := PaymentsForCustomer(ctx, db, "C100", 0)
	if err != nil || len(list) != 2 || list[0].ID <= list[1].ID {
		t.Fatalf("history: %+v %v", list, err)
	}
}

// Concurrent transitions of one payment: exactly one of them moves it; the
// others find it done with the same data (no-op) or with other data
// (ErrConflict), and one audit entry results.
func TestPaymentConcurrentTransitions(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	np := newPayment(8)
	if _, err := CreatePayment(ctx, db, np, "wf"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = MarkPaymentPaid(ctx, db, np.OrderID, Charge{QueryID: fmt.Sprint("Q", i%2), PaidAt: payAt}, "wf")
		}()
	}
	wg.Wait()
	p, _ := PaymentByOrderID(ctx, db, np.OrderID)
	for i, err := range errs {
		mine := fmt.Sprint("Q", i%2) == p.QueryID
		if mine && err != nil || !mine && !errors.Is(err, ErrConflict) {
			t.Errorf("goroutine %d (winner %s): %v", i, p.QueryID, err)
		}
	}
	if acts := auditActions(t, db, np.WorkflowID); len(acts) != 2 || acts[1] != "payment.paid:ok" {
		t.Fatalf("audit %v", acts)
	}
}

func TestInstructionNonce(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	nonce := bytes.Repeat([]byte{1}, 16)
	rec := &AuditRecord{Actor: "wf1", Action: "payment.instruction", Subject: "payment/C100/k1", Outcome: OutcomeOK}
	if err := RecordNonce(ctx, db, "TOK-A", nonce, "payment/C100/k1", payAt, rec); err != nil {
		t.Fatal(err)
	}
	// The same workflow again (a retried activity) is fine and audits nothing more.
	if err := RecordNonce(ctx, db, "TOK-A", nonce, "payment/C100/k1", payAt, rec); err != nil {
		t.Fatalf("same workflow again: %v", err)
	}
	if got := auditActions(t, db, "payment/C100/k1"); len(got) != 1 {
		t.Fatalf("audit %v", got)
	}
	err := RecordNonce(ctx, db, "TOK-A", nonce, "payment/C100/k2", payAt, rec)
	if !errors.Is(err, ErrReplay) || !strings.Contains(err.Error(), "2026-03-01T08:30:00Z") {
		t.Fatalf("replay: %v", err)
	}
	// Another token may happen to draw the same bytes.
	if err := RecordNonce(ctx, db, "TOK-B", nonce, "payment/C200/k1", payAt, nil); err != nil {
		t.Fatalf("another token: %v", err)
	}
	// A rejected nonce leaves no trace of the refused workflow.
	var n int
	db.QueryRow(ctx, `SELECT count(*) FROM instruction_nonces WHERE workflow_id = 'payment/C100/k2'`).Scan(&n)
	if n != 0 {
		t.Fatal("the replay was recorded")
	}
}

// The invariant helper notices what the table constraints cannot: a
// payment whose audit log shows it posted twice, or posted and refunded.
func TestCheckPaymentInvariantsFindsDoublePosting(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	np := newPayment(9)
	if _, err := CreatePayment(ctx, db, np, "wf"); err != nil {
		t.Fatal(err)
	}
	MarkPaymentPaid(ctx, db, np.OrderID, Charge{QueryID: "Q9", PaidAt: payAt}, "wf")
	MarkPaymentPosted(ctx, db, np.OrderID, "ref-9", payAt, "wf")
	if _, err := AppendAudit(ctx, db, AuditRecord{Actor: "bug", Action: "payment.posted", Subject: np.WorkflowID, Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	v, err := CheckPaymentInvariants(ctx, db)
	if err != nil || len(v) == 0 || v[0].Open || !strings.Contains(v[0].Problem, "2 postings") {
		t.Fatalf("violations: %v %v", v, err)
	}
	// And the table itself refuses a row both posted and refunded.
	_, err = db.Exec(ctx, `UPDATE payments SET refund_attempt = 1, refund_order_id = 'GR12345678', refund_txn_time = now() WHERE order_id = $1`, np.OrderID)
	if err == nil {
		t.Fatal("a posted payment took a refund order")
	}
}

func TestReconRuns(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	r, err := StartReconRun(ctx, db, "2026-03-01", "reconcile/2026-03-01", "run1")
	if err != nil || r.Status != "running" || r.SettleDate != "2026-03-01" {
		t.Fatalf("start: %+v %v", r, err)
	}
	if again, err := StartReconRun(ctx, db, "2026-03-01", "reconcile/2026-03-01", "run1"); err != nil || again.ID != r.ID {
		t.Fatalf("start again: %+v %v", again, err)
	}
	np := newPayment(10)
	p, _ := CreatePayment(ctx, db, np, "wf")
	amt := int64(3345)
	fileAmt := int64(3000)
	issue := ReconIssue{RunID: r.ID, Kind: IssueAmountDiffers, OrderID: np.OrderID, PaymentID: &p.ID, GridPayAmount: &amt, FileAmount: &fileAmt, Detail: "first"}
	if _, err := RecordReconIssue(ctx, db, issue); err != nil {
		t.Fatal(err)
	}
	issue.Detail, issue.Action = "second", ReconReport
	if _, err := RecordReconIssue(ctx, db, issue); err != nil {
		t.Fatal(err)
	}
	if _, err := RecordReconIssue(ctx, db, ReconIssue{RunID: r.ID, Kind: IssueUnknownOrder, OrderID: "ZZ00000001", QueryID: "Q1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := RecordReconIssue(ctx, db, ReconIssue{RunID: r.ID, Kind: "made_up", OrderID: "X"}); err == nil {
		t.Fatal("an unknown issue kind was recorded")
	}
	issues, err := ReconIssues(ctx, db, r.ID)
	if err != nil || len(issues) != 2 || issues[0].Detail != "second" || *issues[0].FileAmount != 3000 || issues[1].PaymentID != nil {
		t.Fatalf("issues: %+v %v", issues, err)
	}
	done, err := FinishReconRun(ctx, db, r.ID, ReconCounts{Records: 5, Matched: 3, Issues: 2})
	if err != nil || done.Status != "done" || done.FinishedAt == nil || done.Issues != 2 {
		t.Fatalf("finish: %+v %v", done, err)
	}
}

func TestPaymentsSettledOn(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	for i, settle := range []string{"0301", "0301", "0302"} {
		np := newPayment(20 + i)
		CreatePayment(ctx, db, np, "wf")
		if _, err := MarkPaymentPaid(ctx, db, np.OrderID, Charge{QueryID: fmt.Sprint("Q", i), SettleDate: settle, PaidAt: payAt}, "wf"); err != nil {
			t.Fatal(err)
		}
	}
	// A year-old payment with the same MMDD is outside the window.
	old := newPayment(30)
	old.TxnTime = payAt.AddDate(-1, 0, 0)
	CreatePayment(ctx, db, old, "wf")
	MarkPaymentPaid(ctx, db, old.OrderID, Charge{QueryID: "QOLD", SettleDate: "0301", PaidAt: payAt.AddDate(-1, 0, 0)}, "wf")
	got, err := PaymentsSettledOn(ctx, db, "0301", payAt.Add(-72*time.Hour), payAt.Add(72*time.Hour))
	if err != nil || len(got) != 2 {
		t.Fatalf("settled on 0301: %d %v", len(got), err)
	}
}

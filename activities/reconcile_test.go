package activities

import (
	"testing"
	"time"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/unionpay"
)

func TestReconcileDay(t *testing.T) {
	f := newPayFixture(t)
	paidAt := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	add := func(p store.Payment) {
		if p.Status != store.PaymentAwaiting && p.Status != store.PaymentExpired {
			p.PaidAt = &paidAt
			if p.SettleDate == "" {
				p.SettleDate = "0301"
			}
		}
		if p.Status == store.PaymentRefunded {
			p.RefundedAt = &paidAt
		}
		p.ID = int64(len(f.rec.payments) + 1)
		p.WorkflowID = "payment/C1/" + p.OrderID
		f.rec.payments = append(f.rec.payments, &p)
	}
	add(store.Payment{OrderID: "GP1", Amount: 1000, QueryID: "Q1", Status: store.PaymentPosted, PostingRef: "gp:C1:k1"})
	add(store.Payment{OrderID: "GP2", Amount: 2000, QueryID: "Q2", Status: store.PaymentPosted, PostingRef: "gp:C1:k2"})
	add(store.Payment{OrderID: "GP3", Amount: 3000, Status: store.PaymentAwaiting})
	add(store.Payment{OrderID: "GP4", Amount: 4000, Status: store.PaymentExpired})
	add(store.Payment{OrderID: "GP5", Amount: 5000, QueryID: "Q5", Status: store.PaymentRefunding, RefundOrderID: "GR5"})
	add(store.Payment{OrderID: "GP6", Amount: 6000, QueryID: "Q6", Status: store.PaymentPosted, PostingRef: "gp:C1:k6"})
	add(store.Payment{OrderID: "GP7", Amount: 7000, Status: store.PaymentAwaiting})
	add(store.Payment{OrderID: "GP8", Amount: 8000, QueryID: "Q8", Status: store.PaymentRefunded, RefundOrderID: "GR8new",
		SettleDate: "0228", RefundSettleDate: "0228"})
	f.plat.postings["gp:C1:k1"] = platform.Payment{Reference: "gp:C1:k1", Amount: 1000, Status: platform.PaymentPosted}
	f.plat.postings["gp:C1:k6"] = platform.Payment{Reference: "gp:C1:k6", Amount: 6000, Status: platform.PaymentPosted}

	rec := func(txnType, orderID, queryID, orig string, amount money.Fen) unionpay.ReconRecord {
		return unionpay.ReconRecord{TxnType: txnType, OrderID: orderID, QueryID: queryID, OrigQueryID: orig, Amount: amount, SettleDate: "0301", RespCode: "00",
			TxnTime: paidAt}
	}
	f.gw.file = []unionpay.ReconRecord{
		rec("01", "GP1", "Q1", "", 1000),       // matched
		rec("01", "GP2", "Q2", "", 2000),       // posted at GridPay, unknown at the platform
		rec("01", "GP3", "Q3", "", 3000),       // the workflow still waits: signal
		rec("01", "GP4", "Q4", "", 4000),       // expired, yet charged: recover
		rec("01", "GP5", "Q5", "", 5000),       // charged and being refunded: matched
		rec("04", "GR5", "RQ5", "Q5", 5000),    // the refund went through: signal
		rec("01", "GPX", "QX", "", 999),        // unknown order
		rec("01", "GP7", "Q7", "", 7001),       // amount differs
		rec("04", "GR8old", "RQ8", "Q8", 8000), // a refund GridPay did not make (an earlier attempt)
		// GP6, posted at GridPay with settle date 0301, is missing: posted but not paid.
	}
	v, err := f.env.ExecuteActivity(f.a.ReconcileDay, ReconcileRequest{SettleDate: "2026-03-01"})
	if err != nil {
		t.Fatal(err)
	}
	var rep ReconReport
	v.Get(&rep)
	if f.gw.fileFor != "0301" {
		t.Fatalf("downloaded the file of %q", f.gw.fileFor)
	}
	if rep.RunID != 42 || rep.Records != 9 || rep.Matched != 2 || rep.Issues != 8 {
		t.Fatalf("report %+v", rep)
	}
	want := map[string]int{store.IssuePlatformMismatch: 1, store.IssuePaidNotPosted: 2, store.IssueRefundMissing: 2, store.IssueUnknownOrder: 1,
		store.IssueAmountDiffers: 1, store.IssuePostedNotPaid: 1}
	for k, n := range want {
		if rep.ByKind[k] != n {
			t.Errorf("%s: %d, want %d (%v)", k, rep.ByKind[k], n, rep.ByKind)
		}
	}
	issues := map[string]store.ReconIssue{}
	for _, i := range f.rec.issues {
		issues[i.OrderID] = i
	}
	if i := issues["GP6"]; i.Kind != store.IssuePostedNotPaid || i.Action != store.ReconReport {
		t.Errorf("GP6: %+v", i)
	}
	if i := issues["GR8old"]; i.Kind != store.IssueRefundMissing || i.PaymentID == nil || *i.PaymentID != 8 {
		t.Errorf("GR8old: %+v", i)
	}
	if i := issues["GP7"]; *i.FileAmount != 7001 || *i.GridPayAmount != 7000 {
		t.Errorf("GP7: %+v", i)
	}
	if len(rep.Fixes) != 3 {
		t.Fatalf("fixes %+v", rep.Fixes)
	}
	fixes := map[string]ReconFix{}
	for _, fx := range rep.Fixes {
		fixes[fx.IssueOrderID] = fx
	}
	if fx := fixes["GP3"]; fx.Action != store.ReconSignal || fx.PaymentWorkflowID != "payment/C1/GP3" || fx.Notification.Outcome != unionpay.Succeeded ||
		fx.Notification.Amount != 3000 || fx.Notification.QueryID != "Q3" || fx.Notification.TxnType != "01" {
		t.Errorf("GP3 fix %+v", fx)
	}
	if fx := fixes["GP4"]; fx.Action != store.ReconRecover || fx.OrderID != "GP4" {
		t.Errorf("GP4 fix %+v", fx)
	}
	if fx := fixes["GR5"]; fx.Action != store.ReconSignal || fx.OrderID != "GP5" || fx.Notification.OrderID != "GR5" || fx.Notification.TxnType != "04" {
		t.Errorf("GR5 fix %+v", fx)
	}

	// Finishing records what was done about each fix.
	if _, err := f.env.ExecuteActivity(f.a.FinishReconciliation, ReconFinish{RunID: 42, Counts: store.ReconCounts{Records: 9, Matched: 2, Issues: 8, FixesStarted: 3},
		Applied: []ReconApplied{{IssueKind: store.IssuePaidNotPosted, IssueOrderID: "GP3", Action: store.ReconRecover}}}); err != nil {
		t.Fatal(err)
	}
	if f.rec.actions[store.IssuePaidNotPosted+"/GP3"] != store.ReconRecover || f.rec.finished.FixesStarted != 3 {
		t.Fatalf("actions %v, finished %+v", f.rec.actions, f.rec.finished)
	}
}

func TestReconcileDayRefusesABadDate(t *testing.T) {
	f := newPayFixture(t)
	_, err := f.env.ExecuteActivity(f.a.ReconcileDay, ReconcileRequest{SettleDate: "03/01"})
	refusedAs(t, err, "Invalid", "YYYY-MM-DD")
}

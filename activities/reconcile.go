package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/unionpay"
)

// ReconcileRequest names the settle date to reconcile, YYYY-MM-DD in
// Shanghai.
type ReconcileRequest struct {
	SettleDate string `json:"settle_date"`
}

// ReconFix is a fix reconciliation found safe and asks the workflow to
// start.
type ReconFix struct {
	// Action is store.ReconSignal (tell the running payment workflow the
	// file's outcome; if it has closed, recover instead) or
	// store.ReconRecover (start a recovery workflow).
	Action    string `json:"action"`
	IssueKind string `json:"issue_kind"`
	// IssueOrderID is the order the issue is recorded under: the consume's,
	// or the refund's for a refund.
	IssueOrderID      string `json:"issue_order_id"`
	OrderID           string `json:"order_id"` // the consume's
	PaymentWorkflowID string `json:"payment_workflow_id"`
	// Notification is the file's record as a notification: the outcome
	// the payment workflow would have received.
	Notification unionpay.Notification `json:"notification"`
}

// ReconReport is what a day's matching found.
type ReconReport struct {
	RunID      int64          `json:"run_id"`
	SettleDate string         `json:"settle_date"`
	Records    int            `json:"records"`
	Matched    int            `json:"matched"`
	Issues     int            `json:"issues"`
	ByKind     map[string]int `json:"by_kind"`
	Fixes      []ReconFix     `json:"fixes"`
}

// ReconcileDay downloads UnionPay's reconciliation file of a settle date and
// matches every transaction in it against GridPay's payments and, for
// posted ones, the platform's posting; then every payment GridPay believes
// settled that day against the file. Mismatches are recorded in the run
// (store.RecordReconIssue); the safe fixes come back for the workflow to
// start. Running it again (a retry) records the same issues again in the
// same run.
func (a *Payments) ReconcileDay(ctx context.Context, req ReconcileRequest) (ReconReport, error) {
	day, err := time.ParseInLocation(time.DateOnly, req.SettleDate, platform.Shanghai)
	if err != nil {
		return ReconReport{}, nonRetryableErr("Invalid", fmt.Errorf("settle date %q is not YYYY-MM-DD", req.SettleDate))
	}
	info := activity.GetInfo(ctx)
	run, err := a.Records.StartReconRun(ctx, req.SettleDate, info.WorkflowExecution.ID, info.WorkflowExecution.RunID)
	if err != nil {
		return ReconReport{}, err
	}
	mmdd := day.Format("0102")
	// A missing file (not published yet) or a gateway that is down is
	// retried by the activity's policy.
	records, err := a.Gateway.DownloadFile(ctx, mmdd)
	if err != nil {
		return ReconReport{}, err
	}
	r := &reconciler{a: a, run: run, rep: ReconReport{RunID: run.ID, SettleDate: req.SettleDate, ByKind: map[string]int{}},
		charged: map[int64]bool{}, refunded: map[int64]bool{}}
	for i, rec := range records {
		if i%100 == 0 {
			activity.RecordHeartbeat(ctx, i)
		}
		r.rep.Records++
		var err error
		switch rec.TxnType {
		case unionpay.TxnConsume:
			err = r.consume(ctx, rec)
		case unionpay.TxnRefund, unionpay.TxnCancel:
			err = r.refund(ctx, rec)
		default:
			err = r.issue(ctx, store.ReconIssue{Kind: store.IssueUnknownOrder, OrderID: rec.OrderID, QueryID: rec.QueryID,
				FileAmount: fen(rec.Amount), Detail: "transaction type " + rec.TxnType + " in the file"}, nil)
		}
		if err != nil {
			return ReconReport{}, err
		}
	}
	// GridPay's side: what it believes settled that day must be in the
	// file. The settle date has no year; a few days around it pick the
	// right one.
	ours, err := a.Records.PaymentsSettledOn(ctx, mmdd, day.Add(-72*time.Hour), day.Add(48*time.Hour))
	if err != nil {
		return ReconReport{}, err
	}
	for _, p := range ours {
		if p.SettleDate == mmdd && p.QueryID != "" && !r.charged[p.ID] {
			if err := r.issue(ctx, store.ReconIssue{Kind: store.IssuePostedNotPaid, OrderID: p.OrderID, QueryID: p.QueryID, PaymentID: &p.ID,
				GridPayAmount: &p.Amount, Detail: fmt.Sprintf("GridPay has it %s, charged on settle date %s; the file does not", p.Status, mmdd)}, nil); err != nil {
				return ReconReport{}, err
			}
		}
		if p.RefundSettleDate == mmdd && !r.refunded[p.ID] {
			if err := r.issue(ctx, store.ReconIssue{Kind: store.IssueRefundMissing, OrderID: p.RefundOrderID, QueryID: p.RefundQueryID, PaymentID: &p.ID,
				GridPayAmount: &p.Amount, Detail: fmt.Sprintf("GridPay has refund %s settled on %s; the file does not", p.RefundOrderID, mmdd)}, nil); err != nil {
				return ReconReport{}, err
			}
		}
	}
	return r.rep, nil
}

func fen(f money.Fen) *int64 {
	v := int64(f)
	return &v
}

func nonRetryableErr(errType string, err error) error {
	return nonRetryable(errType, "%v", err)
}

type reconciler struct {
	a   *Payments
	run store.ReconRun
	rep ReconReport
	// Payments whose charge, or refund, the file has.
	charged, refunded map[int64]bool
}

// issue records a mismatch, and the fix to start if there is one.
func (r *reconciler) issue(ctx context.Context, i store.ReconIssue, fix *ReconFix) error {
	i.RunID = r.run.ID
	i.Action = store.ReconReport
	if fix != nil {
		i.Action = fix.Action
		fix.IssueKind, fix.IssueOrderID = i.Kind, i.OrderID
		r.rep.Fixes = append(r.rep.Fixes, *fix)
	}
	if _, err := r.a.Records.RecordReconIssue(ctx, i); err != nil {
		return err
	}
	r.rep.Issues++
	r.rep.ByKind[i.Kind]++
	return nil
}

func notificationOf(rec unionpay.ReconRecord) unionpay.Notification {
	return unionpay.Notification{
		TxnType: rec.TxnType, OrderID: rec.OrderID, TxnTime: rec.TxnTime, QueryID: rec.QueryID, OrigQueryID: rec.OrigQueryID,
		RespCode: unionpay.RespSuccess, RespMsg: "reconciliation file", Amount: rec.Amount, SettleDate: rec.SettleDate,
		Outcome: unionpay.Succeeded,
	}
}

// consume matches a charge of the file.
func (r *reconciler) consume(ctx context.Context, rec unionpay.ReconRecord) error {
	p, err := r.a.Records.PaymentByOrderID(ctx, rec.OrderID)
	if errors.Is(err, store.ErrNotFound) || err == nil && p.OrderID != rec.OrderID {
		return r.issue(ctx, store.ReconIssue{Kind: store.IssueUnknownOrder, OrderID: rec.OrderID, QueryID: rec.QueryID, FileAmount: fen(rec.Amount),
			Detail: "UnionPay charged an order GridPay never made"}, nil)
	}
	if err != nil {
		return err
	}
	r.charged[p.ID] = true
	base := store.ReconIssue{OrderID: p.OrderID, QueryID: rec.QueryID, PaymentID: &p.ID, FileAmount: fen(rec.Amount), GridPayAmount: &p.Amount}
	if int64(rec.Amount) != p.Amount {
		base.Kind, base.Detail = store.IssueAmountDiffers, fmt.Sprintf("the file charged %s, the order is for %s", rec.Amount.Display(), money.Fen(p.Amount).Display())
		return r.issue(ctx, base, nil)
	}
	fix := &ReconFix{OrderID: p.OrderID, PaymentWorkflowID: p.WorkflowID, Notification: notificationOf(rec)}
	switch p.Status {
	case store.PaymentPosted:
		pf, err := r.a.Platform.Payment(ctx, p.PostingRef)
		base.Kind = store.IssuePlatformMismatch
		switch {
		case errors.Is(err, platform.ErrNotFound):
			base.Detail = "posted at GridPay as " + p.PostingRef + ", unknown at the platform"
			return r.issue(ctx, base, nil)
		case err != nil:
			return err
		case pf.Status != platform.PaymentPosted:
			base.Detail, base.PlatformAmount = "the platform's posting "+p.PostingRef+" is "+string(pf.Status), fen(pf.Amount)
			return r.issue(ctx, base, nil)
		case int64(pf.Amount) != p.Amount:
			base.Detail, base.PlatformAmount = "the platform posted "+pf.Amount.Display(), fen(pf.Amount)
			return r.issue(ctx, base, nil)
		}
		r.rep.Matched++
		return nil
	case store.PaymentRefunded, store.PaymentRefunding:
		// Charged and given back (or being given back): the refund's own
		// record is matched on its own.
		r.rep.Matched++
		return nil
	case store.PaymentPaid, store.PaymentAwaiting:
		// The payment workflow is still at it: tell it the outcome (a paid
		// one takes it as a duplicate). If it has closed, recover.
		base.Kind, base.Detail = store.IssuePaidNotPosted, fmt.Sprintf("charged, GridPay has it %s", p.Status)
		fix.Action = store.ReconSignal
		return r.issue(ctx, base, fix)
	case store.PaymentExpired:
		base.Kind, base.Detail = store.IssuePaidNotPosted, "charged, but GridPay closed the order as expired"
		fix.Action = store.ReconRecover
		return r.issue(ctx, base, fix)
	}
	base.Kind, base.Detail = store.IssuePaidNotPosted, "charged, GridPay has it "+string(p.Status)
	return r.issue(ctx, base, nil)
}

// refund matches a refund (or cancel) of the file.
func (r *reconciler) refund(ctx context.Context, rec unionpay.ReconRecord) error {
	p, err := r.a.Records.PaymentByOrderID(ctx, rec.OrderID)
	if errors.Is(err, store.ErrNotFound) || err == nil && p.RefundOrderID != rec.OrderID {
		// Not the refund GridPay is waiting for: an earlier attempt it
		// believes failed, or a refund made by hand at the gateway.
		kind, detail := store.IssueUnknownOrder, "UnionPay refunded under an order GridPay never made"
		issue := store.ReconIssue{OrderID: rec.OrderID, QueryID: rec.QueryID, FileAmount: fen(rec.Amount)}
		if orig, oerr := r.a.Records.PaymentByQueryID(ctx, rec.OrigQueryID); oerr == nil {
			kind, detail = store.IssueRefundMissing, fmt.Sprintf("refund %s of order %s is not the refund GridPay made (%q, %s)", rec.OrderID, orig.OrderID, orig.RefundOrderID, orig.Status)
			issue.PaymentID, issue.GridPayAmount = &orig.ID, &orig.Amount
		} else if !errors.Is(oerr, store.ErrNotFound) {
			return oerr
		}
		issue.Kind, issue.Detail = kind, detail
		return r.issue(ctx, issue, nil)
	}
	if err != nil {
		return err
	}
	r.refunded[p.ID] = true
	base := store.ReconIssue{OrderID: rec.OrderID, QueryID: rec.QueryID, PaymentID: &p.ID, FileAmount: fen(rec.Amount), GridPayAmount: &p.Amount}
	if int64(rec.Amount) != p.Amount {
		base.Kind, base.Detail = store.IssueAmountDiffers, fmt.Sprintf("the file refunded %s of %s", rec.Amount.Display(), money.Fen(p.Amount).Display())
		return r.issue(ctx, base, nil)
	}
	switch p.Status {
	case store.PaymentRefunded:
		r.rep.Matched++
		return nil
	case store.PaymentRefunding:
		base.Kind, base.Detail = store.IssueRefundMissing, "refunded at UnionPay, GridPay still waits for the outcome"
		return r.issue(ctx, base, &ReconFix{Action: store.ReconSignal, OrderID: p.OrderID, PaymentWorkflowID: p.WorkflowID, Notification: notificationOf(rec)})
	}
	base.Kind, base.Detail = store.IssueRefundMissing, "refunded at UnionPay, but GridPay has the payment "+string(p.Status)
	return r.issue(ctx, base, nil)
}

// ReconApplied is what the workflow did about a fix.
type ReconApplied struct {
	IssueKind    string `json:"issue_kind"`
	IssueOrderID string `json:"issue_order_id"`
	Action       string `json:"action"` // store.ReconSignal or store.ReconRecover
}

// ReconFinish closes a run.
type ReconFinish struct {
	RunID   int64             `json:"run_id"`
	Counts  store.ReconCounts `json:"counts"`
	Applied []ReconApplied    `json:"applied"`
}

// FinishReconciliation records what was done about each fix and the run's
// totals.
func (a *Payments) FinishReconciliation(ctx context.Context, f ReconFinish) (store.ReconRun, error) {
	for _, ap := range f.Applied {
		if err := a.Records.SetReconIssueAction(ctx, f.RunID, ap.IssueKind, ap.IssueOrderID, ap.Action); err != nil {
			return store.ReconRun{}, err
		}
	}
	return a.Records.FinishReconRun(ctx, f.RunID, f.Counts)
}

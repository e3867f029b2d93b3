package workflows

import (
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/store"
)

// ReconcileScheduleID is the Temporal schedule that runs Reconcile daily
// (the worker keeps it, like CRLScheduleID). UnionPay publishes a settle
// date's file the next morning, so run it in the morning, Shanghai time,
// with ReconcileInput{} (yesterday) and overlap policy skip.
const ReconcileScheduleID = "payment-reconcile"

// ReconcileID is the workflow ID of a reconciliation run by hand for a
// settle date.
func ReconcileID(settleDate string) string { return "reconcile/" + settleDate }

// ReconcileInput names the settle date, YYYY-MM-DD in Shanghai; empty means
// the day before the run (in Shanghai).
type ReconcileInput struct {
	SettleDate string `json:"settle_date,omitempty"`
	// Timing is handed to the recoveries it starts.
	Timing PaymentTiming `json:"timing,omitempty"`
}

// ReconcileResult counts what a run found and did.
type ReconcileResult struct {
	RunID      int64  `json:"run_id"` // recon_runs.id
	SettleDate string `json:"settle_date"`
	// Records is the number of transactions in UnionPay's file; Matched
	// those that agree with GridPay (and the platform).
	Records int `json:"records"`
	Matched int `json:"matched"`
	// Issues is the number of mismatches recorded, ByKind by
	// store.Issue… kind.
	Issues int            `json:"issues"`
	ByKind map[string]int `json:"by_kind"`
	// Signalled payment workflows were told the file's outcome;
	// RecoveriesStarted recoveries post (or refund) charges whose workflow
	// had closed.
	Signalled         int `json:"signalled"`
	RecoveriesStarted int `json:"recoveries_started"`
}

// Reconcile is the daily reconciliation: the activity downloads UnionPay's
// file for the settle date and matches every transaction against GridPay's
// payments and the platform's postings, recording the mismatches; then the
// fixes that are safe are started here: a payment workflow still running
// is signalled the file's outcome (SignalNotification), and a charge whose
// workflow has closed (say, expired) gets a recovery workflow
// (RecoverPayment, ID RecoveryID, left running when this one ends) that
// posts it, or refunds it if the platform refuses. Everything else is
// reported for people. A file not published yet is retried for up to 12
// hours.
func Reconcile(ctx workflow.Context, in ReconcileInput) (ReconcileResult, error) {
	date := in.SettleDate
	if date == "" {
		date = workflow.Now(ctx).In(platform.Shanghai).AddDate(0, 0, -1).Format(time.DateOnly)
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, AttrKind.ValueSet("reconciliation"), AttrStatus.ValueSet("matching")); err != nil {
		return ReconcileResult{}, err
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Minute, HeartbeatTimeout: 2 * time.Minute, ScheduleToCloseTimeout: 12 * time.Hour,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Minute, BackoffCoefficient: 2, MaximumInterval: 30 * time.Minute,
			NonRetryableErrorTypes: []string{"Invalid"}},
	})
	var rep activities.ReconReport
	if err := workflow.ExecuteActivity(actx, payments.ReconcileDay, activities.ReconcileRequest{SettleDate: date}).Get(ctx, &rep); err != nil {
		setStatus(ctx, "failed")
		return ReconcileResult{SettleDate: date}, err
	}
	res := ReconcileResult{RunID: rep.RunID, SettleDate: date, Records: rep.Records, Matched: rep.Matched, Issues: rep.Issues, ByKind: rep.ByKind}

	setStatus(ctx, "fixing")
	log := workflow.GetLogger(ctx)
	var applied []activities.ReconApplied
	for _, fix := range rep.Fixes {
		if fix.Action == store.ReconSignal {
			err := workflow.SignalExternalWorkflow(ctx, fix.PaymentWorkflowID, "", SignalNotification, fix.Notification).Get(ctx, nil)
			if err == nil {
				res.Signalled++
				applied = append(applied, activities.ReconApplied{IssueKind: fix.IssueKind, IssueOrderID: fix.IssueOrderID, Action: store.ReconSignal})
				continue
			}
			// The workflow has closed (or never ran here): recover.
			log.Info("payment workflow not running; recovering instead", "workflow_id", fix.PaymentWorkflowID, "error", err)
		}
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:            RecoveryID(fix.OrderID),
			ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		})
		charge := fix.Notification
		child := workflow.ExecuteChildWorkflow(cctx, RecoverPayment, RecoverInput{OrderID: fix.OrderID, Charge: &charge, Timing: in.Timing})
		var exec workflow.Execution
		if err := child.GetChildWorkflowExecution().Get(ctx, &exec); err != nil && !temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			log.Error("recovery not started; the issue stays reported", "order_id", fix.OrderID, "error", err)
			continue
		}
		res.RecoveriesStarted++
		applied = append(applied, activities.ReconApplied{IssueKind: fix.IssueKind, IssueOrderID: fix.IssueOrderID, Action: store.ReconRecover})
	}

	fctx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute, RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	})
	err := workflow.ExecuteActivity(fctx, payments.FinishReconciliation, activities.ReconFinish{
		RunID: rep.RunID, Applied: applied,
		Counts: store.ReconCounts{Records: res.Records, Matched: res.Matched, Issues: res.Issues, FixesStarted: res.Signalled + res.RecoveriesStarted},
	}).Get(ctx, nil)
	if err != nil {
		return res, err
	}
	setStatus(ctx, "done")
	return res, nil
}

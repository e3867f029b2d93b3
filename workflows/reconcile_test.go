package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/unionpay"
)

func TestReconcile(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Payments{})
	env.RegisterWorkflow(RecoverPayment)
	// 2026-03-01 01:00 in Shanghai is still 2026-02-28 in UTC: the settle
	// date is yesterday in Shanghai.
	env.SetStartTime(time.Date(2026, 2, 28, 17, 0, 0, 0, time.UTC))

	paid := unionpay.Notification{TxnType: "01", OrderID: "GPwaiting000000001", QueryID: "Q1", RespCode: "00", Amount: 3000, Outcome: unionpay.Succeeded}
	closed := unionpay.Notification{TxnType: "01", OrderID: "GPclosed0000000002", QueryID: "Q2", RespCode: "00", Amount: 4000, Outcome: unionpay.Succeeded}
	expired := unionpay.Notification{TxnType: "01", OrderID: "GPexpired000000003", QueryID: "Q3", RespCode: "00", Amount: 5000, Outcome: unionpay.Succeeded}
	var asked string
	env.OnActivity(payments.ReconcileDay, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.ReconcileRequest) (activities.ReconReport, error) {
		asked = req.SettleDate
		return activities.ReconReport{RunID: 7, SettleDate: req.SettleDate, Records: 10, Matched: 6, Issues: 4,
			ByKind: map[string]int{store.IssuePaidNotPosted: 3, store.IssueUnknownOrder: 1},
			Fixes: []activities.ReconFix{
				{Action: store.ReconSignal, IssueKind: store.IssuePaidNotPosted, IssueOrderID: paid.OrderID, OrderID: paid.OrderID, PaymentWorkflowID: "payment/C1/k1", Notification: paid},
				{Action: store.ReconSignal, IssueKind: store.IssuePaidNotPosted, IssueOrderID: closed.OrderID, OrderID: closed.OrderID, PaymentWorkflowID: "payment/C2/k2", Notification: closed},
				{Action: store.ReconRecover, IssueKind: store.IssuePaidNotPosted, IssueOrderID: expired.OrderID, OrderID: expired.OrderID, PaymentWorkflowID: "payment/C3/k3", Notification: expired},
			}}, nil
	})
	var signalled []string
	env.OnSignalExternalWorkflow(mock.Anything, "payment/C1/k1", "", SignalNotification, paid).Return(func(_, id, _, _ string, _ any) error {
		signalled = append(signalled, id)
		return nil
	})
	env.OnSignalExternalWorkflow(mock.Anything, "payment/C2/k2", "", SignalNotification, closed).Return(errors.New("workflow execution already completed"))
	var recovered []RecoverInput
	env.OnWorkflow(RecoverPayment, mock.Anything, mock.Anything).Return(func(ctx workflow.Context, in RecoverInput) (PaymentState, error) {
		if id := workflow.GetInfo(ctx).WorkflowExecution.ID; id != RecoveryID(in.OrderID) {
			t.Errorf("recovery %s runs as %s", in.OrderID, id)
		}
		recovered = append(recovered, in)
		return PaymentState{Status: "posted"}, nil
	})
	var finish activities.ReconFinish
	env.OnActivity(payments.FinishReconciliation, mock.Anything, mock.Anything).Return(func(_ context.Context, f activities.ReconFinish) (store.ReconRun, error) {
		finish = f
		return store.ReconRun{ID: f.RunID, Status: "done"}, nil
	})

	env.ExecuteWorkflow(Reconcile, ReconcileInput{})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res ReconcileResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if asked != "2026-02-28" || res.SettleDate != "2026-02-28" {
		t.Fatalf("settle date %q / %q", asked, res.SettleDate)
	}
	if res.Records != 10 || res.Matched != 6 || res.Issues != 4 || res.Signalled != 1 || res.RecoveriesStarted != 2 || res.ByKind[store.IssuePaidNotPosted] != 3 {
		t.Fatalf("result %+v", res)
	}
	if len(signalled) != 1 || len(recovered) != 2 || recovered[0].OrderID != closed.OrderID || recovered[1].Charge.QueryID != "Q3" {
		t.Fatalf("signalled %v, recovered %+v", signalled, recovered)
	}
	want := []activities.ReconApplied{
		{IssueKind: store.IssuePaidNotPosted, IssueOrderID: paid.OrderID, Action: store.ReconSignal},
		{IssueKind: store.IssuePaidNotPosted, IssueOrderID: closed.OrderID, Action: store.ReconRecover},
		{IssueKind: store.IssuePaidNotPosted, IssueOrderID: expired.OrderID, Action: store.ReconRecover},
	}
	if finish.RunID != 7 || finish.Counts.FixesStarted != 3 || len(finish.Applied) != 3 {
		t.Fatalf("finish %+v", finish)
	}
	for i := range want {
		if finish.Applied[i] != want[i] {
			t.Fatalf("applied %+v, want %+v", finish.Applied, want)
		}
	}
}

// An explicit settle date is reconciled as given; a download that keeps
// failing (the file not published yet) is retried, then succeeds.
func TestReconcileRetriesTheDownload(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Payments{})
	calls := 0
	env.OnActivity(payments.ReconcileDay, mock.Anything, activities.ReconcileRequest{SettleDate: "2026-01-31"}).Return(
		func(context.Context, activities.ReconcileRequest) (activities.ReconReport, error) {
			calls++
			if calls < 4 {
				return activities.ReconReport{}, errors.New("unionpay: no reconciliation file")
			}
			return activities.ReconReport{RunID: 1, Records: 2, Matched: 2, ByKind: map[string]int{}}, nil
		})
	env.OnActivity(payments.FinishReconciliation, mock.Anything, mock.Anything).Return(store.ReconRun{}, nil)
	env.ExecuteWorkflow(Reconcile, ReconcileInput{SettleDate: "2026-01-31"})
	var res ReconcileResult
	if err := env.GetWorkflowResult(&res); err != nil || calls != 4 || res.Matched != 2 || res.Issues != 0 {
		t.Fatalf("result %+v %v after %d calls", res, err, calls)
	}
}

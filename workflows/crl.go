package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/authority"
)

var ca *activities.CA

// PublishCRLsResult is what a run published.
type PublishCRLsResult struct {
	CRLs []authority.CRLInfo `json:"crls"`
}

// PublishCRLs republishes every CA's CRL. A Temporal schedule runs it well
// within the CRL validity, so that verifiers, which fail closed on a stale
// CRL, never refuse good certificates. The HSM or the database being down
// is retried with backoff for up to a day; a run that still fails shows up
// in the Web UI and the next scheduled run tries again.
func PublishCRLs(ctx workflow.Context) (PublishCRLsResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: 24 * time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    5 * time.Minute,
		},
	})
	var res PublishCRLsResult
	err := workflow.ExecuteActivity(ctx, ca.PublishCRLs).Get(ctx, &res.CRLs)
	return res, err
}

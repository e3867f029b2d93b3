package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gridpay/gridpay/activities"
)

// AuditAnchorScheduleID is the Temporal schedule that anchors the audit
// log every audit.anchor_interval.
const AuditAnchorScheduleID = "audit-anchor"

var auditAnchors *activities.AuditAnchors

// AnchorAudit signs a checkpoint of the audit log's head with the "audit"
// key in the HSM and writes it to the anchor directory (see package
// activities, "Anchors of the audit log"). Its result is the signed
// anchor, so that Temporal's history, a system apart from PostgreSQL,
// keeps a copy too. The HSM or the database being down is retried; a
// conflict with an existing anchor, or a head that does not match its
// entry, fails the run at once (it shows in the Web UI) and the next
// scheduled run tries again.
func AnchorAudit(ctx workflow.Context) (activities.AnchorResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    time.Minute,
		ScheduleToCloseTimeout: time.Hour,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        5 * time.Minute,
			NonRetryableErrorTypes: []string{activities.ErrTypeAnchorConflict, activities.ErrTypeAuditTampered},
		},
	})
	var res activities.AnchorResult
	err := workflow.ExecuteActivity(ctx, auditAnchors.AnchorAudit).Get(ctx, &res)
	return res, err
}

package workflows

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/gridpay/gridpay/activities"
)

func TestAnchorAudit(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.AuditAnchors{})
	calls := 0
	env.OnActivity(auditAnchors.AnchorAudit, mock.Anything).Return(func(context.Context) (activities.AnchorResult, error) {
		calls++
		if calls < 3 {
			return activities.AnchorResult{}, errors.New("database restarting")
		}
		return activities.AnchorResult{Seq: 42, Hash: "ab", File: "/anchors/audit-anchor-00000000000000000042.json",
			Anchor: activities.Anchor{Checkpoint: []byte(`{"version":1}`), Signature: []byte{1}}}, nil
	})
	env.ExecuteWorkflow(AnchorAudit)
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow: %v", env.GetWorkflowError())
	}
	var res activities.AnchorResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if calls != 3 || res.Seq != 42 || string(res.Anchor.Checkpoint) != `{"version":1}` {
		t.Fatalf("%d calls, result %+v", calls, res)
	}
}

// A conflicting anchor fails the run at once: retrying cannot fix it.
func TestAnchorAuditConflictIsNotRetried(t *testing.T) {
	for _, typ := range []string{activities.ErrTypeAnchorConflict, activities.ErrTypeAuditTampered} {
		t.Run(typ, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			env.RegisterActivity(&activities.AuditAnchors{})
			calls := 0
			env.OnActivity(auditAnchors.AnchorAudit, mock.Anything).Return(func(context.Context) (activities.AnchorResult, error) {
				calls++
				// Raised retryable, as a bug might: the workflow's policy still stops.
				return activities.AnchorResult{}, temporal.NewApplicationError("seq 7 disagrees", typ)
			})
			env.ExecuteWorkflow(AnchorAudit)
			var app *temporal.ApplicationError
			if err := env.GetWorkflowError(); !errors.As(err, &app) || app.Type() != typ {
				t.Fatalf("workflow error: %v", err)
			}
			if calls != 1 {
				t.Fatalf("%d attempts, want 1", calls)
			}
		})
	}
}

package workflows

import (
	"context"
	"errors"
	"testing"

	"go.temporal.io/sdk/testsuite"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/authority"
)

// fakePublisher fails a number of times, then publishes.
type fakePublisher struct {
	failures int
	calls    int
	actors   []string
}

func (f *fakePublisher) PublishCRLs(_ context.Context, actor string) ([]authority.CRLInfo, error) {
	f.calls++
	f.actors = append(f.actors, actor)
	if f.calls <= f.failures {
		return nil, errors.New("HSM busy")
	}
	return []authority.CRLInfo{{CA: "root", Number: int64(f.calls)}, {CA: "customer", Number: int64(f.calls)}, {CA: "services", Number: int64(f.calls)}}, nil
}

func TestPublishCRLs(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	pub := &fakePublisher{}
	env.RegisterActivity(&activities.CA{Publisher: pub})
	env.ExecuteWorkflow(PublishCRLs)
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow: %v", env.GetWorkflowError())
	}
	var res PublishCRLsResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if len(res.CRLs) != 3 || res.CRLs[1].CA != "customer" {
		t.Fatalf("result: %+v", res)
	}
	if pub.calls != 1 || pub.actors[0] != "workflow:default-test-workflow-id" {
		t.Fatalf("calls %d, actors %v", pub.calls, pub.actors)
	}
}

// The HSM or the database being down is retried until it comes back.
func TestPublishCRLsRetriesUntilTheHSMAnswers(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	pub := &fakePublisher{failures: 5}
	env.RegisterActivity(&activities.CA{Publisher: pub})
	env.ExecuteWorkflow(PublishCRLs)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow gave up: %v", err)
	}
	if pub.calls != 6 {
		t.Fatalf("want 6 attempts, got %d", pub.calls)
	}
}

package workflows

import (
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/worker"
)

// Every workflow replays its recorded histories (testdata/*.json, written by
// the integration tests with GRIDPAY_RECORD_HISTORY=1: worker/ for
// publish_crls, e2e/ for bind and unbind, workflows/ for the loads): a change to a
// workflow's code that would break runs in flight fails here.
func TestReplayRecordedHistories(t *testing.T) {
	files := map[string]any{
		"publish_crls.json":  PublishCRLs,
		"anchor_audit.json":  AnchorAudit,
		"bind.json":          Bind,
		"unbind.json":        Unbind,
		"load.json":          Load,
		"load_refund.json":   Load,
		"load_contact.json":  Load,
		"load_operator.json": Load,
	}
	for file, wf := range files {
		t.Run(file, func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(wf)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, filepath.Join("testdata", file)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

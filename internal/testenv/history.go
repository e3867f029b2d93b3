package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"
)

// RecordHistoryEnv, when set, makes integration tests write the histories of
// the workflows they ran into the workflows package's testdata, for the
// replay tests: GRIDPAY_RECORD_HISTORY=1 go test -tags integration ./...
const RecordHistoryEnv = "GRIDPAY_RECORD_HISTORY"

// RecordHistory writes the full history of a closed workflow run as JSON
// (the format of `temporal workflow show --output json`) to
// <repo>/workflows/testdata/<name>.json when RecordHistoryEnv is set.
func RecordHistory(ctx context.Context, c client.Client, workflowID, runID, name string) error {
	if os.Getenv(RecordHistoryEnv) == "" {
		return nil
	}
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	var h historypb.History
	it := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return fmt.Errorf("reading history of %s: %w", workflowID, err)
		}
		h.Events = append(h.Events, ev)
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(&h)
	if err != nil {
		return err
	}
	dir := filepath.Join(root, "workflows", "testdata")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".json"), append(b, '\n'), 0o644)
}

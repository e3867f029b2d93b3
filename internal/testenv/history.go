package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/proxy"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
)

// RecordHistoryEnv, when set, makes integration tests write the histories of
// the workflows they ran into the workflows package's testdata, for the
// replay tests: GRIDPAY_RECORD_HISTORY=1 go test -tags integration ./...
const RecordHistoryEnv = "GRIDPAY_RECORD_HISTORY"

// RecordHistory writes the full history of a closed workflow run as JSON
// (the format of `temporal workflow show --output json`) to
// <repo>/workflows/testdata/<name>.json when RecordHistoryEnv is set.
//
// The replay tests read histories with the default data converter, and no
// test can rely on the HSM key of the run that recorded them: encrypted
// payloads are decrypted before writing, which needs c to be a client from
// Temporal.Client after UseCodec; a history still holding encrypted
// payloads is an error.
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
	if err := decryptHistory(ctx, c, &h); err != nil {
		return fmt.Errorf("recording the history of %s: %w", workflowID, err)
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

// encodingEncrypted is codec.EncodingEncrypted (testenv is imported by the
// codec's own tests, so it does not import the codec).
const encodingEncrypted = "binary/encrypted"

// decryptHistory replaces every encrypted payload of h by its plaintext.
func decryptHistory(ctx context.Context, c client.Client, h *historypb.History) error {
	var pc converter.PayloadCodec
	if v, ok := clientCodecs.Load(c); ok {
		pc = v.(converter.PayloadCodec)
	}
	return proxy.VisitPayloads(ctx, h, proxy.VisitPayloadsOptions{
		SkipSearchAttributes: true,
		Visitor: func(_ *proxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			if pc == nil {
				for _, p := range ps {
					if string(p.GetMetadata()[converter.MetadataEncoding]) == encodingEncrypted {
						return nil, errors.New("the history holds encrypted payloads, and the client has no codec (testenv.Temporal.UseCodec)")
					}
				}
				return ps, nil
			}
			return pc.Decode(ps)
		},
	})
}

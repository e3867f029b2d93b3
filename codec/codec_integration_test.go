//go:build integration

package codec

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/proxy"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// openTestToken is a fresh SoftHSM2 token, logged in.
func openTestToken(t testing.TB, label string) *hsm.Token {
	t.Helper()
	soft := testenv.SoftHSMForTest(t)
	tt := soft.NewTestToken(t, label)
	tok, err := hsm.OpenToken(soft.ModulePath(), tt.Selector(), []byte(tt.UserPIN), hsm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	return tok
}

func TestHSMKeys(t *testing.T) {
	ctx := context.Background()
	tok := openTestToken(t, "codec-keys")

	_, err := LoadHSM(ctx, tok, "gridpay-payload-key", nil)
	if !errors.Is(err, hsm.ErrKeyNotFound) || !strings.Contains(err.Error(), "adminctl ca init") {
		t.Fatalf("no key: want ErrKeyNotFound saying to run adminctl ca init, got %v", err)
	}

	id, created, err := EnsureHSMKey(ctx, tok, "gridpay-payload-key")
	if err != nil || !created || !strings.HasPrefix(id, "gridpay-payload-key/") {
		t.Fatalf("first EnsureHSMKey: %q %v %v", id, created, err)
	}
	again, created, err := EnsureHSMKey(ctx, tok, "gridpay-payload-key")
	if err != nil || created || again != id {
		t.Fatalf("second EnsureHSMKey must reuse %s: %q %v %v", id, again, created, err)
	}
	attrs, err := tok.KeyAttributes(ctx, hsm.KeyRef{Label: "gridpay-payload-key"})
	if err != nil {
		t.Fatal(err)
	}
	if !attrs.Sensitive || attrs.Extractable || !attrs.NeverExtractable || !attrs.AlwaysSensitive || !attrs.Token || !attrs.Private {
		t.Fatalf("payload key attributes %+v: want a private token key, sensitive and never extractable", attrs)
	}

	_, err = LoadHSM(ctx, tok, "gridpay-payload-key", []string{"gridpay-payload-key-2019"})
	if !errors.Is(err, hsm.ErrKeyNotFound) || !strings.Contains(err.Error(), "old_key_labels") {
		t.Fatalf("missing old key: %v", err)
	}

	// Rotation on the real HSM: a second key becomes current, the first
	// one still opens what it sealed.
	first, err := LoadHSM(ctx, tok, "gridpay-payload-key", nil)
	if err != nil || first.KeyID() != id {
		t.Fatalf("LoadHSM: %v (%s, want %s)", err, first.KeyID(), id)
	}
	sealed, err := first.Encode(toPayloads(t, alice))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsureHSMKey(ctx, tok, "gridpay-payload-key-2"); err != nil {
		t.Fatal(err)
	}
	rotated, err := LoadHSM(ctx, tok, "gridpay-payload-key-2", []string{"gridpay-payload-key"})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := rotated.Decode(sealed)
	if err != nil || !proto.Equal(dec[0], toPayloads(t, alice)[0]) {
		t.Fatalf("old key after rotation: %v", err)
	}
	sealed2, _ := rotated.Encode(toPayloads(t, alice))
	if _, err := first.Decode(sealed2); !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), rotated.KeyID()) {
		t.Fatalf("the new key's payload with only the old key: %v", err)
	}

	// The token's GCM reports a bad tag as ErrDecrypt, which the codec
	// turns into ErrTampered.
	bad := proto.Clone(sealed[0]).(*commonpb.Payload)
	bad.Data[len(bad.Data)/2] ^= 0x04
	if _, err := first.Decode([]*commonpb.Payload{bad}); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), id) {
		t.Fatalf("tampered on the HSM: %v", err)
	}
}

// An order as GridPay's workflows carry them: personal data throughout.
type order struct {
	CustomerID string
	Name       string
	BillID     string
	AmountFen  int64
}

type receipt struct {
	Order   order
	Note    string
	Refusal string
}

const (
	secretCustomer = "C99000123"
	secretName     = "Hangzhou Aluminium Rolling Mill"
	secretBill     = "B20261031000077"
	secretNote     = "confirmed by the operator of C99000123"
)

func lookUp(_ context.Context, o order) (order, error) {
	o.Name = secretName
	return o, nil
}

// refuse fails with a message and details naming the customer, as a
// platform refusal would.
func refuse(_ context.Context, o order) error {
	return temporal.NewNonRetryableApplicationError("bill "+o.BillID+" of customer "+o.CustomerID+" is settled", "BillSettled", nil, o)
}

// orderWorkflow runs two activities (one fails), waits for a signal and
// answers a query: payloads of every kind.
func orderWorkflow(ctx workflow.Context, o order) (receipt, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 1}})
	var r receipt
	if err := workflow.SetQueryHandler(ctx, "order", func() (receipt, error) { return r, nil }); err != nil {
		return r, err
	}
	if err := workflow.ExecuteActivity(ctx, lookUp, o).Get(ctx, &r.Order); err != nil {
		return r, err
	}
	if err := workflow.ExecuteActivity(ctx, refuse, o).Get(ctx, nil); err != nil {
		r.Refusal = err.Error()
	}
	workflow.GetSignalChannel(ctx, "note").Receive(ctx, &r.Note)
	return r, nil
}

// A workflow run through a client and a worker with the codec leaves
// nothing readable in Temporal: every payload of the raw history is
// encrypted and no byte of it shows the customer; the codec client reads
// everything, a client without it reads nothing, and the history replays
// with the key.
func TestTemporalHoldsCiphertextOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tok := openTestToken(t, "codec-temporal")
	if _, _, err := EnsureHSMKey(ctx, tok, "gridpay-payload-key"); err != nil {
		t.Fatal(err)
	}
	c, err := LoadHSM(ctx, tok, "gridpay-payload-key", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := testenv.StartTemporal(ctx, testenv.TemporalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	plain := srv.Client()
	if err := srv.UseCodec(c); err != nil {
		t.Fatal(err)
	}
	coded := srv.Client()

	w := worker.New(coded, "codec-test", worker.Options{})
	w.RegisterWorkflow(orderWorkflow)
	w.RegisterActivity(lookUp)
	w.RegisterActivity(refuse)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	in := order{CustomerID: secretCustomer, BillID: secretBill, AmountFen: 1234500}
	run, err := coded.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "codec-test-1", TaskQueue: "codec-test"}, orderWorkflow, in)
	if err != nil {
		t.Fatal(err)
	}
	var seen receipt
	for seen.Order.Name == "" {
		v, err := coded.QueryWorkflow(ctx, run.GetID(), "", "order")
		if err == nil {
			err = v.Get(&seen)
		}
		if err != nil && ctx.Err() != nil {
			t.Fatalf("query: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := coded.SignalWorkflow(ctx, run.GetID(), "", "note", secretNote); err != nil {
		t.Fatal(err)
	}
	var got receipt
	if err := run.Get(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if got.Order.Name != secretName || got.Note != secretNote || !strings.Contains(got.Refusal, "of customer "+secretCustomer+" is settled") {
		t.Fatalf("the codec client read %+v", got)
	}

	// The raw history, as the Temporal server and its database hold it.
	h := rawHistory(ctx, t, plain, run.GetID())
	n := 0
	err = proxy.VisitPayloads(ctx, h, proxy.VisitPayloadsOptions{
		SkipSearchAttributes: true,
		Visitor: func(vc *proxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			for _, p := range ps {
				n++
				if !IsEncrypted(p) || string(p.Metadata[MetadataKeyID]) != c.KeyID() || string(p.Metadata[MetadataVersion]) != Version {
					t.Errorf("payload in %T is not encrypted with %s: metadata %v", vc.Parent, c.KeyID(), p.Metadata)
				}
			}
			return ps, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// input, 2 × activity input, activity result, failure details and
	// attributes, signal, result (queries are not recorded)
	if n < 7 {
		t.Fatalf("only %d payloads in the history", n)
	}
	raw, err := proto.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := protojson.Marshal(h)
	for _, secret := range []string{secretCustomer, secretName, secretBill, "Aluminium", "is settled"} {
		if bytes.Contains(raw, []byte(secret)) || bytes.Contains(js, []byte(secret)) {
			t.Errorf("the raw history shows %q", secret)
		}
	}
	failed := 0
	for _, ev := range h.Events {
		if f := ev.GetActivityTaskFailedEventAttributes().GetFailure(); f != nil {
			failed++
			if f.GetApplicationFailureInfo().GetType() != "BillSettled" {
				t.Errorf("the failure type must stay in clear: %q", f.GetApplicationFailureInfo().GetType())
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d failed activities in the history, want 1", failed)
	}

	// Without the codec, Temporal's own client reads nothing.
	var nothing receipt
	if err := plain.GetWorkflow(ctx, run.GetID(), "").Get(ctx, &nothing); err == nil {
		t.Fatalf("a client without the codec read the result: %+v", nothing)
	}

	// The encrypted history replays, with the key of this test's HSM.
	r, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{DataConverter: c.DataConverter(), FailureConverter: c.FailureConverter()})
	if err != nil {
		t.Fatal(err)
	}
	r.RegisterWorkflow(orderWorkflow)
	if err := r.ReplayWorkflowHistory(nil, h); err != nil {
		t.Fatalf("replaying the encrypted history: %v", err)
	}
	// The default converter cannot: proof that the replay decrypted.
	r = worker.NewWorkflowReplayer()
	r.RegisterWorkflow(orderWorkflow)
	if err := r.ReplayWorkflowHistory(nil, h); err == nil {
		t.Fatal("the encrypted history replayed without the codec")
	}
}

// A workflow started before the codec was deployed (plain input in its
// history) goes on under workers with the codec.
func TestPlainHistoryGoesOnWithCodec(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tok := openTestToken(t, "codec-upgrade")
	if _, _, err := EnsureHSMKey(ctx, tok, "gridpay-payload-key"); err != nil {
		t.Fatal(err)
	}
	c, err := LoadHSM(ctx, tok, "gridpay-payload-key", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := testenv.StartTemporal(ctx, testenv.TemporalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	plain := srv.Client()
	run, err := plain.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "codec-upgrade-1", TaskQueue: "codec-upgrade"}, orderWorkflow,
		order{CustomerID: secretCustomer, BillID: secretBill, AmountFen: 100})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.UseCodec(c); err != nil {
		t.Fatal(err)
	}
	coded := srv.Client()
	w := worker.New(coded, "codec-upgrade", worker.Options{})
	w.RegisterWorkflow(orderWorkflow)
	w.RegisterActivity(lookUp)
	w.RegisterActivity(refuse)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := coded.SignalWorkflow(ctx, run.GetID(), "", "note", secretNote); err != nil {
		t.Fatal(err)
	}
	var got receipt
	if err := coded.GetWorkflow(ctx, run.GetID(), "").Get(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if got.Order.CustomerID != secretCustomer || got.Order.Name != secretName || got.Note != secretNote {
		t.Fatalf("read %+v", got)
	}
	h := rawHistory(ctx, t, plain, run.GetID())
	start := h.Events[0].GetWorkflowExecutionStartedEventAttributes().GetInput().GetPayloads()[0]
	if IsEncrypted(start) {
		t.Fatal("the input recorded before the codec should be plain in the history")
	}
	last := h.Events[len(h.Events)-1].GetWorkflowExecutionCompletedEventAttributes().GetResult().GetPayloads()[0]
	if !IsEncrypted(last) {
		t.Fatal("the result written under the codec is not encrypted")
	}
	var in order
	if err := converter.GetDefaultDataConverter().FromPayload(start, &in); err != nil || in.CustomerID != secretCustomer {
		t.Fatalf("plain input: %+v %v", in, err)
	}
}

func rawHistory(ctx context.Context, t *testing.T, c client.Client, workflowID string) *historypb.History {
	t.Helper()
	var h historypb.History
	it := c.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, ev)
	}
	return &h
}

// A worker that lacks the key a client encrypted with (a rotation rolled
// out in the wrong order) must not fail the workflow: its strict codec
// fails the workflow task, Temporal retries it, and a worker that has the
// key carries the workflow on.
func TestMissingKeyBlocksTheWorkflowInsteadOfFailingIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tok := openTestToken(t, "codec-rotation")
	for _, label := range []string{"payload-a", "payload-b"} {
		if _, _, err := EnsureHSMKey(ctx, tok, label); err != nil {
			t.Fatal(err)
		}
	}
	load := func(current string, old ...string) *Codec {
		c, err := LoadHSM(ctx, tok, current, old)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	srv, err := testenv.StartTemporal(ctx, testenv.TemporalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	clientWith := func(c *Codec) client.Client {
		tc, err := client.NewClientFromExisting(srv.Client(), client.Options{DataConverter: c.DataConverter(), FailureConverter: c.FailureConverter()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tc.Close)
		return tc
	}
	startWorker := func(c *Codec) worker.Worker {
		w := worker.New(clientWith(c.Strict()), "codec-rotation", worker.Options{})
		w.RegisterWorkflow(orderWorkflow)
		w.RegisterActivity(lookUp)
		w.RegisterActivity(refuse)
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		return w
	}

	// The gateway already encrypts with the new key; the worker only knows
	// the old one.
	gateway := clientWith(load("payload-b", "payload-a"))
	stale := startWorker(load("payload-a"))
	run, err := gateway.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "codec-rotation-1", TaskQueue: "codec-rotation"}, orderWorkflow,
		order{CustomerID: secretCustomer, BillID: secretBill, AmountFen: 100})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		h := rawHistory(ctx, t, srv.Client(), run.GetID())
		failedTasks := 0
		for _, ev := range h.Events {
			if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED {
				failedTasks++
				if msg := ev.GetWorkflowTaskFailedEventAttributes().GetFailure().GetMessage(); !strings.Contains(msg, "not configured") && !strings.Contains(msg, "Encoded failure") {
					t.Logf("workflow task failure: %s", msg)
				}
			}
		}
		if failedTasks > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stale worker never failed a workflow task; history: %v", h.Events)
		}
		time.Sleep(200 * time.Millisecond)
	}
	d, err := srv.Client().DescribeWorkflowExecution(ctx, run.GetID(), "")
	if err != nil {
		t.Fatal(err)
	}
	if st := d.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatalf("the workflow is %s; a missing key must block it, not end it", st)
	}
	stale.Stop()

	// The worker is updated: it decrypts with both keys.
	defer startWorker(load("payload-b", "payload-a")).Stop()
	if err := gateway.SignalWorkflow(ctx, run.GetID(), "", "note", secretNote); err != nil {
		t.Fatal(err)
	}
	var got receipt
	if err := run.Get(ctx, &got); err != nil {
		t.Fatalf("after the key was deployed: %v", err)
	}
	if got.Order.Name != secretName || got.Note != secretNote {
		t.Fatalf("read %+v", got)
	}
}

//go:build integration

package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/codec"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/app"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/internal/testenv"
	simplatform "github.com/gridpay/gridpay/sim/platform"
	simunionpay "github.com/gridpay/gridpay/sim/unionpay"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/workflows"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The worker starts against real PostgreSQL, SoftHSM2 and Temporal, creates
// the CRL schedule, and a triggered run publishes fresh CRLs signed in the HSM.
func TestWorkerPublishesCRLsOnSchedule(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cfg := config.DefaultWorker()
	cfg.Database.DSN = testenv.NewDatabase(t)
	soft := testenv.SoftHSMForTest(t)
	tok := soft.NewTestToken(t, "worker-hsm")
	cfg.HSM.Module, cfg.HSM.TokenLabel = soft.ModulePath(), tok.Label
	cfg.HSM.PIN = config.Secret{Env: "GRIDPAY_TEST_WORKER_PIN"}
	t.Setenv("GRIDPAY_TEST_WORKER_PIN", tok.UserPIN)
	cfg.PKI.Dir = t.TempDir()
	cfg.ShutdownTimeout = 5 * time.Second

	// The CA exists (adminctl ca init), as the worker requires.
	db, err := app.OpenDB(ctx, cfg.Database, "test", false)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	admin, err := hsm.OpenToken(cfg.HSM.Module, tok.Selector(), []byte(tok.UserPIN), hsm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ca, rep, err := authority.Init(ctx, authority.HSMKeys{Token: admin}, db, app.AuthorityOptions(cfg.PKI), "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IssueServiceKey(ctx, ca.Keys(), cfg.Platform.ClientKeyLabel, authority.ServiceCert{Name: "worker"}, "test"); err != nil {
		t.Fatal(err)
	}
	// The audit anchor key (adminctl ca issue --name audit), and a short
	// interval so that the schedule anchors while the test runs.
	if _, err := ca.IssueServiceKey(ctx, ca.Keys(), cfg.Audit.SignerKeyLabel, authority.ServiceCert{Name: activities.AuditSignerService}, "test"); err != nil {
		t.Fatal(err)
	}
	cfg.Audit.AnchorDir = filepath.Join(t.TempDir(), "anchors")
	cfg.Audit.AnchorInterval = 2 * time.Second
	// Without the payload key the worker refuses to start, and says why.
	err = run(ctx, cfg, zaptest.NewLogger(t))
	if !errors.Is(err, hsm.ErrKeyNotFound) || !strings.Contains(err.Error(), "adminctl ca init") || cli.ExitCode(err) != cli.ExitNotFound {
		t.Fatalf("worker without the payload key: %v (exit %d)", err, cli.ExitCode(err))
	}
	// adminctl ca init creates it.
	if _, _, err := codec.EnsureHSMKey(ctx, admin, cfg.Temporal.Codec.KeyLabel); err != nil {
		t.Fatal(err)
	}
	// The test's own client decrypts with the same key.
	pc, err := codec.LoadHSM(ctx, admin, cfg.Temporal.Codec.KeyLabel, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// The platform the worker checks customers with.
	services := x509.NewCertPool()
	services.AddCert(ca.Services.Cert)
	sim, err := simplatform.Start(ctx, simplatform.Options{DSN: testenv.NewDatabase(t), StateDir: t.TempDir(), ClientCAs: services})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	cfg.Platform.URL, cfg.Platform.CAFile = sim.URL(), sim.CAFile()
	// A development merchant key signed by the UnionPay simulator's root.
	upState := t.TempDir()
	merchant, err := simunionpay.NewMerchant(upState, t.TempDir(), cfg.UnionPay.MerchantID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg.UnionPay.MerchantKeyFile, cfg.UnionPay.MerchantCertFile = merchant.KeyFile, merchant.CertFile
	cfg.UnionPay.RootFile = filepath.Join(upState, "root.pem")

	srv, err := testenv.StartTemporal(ctx, testenv.TemporalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	cfg.Temporal.Address = srv.Address()
	cfg.Temporal.TaskQueue = "worker-test"
	codecPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Temporal.Codec.Listen = fmt.Sprintf("127.0.0.1:%d", codecPort)
	cfg.Temporal.Codec.UIOrigin = "http://127.0.0.1:8233"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	plain := srv.Client()
	if err := srv.UseCodec(pc); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, cfg, zaptest.NewLogger(t)) }()

	tc := srv.Client()
	h := tc.ScheduleClient().GetHandle(ctx, workflows.CRLScheduleID)
	var desc *client.ScheduleDescription
	for desc == nil {
		if d, err := h.Describe(ctx); err == nil {
			desc = d
			break
		}
		select {
		case err := <-done:
			t.Fatalf("worker exited: %v", err)
		case <-ctx.Done():
			t.Fatal("schedule never created")
		case <-time.After(200 * time.Millisecond):
		}
	}
	if got := desc.Schedule.Spec.Intervals[0].Every; got != cfg.PKI.CRLPublishInterval {
		t.Fatalf("schedule interval %s, want %s", got, cfg.PKI.CRLPublishInterval)
	}
	if err := h.Trigger(ctx, client.ScheduleTriggerOptions{}); err != nil {
		t.Fatal(err)
	}
	var wfID, runID string
	for wfID == "" {
		d, err := h.Describe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Info.RecentActions) > 0 {
			wfID = d.Info.RecentActions[0].StartWorkflowResult.WorkflowID
			runID = d.Info.RecentActions[0].StartWorkflowResult.FirstExecutionRunID
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("triggered run never started")
		case <-time.After(200 * time.Millisecond):
		}
	}
	var res workflows.PublishCRLsResult
	if err := tc.GetWorkflow(ctx, wfID, runID).Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	for i, c := range res.CRLs {
		if c.Number != rep.CRLs[i].Number+1 {
			t.Errorf("%s CRL #%d, want #%d", c.CA, c.Number, rep.CRLs[i].Number+1)
		}
		stored, err := store.LatestCRL(ctx, db, authority.IssuerID(ca.CAs()[i].Cert))
		if err != nil || stored.Number != c.Number {
			t.Errorf("%s CRL not saved: %+v %v", c.CA, stored.Number, err)
		}
	}
	if err := testenv.RecordHistory(ctx, tc, wfID, runID, "publish_crls"); err != nil {
		t.Fatal(err)
	}
	checkCodecServer(ctx, t, plain, wfID, runID, cfg.Temporal.Codec)

	checkAuditAnchors(ctx, t, tc, db, ca, cfg.Audit)

	// A second worker start finds the schedule and keeps it (no error).
	if err := ensureSchedules(ctx, tc, cfg); err != nil {
		t.Fatalf("ensureSchedules on an existing schedule: %v", err)
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("worker stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop")
	}
}

// checkCodecServer reads the run's result as Temporal stores it (encrypted)
// and has the worker's codec endpoint decrypt it for the Web UI's origin,
// and refuse another origin.
func checkCodecServer(ctx context.Context, t *testing.T, plain client.Client, wfID, runID string, cfg config.PayloadCodec) {
	t.Helper()
	var result *commonpb.Payloads
	it := plain.GetWorkflowHistory(ctx, wfID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		result = ev.GetWorkflowExecutionCompletedEventAttributes().GetResult()
	}
	if len(result.GetPayloads()) != 1 || !codec.IsEncrypted(result.Payloads[0]) {
		t.Fatalf("the worker's result is not encrypted in Temporal: %v", result)
	}
	body, err := protojson.Marshal(result)
	if err != nil {
		t.Fatal(err)
	}
	post := func(origin string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+cfg.Listen+"/decode", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Namespace", "default")
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := post(cfg.UIOrigin)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != cfg.UIOrigin {
		t.Fatalf("codec endpoint: %d %v", resp.StatusCode, resp.Header)
	}
	raw, _ := io.ReadAll(resp.Body)
	var decoded commonpb.Payloads
	if err := protojson.Unmarshal(raw, &decoded); err != nil || len(decoded.Payloads) != 1 || codec.IsEncrypted(decoded.Payloads[0]) {
		t.Fatalf("codec endpoint answered %s (%v)", raw, err)
	}
	var res workflows.PublishCRLsResult
	if err := converter.GetDefaultDataConverter().FromPayload(decoded.Payloads[0], &res); err != nil || len(res.CRLs) != 3 {
		t.Fatalf("decoded result: %+v %v", res, err)
	}
	if resp := post("http://attacker.example"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("another origin: %d", resp.StatusCode)
	}
}

// checkAuditAnchors waits for the audit-anchor schedule to anchor the log:
// a file in the anchor directory, signed by the "audit" key, anchoring the
// log's head, the same anchor as the run's result in Temporal.
func checkAuditAnchors(ctx context.Context, t *testing.T, tc client.Client, db *store.DB, ca *authority.Authority, cfg config.Audit) {
	t.Helper()
	h := tc.ScheduleClient().GetHandle(ctx, workflows.AuditAnchorScheduleID)
	desc, err := h.Describe(ctx)
	if err != nil {
		t.Fatalf("audit anchor schedule: %v", err)
	}
	if got := desc.Schedule.Spec.Intervals[0].Every; got != cfg.AnchorInterval {
		t.Fatalf("audit anchor interval %s, want %s", got, cfg.AnchorInterval)
	}
	var files []activities.AnchorFile
	for len(files) == 0 {
		files, _ = activities.ReadAnchorDir(cfg.AnchorDir)
		select {
		case <-ctx.Done():
			t.Fatal("no audit anchor file appeared")
		case <-time.After(200 * time.Millisecond):
		}
	}
	d, err := h.Describe(ctx)
	if err != nil || len(d.Info.RecentActions) == 0 {
		t.Fatalf("no AnchorAudit run: %v", err)
	}
	run := d.Info.RecentActions[0].StartWorkflowResult
	var res activities.AnchorResult
	if err := tc.GetWorkflow(ctx, run.WorkflowID, run.FirstExecutionRunID).Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	head, err := db.ReadAuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := authority.LoadTrust(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	v, err := trust.Verifier(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := activities.VerifyAnchor(res.Anchor, v)
	if err != nil {
		t.Fatalf("the anchor in Temporal does not verify: %v", err)
	}
	if res.File != filepath.Join(cfg.AnchorDir, activities.AnchorFileName(cp.Seq)) || cp.Seq > head.Seq || cp.Seq == 0 {
		t.Fatalf("anchor %+v, head %d", res, head.Seq)
	}
	files, err = activities.ReadAnchorDir(cfg.AnchorDir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := activities.CheckAnchors(ctx, cfg.AnchorDir, files, v, db.AuditHashes, head.Seq)
	if err != nil || !rep.OK() || rep.Checked == 0 {
		t.Fatalf("anchor files: %+v, %v", rep, err)
	}
	if err := testenv.RecordHistory(ctx, tc, run.WorkflowID, run.FirstExecutionRunID, "anchor_audit"); err != nil {
		t.Fatal(err)
	}
}

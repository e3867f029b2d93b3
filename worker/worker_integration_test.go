//go:build integration

package main

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.uber.org/zap/zaptest"

	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/app"
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
	admin.Close()
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
	if err := cfg.Validate(); err != nil {
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

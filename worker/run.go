package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/codec"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/internal/app"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/workflows"
)

// run wires the worker and blocks until ctx ends.
func run(ctx context.Context, cfg config.Worker, log *zap.Logger) (err error) {
	// The worker's codec is strict (it panics, see codec.Codec.Strict);
	// here, outside any task, that is an error like any other.
	defer func() {
		if p := recover(); p != nil {
			cp, ok := p.(codec.Panic)
			if !ok {
				panic(p)
			}
			err = fmt.Errorf("worker: %w", cp.Err)
		}
	}()
	db, err := app.OpenDB(ctx, cfg.Database, "worker", true)
	if err != nil {
		return err
	}
	defer db.Close()
	tok, err := app.OpenHSM(cfg.HSM, log)
	if err != nil {
		return err
	}
	defer tok.Close()
	ca, err := authority.Open(ctx, authority.HSMKeys{Token: tok}, db, app.AuthorityOptions(cfg.PKI))
	if err != nil {
		return err
	}
	pc, err := app.PayloadCodec(ctx, cfg.Temporal, tok, log)
	if err != nil {
		return err
	}
	// Workers block a workflow on a codec failure rather than fail it; the
	// Web UI's codec endpoint answers errors.
	tc, err := app.DialTemporal(ctx, cfg.Temporal, pc.Strict(), log)
	if err != nil {
		return err
	}
	defer tc.Close()
	if cfg.Temporal.Codec.Listen != "" {
		stop, err := serveCodec(cfg.Temporal.Codec, pc, log.Named("codec-server"))
		if err != nil {
			return err
		}
		defer stop()
	}

	if added, err := app.RegisterSearchAttributes(ctx, tc, cfg.Temporal.Namespace, workflows.SearchAttributes()); err != nil {
		return err
	} else if len(added) > 0 {
		log.Info("search attributes registered", zap.Strings("added", added))
	}
	if err := ensureSchedules(ctx, tc, cfg); err != nil {
		return err
	}
	trust, err := authority.LoadTrust(ctx, db)
	if err != nil {
		return err
	}
	plat, err := app.PlatformClient(ctx, cfg.Platform, ca.Keys(), trust, "worker")
	if err != nil {
		return err
	}
	up, err := app.UnionPayClient(ctx, cfg.UnionPay, ca.Keys())
	if err != nil {
		return err
	}
	loadSigner := &activities.ServiceKey{Keys: ca.Keys(), Label: cfg.Load.SignerKeyLabel, Intermediates: []*x509.Certificate{ca.Services.Cert}}
	if _, _, err := loadSigner.LoadSigner(ctx); err != nil {
		log.Warn("loads cannot be signed until the load signer key is issued", zap.Error(err))
	}
	anchors, err := auditAnchors(ctx, cfg.Audit, db, ca, log)
	if err != nil {
		return err
	}
	w := worker.New(tc, cfg.Temporal.TaskQueue, worker.Options{WorkerStopTimeout: cfg.ShutdownTimeout})
	register(w, &activities.CA{Publisher: ca},
		&activities.Binding{CA: ca, Platform: plat, Chain: [][]byte{ca.Customer.Cert.Raw, ca.Root.Cert.Raw}},
		&activities.Tokens{Temporal: tc},
		&activities.Payments{Records: store.Payments{DB: db}, Gateway: up, Platform: plat,
			FrontURL: cfg.UnionPay.ReturnURL, BackURL: cfg.UnionPay.NotifyURL},
		&activities.Loads{Records: store.Loads{DB: db}, Platform: plat, Signer: loadSigner}, anchors)
	if err := w.Start(); err != nil {
		return fmt.Errorf("starting the worker: %w", err)
	}
	log.Info("worker running", zap.String("task_queue", cfg.Temporal.TaskQueue), zap.String("temporal", cfg.Temporal.Address),
		zap.String("namespace", cfg.Temporal.Namespace), zap.String("web_ui", cfg.Temporal.UIAddress))
	<-ctx.Done()
	log.Info("worker stopping: waiting for running activities", zap.Duration("timeout", cfg.ShutdownTimeout))
	w.Stop()
	return nil
}

// register puts every workflow and activity on the worker.
func register(w worker.Registry, ca *activities.CA, binding *activities.Binding, tokens *activities.Tokens, payments *activities.Payments,
	loads *activities.Loads, anchors *activities.AuditAnchors) {
	for _, wf := range []any{workflows.PublishCRLs, workflows.Bind, workflows.Unbind,
		workflows.Pay, workflows.RecoverPayment, workflows.Reconcile, workflows.Load, workflows.AnchorAudit} {
		w.RegisterWorkflow(wf)
	}
	for _, a := range []any{ca, binding, tokens, payments, loads, anchors} {
		w.RegisterActivity(a)
	}
}

// auditAnchors is the audit anchoring activity: the "audit" key found in
// the HSM like the load signer (a worker starts without it, and runs retry
// until an operator issues it), the anchor directory made if missing.
func auditAnchors(ctx context.Context, cfg config.Audit, db *store.DB, ca *authority.Authority, log *zap.Logger) (*activities.AuditAnchors, error) {
	signer := &activities.ServiceKey{Keys: ca.Keys(), Label: cfg.SignerKeyLabel, Intermediates: []*x509.Certificate{ca.Services.Cert},
		Service: activities.AuditSignerService}
	if _, _, err := signer.LoadSigner(ctx); err != nil {
		log.Warn("the audit log cannot be anchored until the audit signer key is issued", zap.Error(err))
	}
	if cfg.AnchorDir == "" {
		log.Warn("audit.anchor_dir is not set: audit anchors are kept in Temporal only")
	} else if err := os.MkdirAll(cfg.AnchorDir, 0o755); err != nil {
		return nil, cli.WithCode(cli.ExitConfig, fmt.Errorf("audit.anchor_dir: %w", err))
	}
	return &activities.AuditAnchors{Log: store.AuditLog{DB: db}, Signer: signer, Dir: cfg.AnchorDir}, nil
}

// ensureSchedules creates the worker's schedules: CRL publication every
// pki.crl_publish_interval, the audit anchor every audit.anchor_interval,
// and the payment reconciliation daily at 10:00 Shanghai time (the
// gateway's file for the previous day is ready by then).
func ensureSchedules(ctx context.Context, tc client.Client, cfg config.Worker) error {
	crl := client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: cfg.PKI.CRLPublishInterval}}}
	if err := ensureSchedule(ctx, tc, workflows.CRLScheduleID, crl, &client.ScheduleWorkflowAction{
		ID: workflows.CRLScheduleID, Workflow: workflows.PublishCRLs, TaskQueue: cfg.Temporal.TaskQueue,
	}, "republishes the CRLs of the root, customer and services CAs"); err != nil {
		return err
	}
	anchor := client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: cfg.Audit.AnchorInterval}}}
	if err := ensureSchedule(ctx, tc, workflows.AuditAnchorScheduleID, anchor, &client.ScheduleWorkflowAction{
		ID: workflows.AuditAnchorScheduleID, Workflow: workflows.AnchorAudit, TaskQueue: cfg.Temporal.TaskQueue,
	}, "anchors the audit log's head outside PostgreSQL: signed in the HSM, kept in this history and in audit.anchor_dir"); err != nil {
		return err
	}
	daily := client.ScheduleSpec{
		Calendars:    []client.ScheduleCalendarSpec{{Hour: []client.ScheduleRange{{Start: 10}}}},
		TimeZoneName: "Asia/Shanghai",
	}
	return ensureSchedule(ctx, tc, workflows.ReconcileScheduleID, daily, &client.ScheduleWorkflowAction{
		ID: workflows.ReconcileScheduleID, Workflow: workflows.Reconcile, Args: []any{workflows.ReconcileInput{}}, TaskQueue: cfg.Temporal.TaskQueue,
	}, "reconciles yesterday's UnionPay transactions with GridPay's payments and the platform")
}

// ensureSchedule creates a schedule, or brings an existing one in line with
// the configuration. Several workers starting at once is fine: the losers
// of the create find it there.
func ensureSchedule(ctx context.Context, tc client.Client, id string, spec client.ScheduleSpec, action *client.ScheduleWorkflowAction, note string) error {
	_, err := tc.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID: id, Spec: spec, Action: action, Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, Note: note,
	})
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		if err != nil {
			return fmt.Errorf("creating schedule %s: %w", id, err)
		}
		return nil
	}
	h := tc.ScheduleClient().GetHandle(ctx, id)
	err = h.Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			s.Spec = &spec
			s.Action = action
			return &client.ScheduleUpdate{Schedule: &s}, nil
		},
	})
	if err != nil {
		return fmt.Errorf("updating schedule %s: %w", id, err)
	}
	return nil
}

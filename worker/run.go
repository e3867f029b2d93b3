package main

import (
	"context"
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/internal/app"
	"github.com/gridpay/gridpay/workflows"
)

// run wires the worker and blocks until ctx ends.
func run(ctx context.Context, cfg config.Worker, log *zap.Logger) error {
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
	tc, err := app.DialTemporal(ctx, cfg.Temporal, log)
	if err != nil {
		return err
	}
	defer tc.Close()

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
	w := worker.New(tc, cfg.Temporal.TaskQueue, worker.Options{WorkerStopTimeout: cfg.ShutdownTimeout})
	register(w, &activities.CA{Publisher: ca},
		&activities.Binding{CA: ca, Platform: plat, Chain: [][]byte{ca.Customer.Cert.Raw, ca.Root.Cert.Raw}},
		&activities.Tokens{Temporal: tc})
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
func register(w worker.Registry, ca *activities.CA, binding *activities.Binding, tokens *activities.Tokens) {
	w.RegisterWorkflow(workflows.PublishCRLs)
	w.RegisterWorkflow(workflows.Bind)
	w.RegisterWorkflow(workflows.Unbind)
	w.RegisterActivity(ca)
	w.RegisterActivity(binding)
	w.RegisterActivity(tokens)
}

// ensureSchedules creates the worker's schedules, or brings an existing one
// in line with the configuration. Several workers starting at once is fine:
// the losers of the create find it there.
func ensureSchedules(ctx context.Context, tc client.Client, cfg config.Worker) error {
	spec := client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: cfg.PKI.CRLPublishInterval}}}
	action := &client.ScheduleWorkflowAction{
		ID:        workflows.CRLScheduleID,
		Workflow:  workflows.PublishCRLs,
		TaskQueue: cfg.Temporal.TaskQueue,
	}
	_, err := tc.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:      workflows.CRLScheduleID,
		Spec:    spec,
		Action:  action,
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		Note:    "republishes the CRLs of the root, customer and services CAs",
	})
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		if err != nil {
			return fmt.Errorf("creating schedule %s: %w", workflows.CRLScheduleID, err)
		}
		return nil
	}
	h := tc.ScheduleClient().GetHandle(ctx, workflows.CRLScheduleID)
	err = h.Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			s.Spec = &spec
			s.Action = action
			return &client.ScheduleUpdate{Schedule: &s}, nil
		},
	})
	if err != nil {
		return fmt.Errorf("updating schedule %s: %w", workflows.CRLScheduleID, err)
	}
	return nil
}

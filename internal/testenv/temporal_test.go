//go:build integration

package testenv

import (
	"context"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

func echoWorkflow(ctx workflow.Context, s string) (string, error) { return "echo:" + s, nil }

// The harness itself: the pinned CLI starts, a worker connects and a
// workflow runs to completion on it.
func TestTemporalDevServerRunsAWorkflow(t *testing.T) {
	ctx := context.Background()
	srv, err := StartTemporal(ctx, TemporalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	w := worker.New(srv.Client(), "testenv", worker.Options{})
	w.RegisterWorkflow(echoWorkflow)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	run, err := srv.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: "testenv"}, echoWorkflow, "hi")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := run.Get(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if got != "echo:hi" {
		t.Fatalf("got %q", got)
	}
}

package logging

import (
	"errors"
	"testing"

	"go.temporal.io/sdk/log"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestNewRejectsBadSettings(t *testing.T) {
	if _, err := New("loud", "json"); err == nil {
		t.Fatal("bad level accepted")
	}
	if _, err := New("info", "xml"); err == nil {
		t.Fatal("bad format accepted")
	}
	for _, f := range []string{"json", "console"} {
		if _, err := New("debug", f); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
}

func TestTemporalAdapter(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	l := Temporal(zap.New(core))
	l.Info("activity started", "ActivityType", "IssueCertificate", "Attempt", 2)
	l.Error("activity failed", "Error", errors.New("boom"), "dangling")
	l.(log.WithLogger).With(KeyWorkflowID, "binding/T1").Warn("retrying")

	entries := logs.All()
	if len(entries) != 3 {
		t.Fatalf("want 3 entries, got %d", len(entries))
	}
	if got := entries[0].ContextMap(); got["ActivityType"] != "IssueCertificate" || got["Attempt"] != int64(2) {
		t.Errorf("fields not carried: %v", got)
	}
	if got := entries[1].ContextMap(); got["Error"] != "boom" || got["dangling"] != "!missing" {
		t.Errorf("error/dangling key not carried: %v", got)
	}
	if got := entries[2].ContextMap(); got[KeyWorkflowID] != "binding/T1" {
		t.Errorf("With fields lost: %v", got)
	}
}

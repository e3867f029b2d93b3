//go:build integration

package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBindingLifecycle(t *testing.T) {
	ctx := context.Background()
	db := migratedDB(t)
	for _, c := range []*Certificate{
		testCert("b001", "ca1", "C100", "TOK-A", "der-b1"),
		testCert("b002", "ca1", "C100", "TOK-B", "der-b2"),
		testCert("b003", "ca1", "C200", "TOK-A", "der-b3"),
		testCert("b004", "ca1", "C300", "TOK-C", "der-b4"),
	} {
		if err := InsertCertificate(ctx, db, c); err != nil {
			t.Fatal(err)
		}
	}
	b, err := CreateBinding(ctx, db, "TOK-A", "C100", "b001", "admin")
	if err != nil || b.Status != BindingPending {
		t.Fatalf("create: %+v %v", b, err)
	}
	// A pending binding is not good enough to log in.
	if _, err := ActiveBindingForCert(ctx, db, "b001"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pending binding served as active: %v", err)
	}
	// The same customer with another key, or the same key for another
	// customer, is refused while the first binding lives.
	if _, err := CreateBinding(ctx, db, "TOK-B", "C100", "b002", "admin"); !errors.Is(err, ErrAlreadyBound) {
		t.Fatalf("second key for the customer: %v", err)
	}
	if _, err := CreateBinding(ctx, db, "TOK-A", "C200", "b003", "admin"); !errors.Is(err, ErrAlreadyBound) {
		t.Fatalf("second customer for the key: %v", err)
	}
	now := time.Now()
	if b, err = ActivateBinding(ctx, db, b.ID, now); err != nil || b.Status != BindingActive {
		t.Fatalf("activate: %+v %v", b, err)
	}
	if again, err := ActivateBinding(ctx, db, b.ID, now); err != nil || again.Status != BindingActive {
		t.Fatalf("activate twice: %+v %v", again, err)
	}
	if got, err := ActiveBindingForCert(ctx, db, "b001"); err != nil || got.CustomerID != "C100" {
		t.Fatalf("active lookup: %+v %v", got, err)
	}
	if b, err = DeactivateBinding(ctx, db, b.ID, "lost", now); err != nil || b.Status != BindingInactive || b.EndReason != "lost" {
		t.Fatalf("deactivate: %+v %v", b, err)
	}
	if _, err := ActivateBinding(ctx, db, b.ID, now); !errors.Is(err, ErrConflict) {
		t.Fatalf("an ended binding came back: %v", err)
	}
	if _, err := ActiveBindingForCert(ctx, db, "b001"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ended binding still active: %v", err)
	}
	// Once ended, the key and the customer can be bound again.
	if _, err := CreateBinding(ctx, db, "TOK-A", "C200", "b003", "admin"); err != nil {
		t.Fatalf("rebinding the key: %v", err)
	}
	if _, err := CreateBinding(ctx, db, "TOK-B", "C100", "b002", "admin"); err != nil {
		t.Fatalf("rebinding the customer: %v", err)
	}
	hist, err := BindingsForToken(ctx, db, "TOK-A")
	if err != nil || len(hist) != 2 || hist[0].CustomerID != "C200" {
		t.Fatalf("history: %+v %v", hist, err)
	}
	// A binding must name a recorded certificate.
	if _, err := CreateBinding(ctx, db, "TOK-Z", "C999", "ffff", "admin"); err == nil {
		t.Fatal("binding without a certificate accepted")
	}
}

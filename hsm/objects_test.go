package hsm

import (
	"context"
	"errors"
	"maps"
	"testing"
)

func TestReplaceDataCrashConsistency(t *testing.T) {
	ctx := context.Background()
	const app, label = "wallet", "balance"
	pending := label + pendingSuffix

	t.Run("normal", func(t *testing.T) {
		f := newFake()
		tok := openFake(t, f, Options{})
		if err := tok.WriteData(ctx, DataObject{Application: app, Label: label, Value: []byte("v1"), Private: true}); err != nil {
			t.Fatal(err)
		}
		if err := tok.ReplaceData(ctx, app, label, []byte("v2")); err != nil {
			t.Fatal(err)
		}
		if got := f.dataObjects(); !maps.Equal(got, map[string]string{label: "v2"}) {
			t.Fatalf("objects after replace: %v", got)
		}
		obj, err := tok.ReadData(ctx, app, label)
		if err != nil || string(obj.Value) != "v2" || !obj.Private {
			t.Fatalf("ReadData = %+v, %v", obj, err)
		}
	})

	// Interrupted before the commit point: old and pending both exist.
	t.Run("before commit", func(t *testing.T) {
		f := newFake()
		tok := openFake(t, f, Options{})
		if err := tok.WriteData(ctx, DataObject{Application: app, Label: label, Value: []byte("v1")}); err != nil {
			t.Fatal(err)
		}
		if _, err := tok.createData(ctx, app, pending, false, []byte("v2-unfinished")); err != nil {
			t.Fatal(err)
		}
		if obj, err := tok.ReadData(ctx, app, label); err != nil || string(obj.Value) != "v1" {
			t.Fatalf("ReadData = %q, %v; want the old value", obj.Value, err)
		}
		if err := tok.WriteData(ctx, DataObject{Application: app, Label: label, Value: []byte("x")}); !errors.Is(err, ErrObjectExists) {
			t.Fatalf("WriteData: err = %v, want ErrObjectExists", err)
		}
		if err := tok.ReplaceData(ctx, app, label, []byte("v3")); err != nil {
			t.Fatal(err)
		}
		if got := f.dataObjects(); !maps.Equal(got, map[string]string{label: "v3"}) {
			t.Fatalf("objects after the next replace: %v", got)
		}
	})

	// Interrupted after the commit point: only the pending object is left.
	t.Run("after commit", func(t *testing.T) {
		f := newFake()
		tok := openFake(t, f, Options{})
		if _, err := tok.createData(ctx, app, pending, false, []byte("v2")); err != nil {
			t.Fatal(err)
		}
		if obj, err := tok.ReadData(ctx, app, label); err != nil || string(obj.Value) != "v2" {
			t.Fatalf("ReadData = %q, %v; want the committed value", obj.Value, err)
		}
		if err := tok.ReplaceData(ctx, app, label, []byte("v3")); err != nil {
			t.Fatal(err)
		}
		if got := f.dataObjects(); !maps.Equal(got, map[string]string{label: "v3"}) {
			t.Fatalf("objects after the next replace: %v", got)
		}
		if err := tok.DeleteData(ctx, app, label); err != nil {
			t.Fatal(err)
		}
		if got := f.dataObjects(); len(got) != 0 {
			t.Fatalf("objects after delete: %v", got)
		}
	})

	t.Run("reserved label", func(t *testing.T) {
		tok := openFake(t, newFake(), Options{})
		if err := tok.WriteData(ctx, DataObject{Application: app, Label: pending, Value: []byte("x")}); err == nil {
			t.Fatal("a label with the pending suffix was accepted")
		}
	})
}

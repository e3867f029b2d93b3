package pinlock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridpay/gridpay/hsm"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// fakeObjects is a token's data objects in memory.
type fakeObjects struct {
	objs    map[string][]byte
	failW   error // returned by writes
	failR   error // returned by reads
	writes  int
	private map[string]bool
}

func newFake() *fakeObjects {
	return &fakeObjects{objs: map[string][]byte{}, private: map[string]bool{}}
}

func (f *fakeObjects) ReadData(_ context.Context, app, label string) (hsm.DataObject, error) {
	if f.failR != nil {
		return hsm.DataObject{}, f.failR
	}
	v, ok := f.objs[app+"/"+label]
	if !ok {
		return hsm.DataObject{}, hsm.ErrObjectNotFound
	}
	return hsm.DataObject{Application: app, Label: label, Value: v, Private: f.private[app+"/"+label]}, nil
}

func (f *fakeObjects) WriteData(_ context.Context, o hsm.DataObject) error {
	if f.failW != nil {
		return f.failW
	}
	k := o.Application + "/" + o.Label
	if _, ok := f.objs[k]; ok {
		return hsm.ErrObjectExists
	}
	f.writes++
	f.objs[k] = append([]byte(nil), o.Value...)
	f.private[k] = o.Private
	return nil
}

func (f *fakeObjects) ReplaceData(_ context.Context, app, label string, v []byte) error {
	if f.failW != nil {
		return f.failW
	}
	k := app + "/" + label
	if _, ok := f.objs[k]; !ok {
		return hsm.ErrObjectNotFound
	}
	f.writes++
	f.objs[k] = append([]byte(nil), v...)
	return nil
}

func (f *fakeObjects) record(t *testing.T) Record {
	t.Helper()
	r, found, err := ReadToken(context.Background(), f)
	if err != nil || !found {
		t.Fatalf("token record: found=%v err=%v", found, err)
	}
	return r
}

func TestMerge(t *testing.T) {
	rec := func(f int, locked bool, gen int64) Record {
		return Record{Version: FormatVersion, Failures: f, Locked: locked, ResetGeneration: gen}
	}
	for _, tc := range []struct {
		name           string
		local, token   Record
		onToken        bool
		want           Record
		wantSuperseded bool
	}{
		{"no token record: local counts", rec(3, false, 0), Record{}, false, rec(3, false, 0), false},
		{"token higher count", rec(1, false, 2), rec(4, false, 2), true, rec(4, false, 2), false},
		{"local higher count", rec(4, false, 2), rec(1, false, 2), true, rec(4, false, 2), false},
		{"either lock holds", rec(0, true, 2), rec(0, false, 2), true, rec(0, true, 2), false},
		{"token lock holds", rec(1, false, 2), rec(5, true, 2), true, rec(5, true, 2), false},
		{"reset on token clears local lock", rec(5, true, 1), rec(0, false, 2), true, rec(0, false, 2), true},
		{"reset then failures on the token", rec(5, true, 1), rec(2, false, 2), true, rec(2, false, 2), true},
		{"token rolled back to an older generation: local wins", rec(3, false, 5), rec(0, false, 4), true, rec(3, false, 5), false},
		{"token rolled back cannot unlock", rec(5, true, 5), rec(0, false, 4), true, rec(5, true, 5), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, sup := Merge(tc.local, tc.token, tc.onToken)
			got.UpdatedAt = time.Time{}
			if got != tc.want || sup != tc.wantSuperseded {
				t.Fatalf("Merge = %+v superseded=%v, want %+v superseded=%v", got, sup, tc.want, tc.wantSuperseded)
			}
		})
	}
}

func TestFailedLocksAtMax(t *testing.T) {
	r := Record{Version: FormatVersion}
	for i := 1; i <= 5; i++ {
		r = r.Failed(5, t0)
		if r.Failures != i {
			t.Fatalf("after %d failures: count %d", i, r.Failures)
		}
		if wantLocked := i == 5; r.Locked != wantLocked || r.IsLocked(5) != wantLocked {
			t.Fatalf("after %d failures: locked=%v", i, r.Locked)
		}
		if got, want := r.Remaining(5), 5-i; got != want {
			t.Fatalf("after %d failures: remaining %d, want %d", i, got, want)
		}
	}
	// Raising the limit does not unlock a locked key.
	if !r.IsLocked(10) {
		t.Fatal("a locked record became unlocked when the limit was raised")
	}
	// Lowering it locks a key that has as many failures.
	if !(Record{Failures: 3}).IsLocked(3) {
		t.Fatal("3 failures with a limit of 3 is not locked")
	}
	if r.Succeeded(t0).IsLocked(5) != true {
		t.Fatal("Succeeded unlocked a locked key")
	}
}

func TestMessages(t *testing.T) {
	r := Record{}
	for i, want := range []string{
		"wrong PIN: 4 tries left before the key is locked",
		"wrong PIN: 3 tries left before the key is locked",
		"wrong PIN: 2 tries left before the key is locked",
		"wrong PIN: 1 try left before the key is locked",
		"the key is locked after 5 wrong PINs; ask the power company to reset it",
	} {
		r = r.Failed(5, t0)
		if got := WrongPINMessage(r, 5); got != want {
			t.Fatalf("failure %d: %q, want %q", i+1, got, want)
		}
	}
	if got := RemainingMessage(Record{Failures: 2}, 5); got != "2 wrong PINs were entered on this key; 3 tries left before it is locked" {
		t.Fatalf("RemainingMessage = %q", got)
	}
	if got := RemainingMessage(Record{Failures: 1}, 5); got != "1 wrong PIN was entered on this key; 4 tries left before it is locked" {
		t.Fatalf("RemainingMessage = %q", got)
	}
	if RemainingMessage(Record{}, 5) != "" {
		t.Fatal("RemainingMessage for a clean key is not empty")
	}
}

func TestResetGeneration(t *testing.T) {
	r := Reset(Record{Failures: 5, Locked: true, ResetGeneration: 3}, t0)
	if r.Failures != 0 || r.Locked || r.ResetGeneration != t0.Unix() {
		t.Fatalf("Reset = %+v", r)
	}
	// A generation already above the clock still grows by one.
	r2 := Reset(Record{ResetGeneration: t0.Unix() + 100}, t0)
	if r2.ResetGeneration != t0.Unix()+101 {
		t.Fatalf("Reset generation = %d, want %d", r2.ResetGeneration, t0.Unix()+101)
	}
	// A reset of a lost record still supersedes any local mirror written
	// from an earlier reset.
	local := Record{Version: FormatVersion, Failures: 5, Locked: true, ResetGeneration: t0.Add(-time.Hour).Unix()}
	eff, sup := Merge(local, Reset(Record{}, t0), true)
	if !sup || eff.IsLocked(5) {
		t.Fatalf("a reset after the object was lost did not supersede the local lock: %+v", eff)
	}
}

func TestDecodeRefusesBadRecords(t *testing.T) {
	for _, in := range []string{
		``, `{`, `[]`, `{"v":2,"failures":0}`, `{"failures":0}`, `{"v":1,"failures":-1}`, `{"v":1,"reset_generation":-4}`,
	} {
		if _, err := Decode([]byte(in)); !errors.Is(err, ErrBadRecord) {
			t.Errorf("Decode(%q) = %v, want ErrBadRecord", in, err)
		}
	}
	r := Record{Failures: 2, Locked: false, ResetGeneration: 7, UpdatedAt: t0}
	got, err := Decode(r.Encode())
	if err != nil {
		t.Fatal(err)
	}
	r.Version = FormatVersion
	if got != r {
		t.Fatalf("round trip: %+v, want %+v", got, r)
	}
	if want := `{"v":1,"failures":2,"locked":false,"reset_generation":7,"updated_at":"2026-03-01T09:00:00Z"}`; string(r.Encode()) != want {
		t.Fatalf("Encode = %s, want %s", r.Encode(), want)
	}
}

func newGuard(t *testing.T, tok Objects) *Guard {
	t.Helper()
	l, err := OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &Guard{Max: 5, Serial: "A1B2C3", Local: l, Token: tok, Now: func() time.Time { return t0 }}
}

func TestGuardCountsOnTokenAndLocally(t *testing.T) {
	ctx := context.Background()
	tok := newFake()
	g := newGuard(t, tok)
	for i := 1; i <= 5; i++ {
		st, err := g.Check(ctx)
		if err != nil {
			t.Fatalf("check before attempt %d: %v", i, err)
		}
		r, err := g.Failed(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		if r.Failures != i {
			t.Fatalf("attempt %d: count %d", i, r.Failures)
		}
		if tr := tok.record(t); tr.Failures != i || tr.Locked != (i == 5) {
			t.Fatalf("attempt %d: token record %+v", i, tr)
		}
		if tok.private[Application+"/"+Label] {
			t.Fatal("the record on the key was written as a private object")
		}
		lr, err := g.Local.Record(g.Serial)
		if err != nil || lr.Failures != i {
			t.Fatalf("attempt %d: local record %+v, %v", i, lr, err)
		}
	}
	_, err := g.Check(ctx)
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
		t.Fatalf("check after 5 failures: %v, want LockedError", err)
	}
	if got := err.Error(); got != "the key is locked after 5 wrong PINs; ask the power company to reset it" {
		t.Fatalf("message %q", got)
	}

	// Wiping the object on the key does not unlock: the mirror remembers.
	delete(tok.objs, Application+"/"+Label)
	if _, err := g.Check(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("check after the token object was deleted: %v, want locked", err)
	}
	// Nor does a clean record of the same generation written on the key.
	if err := WriteToken(ctx, tok, Record{}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Check(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("check after the token record was zeroed: %v, want locked", err)
	}

	// The administrator's reset does.
	reset, err := ResetToken(ctx, tok, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	st, err := g.Check(ctx)
	if err != nil {
		t.Fatalf("check after reset: %v", err)
	}
	if !st.Superseded || st.Record.Failures != 0 || st.Record.ResetGeneration != reset.ResetGeneration {
		t.Fatalf("state after reset: %+v", st)
	}
	if lr, _ := g.Local.Record(g.Serial); lr.Failures != 0 || lr.Locked || lr.ResetGeneration != reset.ResetGeneration {
		t.Fatalf("local mirror after reset: %+v", lr)
	}
}

func TestGuardFailuresTravelWithTheKey(t *testing.T) {
	ctx := context.Background()
	tok := newFake()
	a, b := newGuard(t, tok), newGuard(t, tok) // two computers, one key
	for range 3 {
		st, err := a.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Failed(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	st, err := b.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Remaining(5) != 2 {
		t.Fatalf("second computer sees %d tries left, want 2", st.Remaining(5))
	}
	if err := b.Succeeded(ctx, st); err != nil {
		t.Fatal(err)
	}
	if tr := tok.record(t); tr.Failures != 0 {
		t.Fatalf("token count after success: %d", tr.Failures)
	}
	// Computer a still has its own 3 (the count errs towards locking).
	st, err = a.Check(ctx)
	if err != nil || st.Record.Failures != 3 {
		t.Fatalf("computer a after success elsewhere: %+v, %v", st.Record, err)
	}
}

func TestGuardTokenUnwritable(t *testing.T) {
	ctx := context.Background()
	tok := newFake()
	tok.failW = errors.New("CKR_USER_NOT_LOGGED_IN")
	g := newGuard(t, tok)
	st, err := g.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := g.Failed(ctx, st)
	if err != nil || r.Failures != 1 {
		t.Fatalf("Failed = %+v, %v", r, err)
	}
	if st, _ := g.Check(ctx); st.Record.Failures != 1 {
		t.Fatalf("count kept locally: %d", st.Record.Failures)
	}
}

func TestGuardBadRecordsLock(t *testing.T) {
	ctx := context.Background()
	tok := newFake()
	tok.objs[Application+"/"+Label] = []byte("garbage")
	g := newGuard(t, tok)
	if _, err := g.Check(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("garbage on the key: %v, want locked", err)
	} else if err.Error() != "the key is locked; ask the power company to reset it" {
		t.Fatalf("message %q", err)
	}
	if _, err := ResetToken(ctx, tok, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Check(ctx); err != nil {
		t.Fatalf("after reset: %v", err)
	}

	// A damaged local mirror locks too (at generation 0), until a reset.
	g = newGuard(t, newFake())
	tok = g.Token.(*fakeObjects)
	if err := os.WriteFile(g.Local.recordPath(g.Serial), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Check(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("damaged mirror: %v, want locked", err)
	}
	if _, err := ResetToken(ctx, tok, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Check(ctx); err != nil {
		t.Fatalf("damaged mirror after reset: %v", err)
	}
}

func TestGuardRefusesWithoutLocalState(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "tokens"), 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "tokens"), 0o700) })
	if os.Geteuid() == 0 {
		// root ignores permissions; make the path unusable instead.
		os.Chmod(filepath.Join(dir, "tokens"), 0o700)
		os.RemoveAll(filepath.Join(dir, "tokens"))
		if err := os.WriteFile(filepath.Join(dir, "tokens"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	g := &Guard{Max: 5, Serial: "S1", Local: l, Token: newFake()}
	_, err = g.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "so the PIN is not tried") || errors.Is(err, ErrLocked) {
		t.Fatalf("Check with an unwritable state dir: %v", err)
	}
}

func TestEventsReportedOnce(t *testing.T) {
	l, err := OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		if _, err := l.RecordFailure("K1", i, false, t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.RecordFailure("K2", 1, false, t0); err != nil {
		t.Fatal(err)
	}
	un, err := l.Unreported("K1")
	if err != nil || len(un) != 2 || un[0].Count != 1 || un[1].Count != 2 {
		t.Fatalf("Unreported(K1) = %+v, %v", un, err)
	}
	if err := l.MarkReported("K1", un[len(un)-1].Seq, t0); err != nil {
		t.Fatal(err)
	}
	if un, _ := l.Unreported("K1"); len(un) != 0 {
		t.Fatalf("after marking: %+v", un)
	}
	if un, _ := l.Unreported("K2"); len(un) != 1 {
		t.Fatalf("K2 events were marked with K1's: %+v", un)
	}
	e, err := l.RecordFailure("K1", 3, false, t0)
	if err != nil {
		t.Fatal(err)
	}
	if un, _ := l.Unreported("K1"); len(un) != 1 || un[0].Seq != e.Seq {
		t.Fatalf("a new failure after the report: %+v", un)
	}
	b, err := os.ReadFile(filepath.Join(l.Dir(), EventsFile))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != 5 {
		t.Fatalf("log has %d lines, want 5 (append-only)", n)
	}
	fi, err := os.Stat(filepath.Join(l.Dir(), EventsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("log mode %v, %v", fi.Mode(), err)
	}
}

func TestLocalSerialNamesStayInside(t *testing.T) {
	l, err := OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"../../etc/passwd", "..", "a/b", "ser ial"} {
		p := l.recordPath(s)
		if filepath.Dir(p) != filepath.Join(l.Dir(), "tokens") {
			t.Errorf("serial %q maps to %s", s, p)
		}
		if err := l.SetRecord(s, Record{Failures: 1}); err != nil {
			t.Fatal(err)
		}
		if r, err := l.Record(s); err != nil || r.Failures != 1 {
			t.Fatalf("Record(%q) = %+v, %v", s, r, err)
		}
	}
}

func TestExpandHome(t *testing.T) {
	t.Setenv("HOME", "/home/alice")
	for in, want := range map[string]string{
		"~/.local/state/gridpay": "/home/alice/.local/state/gridpay",
		"~":                      "/home/alice",
		"/var/lib/x":             "/var/lib/x",
		"~bob/x":                 "~bob/x",
	} {
		if got, err := ExpandHome(in); err != nil || got != want {
			t.Errorf("ExpandHome(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

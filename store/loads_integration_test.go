//go:build integration

package store

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var loadAt = time.Date(2026, 3, 1, 8, 30, 0, 0, time.UTC)

func newLoad(token string, seq uint64) NewLoad {
	id := fmt.Sprintf("load-%s-%d", token, seq)
	nl := NewLoad{LoadID: id, WorkflowID: fmt.Sprintf("load/%s/%d", token, seq), CustomerID: "C100", TokenSerial: token,
		CertSerial: "ab01", Sequence: seq, WalletSequence: seq - 1, WalletBalance: 10000, Amount: 5000,
		RequestSHA256: bytes.Repeat([]byte{byte(seq)}, 32)}
	if seq == 1 {
		nl.WalletBalance = 0
	}
	return nl
}

func allowRec(l Load) LoadAllowRecord {
	return LoadAllowRecord{SHA256: bytes.Repeat([]byte{0xa1}, 32), At: loadAt, ExpiresAt: loadAt.Add(2 * time.Minute),
		NewBalance: l.WalletBalance + l.Amount}
}

func checkLoads(t *testing.T, db *DB) []LoadViolation {
	t.Helper()
	v, err := CheckLoadInvariants(testContext(t), db)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLoadConfirmedPath(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	nl := newLoad("TOK-A", 1)
	l, err := CreateLoad(ctx, db, nl, "wf")
	if err != nil || l.Status != LoadVerified || l.Sequence != 1 || l.Amount != 5000 {
		t.Fatalf("create: %+v %v", l, err)
	}
	// The same request again is a no-op; other content is a conflict.
	if again, err := CreateLoad(ctx, db, nl, "wf"); err != nil || again.ID != l.ID {
		t.Fatalf("create again: %+v %v", again, err)
	}
	other := nl
	other.Amount = 9999
	if _, err := CreateLoad(ctx, db, other, "wf"); !errors.Is(err, ErrConflict) {
		t.Fatalf("same workflow, other amount: %v", err)
	}
	// Another sequence while this one is in flight.
	if _, err := CreateLoad(ctx, db, newLoad("TOK-A", 2), "wf"); !errors.Is(err, ErrLoadPending) {
		t.Fatalf("second load in flight: %v", err)
	}
	// Another token is not held up.
	if _, err := CreateLoad(ctx, db, newLoad("TOK-B", 1), "wf"); err != nil {
		t.Fatalf("another key: %v", err)
	}
	if v := checkLoads(t, db); len(v) != 2 || !v[0].Open || !v[1].Open {
		t.Fatalf("in-flight loads should be open: %v", v)
	}

	// Out-of-order steps are refused.
	if _, err := MarkLoadAllowed(ctx, db, nl.WorkflowID, allowRec(l), "wf"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("allowed before debited: %v", err)
	}
	if _, err := MarkLoadConfirmed(ctx, db, nl.WorkflowID, ConfirmedByReceipt, nil, loadAt, "wf"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("confirmed before allowed: %v", err)
	}
	if l, err = MarkLoadDebited(ctx, db, nl.WorkflowID, nl.LoadID, loadAt, "wf"); err != nil || l.Status != LoadDebited || l.DebitKey != nl.LoadID {
		t.Fatalf("debited: %+v %v", l, err)
	}
	if _, err := MarkLoadDebited(ctx, db, nl.WorkflowID, nl.LoadID, loadAt.Add(time.Second), "wf"); err != nil {
		t.Fatalf("debited again: %v", err)
	}
	if _, err := MarkLoadDebited(ctx, db, nl.WorkflowID, "other-key", loadAt, "wf"); !errors.Is(err, ErrConflict) {
		t.Fatalf("debited under another key: %v", err)
	}
	if _, err := MarkLoadRejected(ctx, db, nl.WorkflowID, "late", "wf"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("debited → rejected: %v", err)
	}
	bad := allowRec(l)
	bad.NewBalance++
	if _, err := MarkLoadAllowed(ctx, db, nl.WorkflowID, bad, "wf"); !errors.Is(err, ErrConflict) {
		t.Fatalf("allow with a wrong balance: %v", err)
	}
	if l, err = MarkLoadAllowed(ctx, db, nl.WorkflowID, allowRec(l), "wf"); err != nil || l.Status != LoadAllowed || *l.NewBalance != 5000 ||
		!l.AllowExpiresAt.Equal(loadAt.Add(2*time.Minute)) {
		t.Fatalf("allowed: %+v %v", l, err)
	}
	if _, err := MarkLoadAllowed(ctx, db, nl.WorkflowID, allowRec(l), "wf"); err != nil {
		t.Fatalf("allowed again: %v", err)
	}
	otherAllow := allowRec(l)
	otherAllow.SHA256 = bytes.Repeat([]byte{0xa2}, 32)
	if _, err := MarkLoadAllowed(ctx, db, nl.WorkflowID, otherAllow, "wf"); !errors.Is(err, ErrConflict) {
		t.Fatalf("another allow: %v", err)
	}
	report := bytes.Repeat([]byte{0xc0}, 32)
	if l, err = MarkLoadConfirmed(ctx, db, nl.WorkflowID, ConfirmedByReceipt, report, loadAt.Add(time.Minute), "wf"); err != nil ||
		l.Status != LoadConfirmed || l.ConfirmedBy != ConfirmedByReceipt || !bytes.Equal(l.ReportSHA256, report) {
		t.Fatalf("confirmed: %+v %v", l, err)
	}
	if _, err := MarkLoadConfirmed(ctx, db, nl.WorkflowID, ConfirmedByContact, nil, loadAt, "wf"); err != nil {
		t.Fatalf("confirmed again: %v", err)
	}
	// Confirmed → refunded is the one thing that must never happen.
	if _, err := MarkLoadRefunded(ctx, db, nl.WorkflowID, nl.LoadID+":refund", "no", loadAt, "wf"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("confirmed → refunded: %v", err)
	}
	want := []string{"load.verified:ok", "load.debited:ok", "load.allowed:ok", "load.confirmed:ok"}
	if got := auditActions(t, db, nl.WorkflowID); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("audit %v, want %v", got, want)
	}

	// The next load of the key may start now, and the key's sequence is
	// remembered.
	if _, err := CreateLoad(ctx, db, newLoad("TOK-A", 2), "wf"); err != nil {
		t.Fatalf("next load: %v", err)
	}
	if _, err := CreateLoad(ctx, db, NewLoad{LoadID: "load-TOK-A-1x", WorkflowID: "load/TOK-A/1x", CustomerID: "C100", TokenSerial: "TOK-A",
		CertSerial: "ab01", Sequence: 1, Amount: 1, RequestSHA256: make([]byte, 32)}, "wf"); !errors.Is(err, ErrSequenceUsed) {
		t.Fatalf("a used sequence: %v", err)
	}
	last, err := LastConfirmedLoad(ctx, db, "TOK-A")
	if err != nil || last.Sequence != 1 {
		t.Fatalf("last confirmed: %+v %v", last, err)
	}
	if n, err := MaxLoadSequence(ctx, db, "TOK-A"); err != nil || n != 2 {
		t.Fatalf("max sequence %d %v", n, err)
	}
	if _, err := LastConfirmedLoad(ctx, db, "TOK-B"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no confirmed load: %v", err)
	}
	open, err := OpenLoads(ctx, db, "TOK-A")
	if err != nil || len(open) != 1 || open[0].Sequence != 2 {
		t.Fatalf("open loads %+v %v", open, err)
	}
	if got, err := LoadByLoadID(ctx, db, nl.LoadID); err != nil || got.ID != l.ID {
		t.Fatalf("by load ID: %+v %v", got, err)
	}
	if got, err := LoadsForCustomer(ctx, db, "C100", 0); err != nil || len(got) != 3 {
		t.Fatalf("for customer: %d %v", len(got), err)
	}
	if _, err := db.VerifyAudit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRefundAndRejectPaths(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	// Allowed, then refunded: the key did not take it.
	nl := newLoad("TOK-R", 1)
	l, _ := CreateLoad(ctx, db, nl, "wf")
	MarkLoadDebited(ctx, db, nl.WorkflowID, nl.LoadID, loadAt, "wf")
	if _, err := MarkLoadAllowed(ctx, db, nl.WorkflowID, allowRec(l), "wf"); err != nil {
		t.Fatal(err)
	}
	refundKey := nl.LoadID + ":refund"
	if l, err := MarkLoadRefunded(ctx, db, nl.WorkflowID, refundKey, "the allow expired unused", loadAt.Add(5*time.Minute), "wf"); err != nil ||
		l.Status != LoadRefunded || l.Reason != "the allow expired unused" {
		t.Fatalf("refunded: %+v %v", l, err)
	}
	if _, err := MarkLoadRefunded(ctx, db, nl.WorkflowID, refundKey, "again", loadAt, "wf"); err != nil {
		t.Fatalf("refunded again: %v", err)
	}
	if _, err := MarkLoadRefunded(ctx, db, nl.WorkflowID, "another", "x", loadAt, "wf"); !errors.Is(err, ErrConflict) {
		t.Fatalf("refunded under another key: %v", err)
	}
	if _, err := MarkLoadConfirmed(ctx, db, nl.WorkflowID, ConfirmedByContact, nil, loadAt, "wf"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("refunded → confirmed: %v", err)
	}

	// Debited but never allowed (the HSM could not sign): refunded.
	n2 := newLoad("TOK-R", 2)
	CreateLoad(ctx, db, n2, "wf")
	MarkLoadDebited(ctx, db, n2.WorkflowID, n2.LoadID, loadAt, "wf")
	if l, err := MarkLoadRefunded(ctx, db, n2.WorkflowID, n2.LoadID+":refund", "not signed", loadAt, "wf"); err != nil || l.AllowedAt != nil {
		t.Fatalf("refund before the allow: %+v %v", l, err)
	}

	// The platform refused the debit: rejected, nothing moved.
	n3 := newLoad("TOK-R", 3)
	CreateLoad(ctx, db, n3, "wf")
	if l, err := MarkLoadRejected(ctx, db, n3.WorkflowID, "insufficient funds", "wf"); err != nil || l.Status != LoadRejected {
		t.Fatalf("rejected: %+v %v", l, err)
	}
	if _, err := MarkLoadDebited(ctx, db, n3.WorkflowID, n3.LoadID, loadAt, "wf"); !errors.Is(err, ErrIllegalTransition) {
		t.Fatalf("rejected → debited: %v", err)
	}
	if v := checkLoads(t, db); len(v) != 0 {
		t.Fatalf("invariants: %v", v)
	}
	tot, err := SumLoads(ctx, db)
	if err != nil || tot.Loads != 3 || tot.Debited != 10000 || tot.Refunded != 10000 || tot.Confirmed != 0 || tot.InFlight != 0 {
		t.Fatalf("totals %+v %v", tot, err)
	}
}

// The table refuses rows that break the money invariant, whoever writes
// them, and the checker catches what only the audit log can tell.
func TestLoadInvariantsEnforced(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	nl := newLoad("TOK-I", 1)
	l, _ := CreateLoad(ctx, db, nl, "wf")
	MarkLoadDebited(ctx, db, nl.WorkflowID, nl.LoadID, loadAt, "wf")
	MarkLoadAllowed(ctx, db, nl.WorkflowID, allowRec(l), "wf")
	MarkLoadConfirmed(ctx, db, nl.WorkflowID, ConfirmedByReceipt, nil, loadAt, "wf")

	for name, sql := range map[string]string{
		"confirmed and refunded":  `UPDATE loads SET refund_key = 'x', refunded_at = now() WHERE workflow_id = $1`,
		"confirmed without debit": `UPDATE loads SET debit_key = NULL, debited_at = NULL WHERE workflow_id = $1`,
		"wrong new balance":       `UPDATE loads SET new_balance = new_balance + 1 WHERE workflow_id = $1`,
		"status without its time": `UPDATE loads SET status = 'refunded' WHERE workflow_id = $1`,
	} {
		if _, err := db.Exec(ctx, sql, nl.WorkflowID); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A second refund entry in the audit log (money given back twice).
	if _, err := AppendAudit(ctx, db, AuditRecord{Actor: "someone", Action: "load.refunded", Subject: nl.WorkflowID, Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	v := checkLoads(t, db)
	if len(v) == 0 || v[0].Open || !strings.Contains(v[0].String(), "both a confirmation and a refund") {
		t.Fatalf("violations %v", v)
	}
}

// Ten loads of one key asked at once: exactly one goes through, the others
// are told a load is in flight.
func TestLoadOneInFlightPerKey(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() { _, errs[i] = CreateLoad(ctx, db, newLoad("TOK-C", uint64(i+1)), "wf") })
	}
	wg.Wait()
	ok, pending := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrLoadPending):
			var pe *PendingLoadError
			if !errors.As(err, &pe) || pe.Load.TokenSerial != "TOK-C" {
				t.Fatalf("pending error without the load: %v", err)
			}
			pending++
		default:
			t.Fatalf("unexpected: %v", err)
		}
	}
	if ok != 1 || pending != 9 {
		t.Fatalf("%d created, %d pending", ok, pending)
	}
}

// An operator's confirmation (a lost key's load) is recorded as such, and
// ListLoads finds the open loads operators look for.
func TestLoadOperatorConfirmationAndList(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	allowed := func(nl NewLoad) Load {
		t.Helper()
		l, err := CreateLoad(ctx, db, nl, "wf")
		if err == nil {
			l, err = MarkLoadDebited(ctx, db, nl.WorkflowID, nl.LoadID, loadAt, "wf")
		}
		if err == nil {
			l, err = MarkLoadAllowed(ctx, db, nl.WorkflowID, allowRec(l), "wf")
		}
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, b := allowed(newLoad("TOK-A", 1)), allowed(newLoad("TOK-B", 1))
	other := newLoad("TOK-C", 1)
	other.CustomerID = "C200"
	allowed(other)
	if _, err := MarkLoadConfirmed(ctx, db, a.WorkflowID, "guess", nil, loadAt, "ops"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("confirmed by a guess: %v", err)
	}
	l, err := MarkLoadConfirmed(ctx, db, a.WorkflowID, ConfirmedByOperator, nil, loadAt.Add(time.Hour), "wf")
	if err != nil || l.Status != LoadConfirmed || l.ConfirmedBy != ConfirmedByOperator {
		t.Fatalf("operator confirmation: %+v %v", l, err)
	}
	for _, c := range []struct {
		f    LoadFilter
		want []string
	}{
		{LoadFilter{}, []string{"load-TOK-C-1", "load-TOK-B-1", "load-TOK-A-1"}},
		{LoadFilter{CustomerID: "C100"}, []string{"load-TOK-B-1", "load-TOK-A-1"}},
		{LoadFilter{CustomerID: "C100", OpenOnly: true}, []string{b.LoadID}},
		{LoadFilter{TokenSerial: "TOK-A"}, []string{a.LoadID}},
		{LoadFilter{TokenSerial: "TOK-A", OpenOnly: true}, nil},
		{LoadFilter{Limit: 1}, []string{"load-TOK-C-1"}},
	} {
		got, err := ListLoads(ctx, db, c.f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, l := range got {
			ids = append(ids, l.LoadID)
		}
		if fmt.Sprint(ids) != fmt.Sprint(c.want) {
			t.Errorf("ListLoads(%+v) = %v, want %v", c.f, ids, c.want)
		}
	}
	if v := checkLoads(t, db); len(v) != 2 {
		t.Fatalf("violations %v: want the two loads still open", v)
	}
}

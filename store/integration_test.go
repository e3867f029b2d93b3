//go:build integration

package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gridpay/gridpay/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := testenv.StopPostgresForTest(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newDB opens a fresh, empty database.
func newDB(t *testing.T) *DB {
	t.Helper()
	dsn := testenv.NewDatabase(t)
	db, err := Open(testContext(t), dsn, Options{ApplicationName: "store-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// migratedDB opens a fresh database with every migration applied.
func migratedDB(t *testing.T) *DB {
	t.Helper()
	db := newDB(t)
	if _, err := db.Migrate(testContext(t)); err != nil {
		t.Fatal(err)
	}
	return db
}

func ids(ms []Migration) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID())
	}
	return out
}

func TestOpenSessionSettings(t *testing.T) {
	ctx := testContext(t)
	db := newDB(t)
	var app, timeout, tz string
	err := db.QueryRow(ctx, `SELECT current_setting('application_name'), current_setting('statement_timeout'), current_setting('TimeZone')`).
		Scan(&app, &timeout, &tz)
	if err != nil {
		t.Fatal(err)
	}
	if app != "store-test" || timeout != "30s" || tz != "UTC" {
		t.Errorf("session: application_name=%q statement_timeout=%q TimeZone=%q", app, timeout, tz)
	}
	if _, err := Open(ctx, "postgres://nobody@127.0.0.1:1/x?sslmode=disable", Options{ConnectTimeout: time.Second}); err == nil {
		t.Error("Open of an unreachable server succeeded")
	}
}

func TestMigrateFromEmpty(t *testing.T) {
	ctx := testContext(t)
	db := newDB(t)
	want := ids(db.Migrations())

	err := db.CheckSchema(ctx)
	if !errors.Is(err, ErrSchemaBehind) {
		t.Fatalf("CheckSchema on an empty database = %v, want ErrSchemaBehind", err)
	}
	if !strings.Contains(err.Error(), `migration 0001_certificates not applied; run "adminctl db migrate"`) {
		t.Errorf("CheckSchema message does not name the first migration: %v", err)
	}
	var exists bool
	db.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists)
	if exists {
		t.Error("CheckSchema created schema_migrations; checking must not change the database")
	}

	applied, err := db.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(applied), want) {
		t.Errorf("Migrate applied %v, want %v", ids(applied), want)
	}
	again, err := db.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Errorf("second Migrate = %v, %v; want nothing applied", ids(again), err)
	}
	if err := db.CheckSchema(ctx); err != nil {
		t.Errorf("CheckSchema after Migrate: %v", err)
	}

	st, err := db.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if !s.Applied || s.AppliedAt.IsZero() || s.AppliedAt.Location() != time.UTC {
			t.Errorf("Status %s: applied=%v at %v", s.ID(), s.Applied, s.AppliedAt)
		}
	}
	var rows []string
	r, _ := db.Query(ctx, `SELECT version || ':' || name || ':' || checksum FROM schema_migrations ORDER BY version`)
	rows, err = pgx.CollectRows(r, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range db.Migrations() {
		if want := fmt.Sprintf("%d:%s:%s", m.Version, m.Name, m.Checksum); i >= len(rows) || rows[i] != want {
			t.Errorf("schema_migrations row %d = %v, want %s", i, rows, want)
		}
	}
}

func TestCheckSchemaBehindNamesFirstMissing(t *testing.T) {
	ctx := testContext(t)
	db := newDB(t)
	all := db.migrations
	db.migrations = all[:1] // an older binary that knows only 0001
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := db.Status(ctx)
	if err != nil || len(st) != 1 || !st[0].Applied {
		t.Fatalf("old binary Status = %+v, %v", st, err)
	}

	db.migrations = all
	err = db.CheckSchema(ctx)
	want := `database schema is behind: migration 0002_audit not applied; run "adminctl db migrate"`
	if !errors.Is(err, ErrSchemaBehind) || !strings.Contains(err.Error(), want) {
		t.Errorf("CheckSchema = %v, want %s", err, want)
	}
	st, err = db.Status(ctx)
	if err != nil || !st[0].Applied || st[1].Applied {
		t.Errorf("Status = %+v, %v; want 0001 applied, 0002 pending", st, err)
	}
	applied, err := db.Migrate(ctx)
	if err != nil || !slices.Equal(ids(applied), ids(all[1:])) {
		t.Errorf("Migrate = %v, %v; want %v", ids(applied), err, ids(all[1:]))
	}
}

func TestCheckSchemaAhead(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	next := len(db.migrations) + 1
	if _, err := db.Exec(ctx, `INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, 'wallets', 'x')`, next); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("%04d_wallets", next)
	err := db.CheckSchema(ctx)
	var se *SchemaError
	if !errors.Is(err, ErrSchemaAhead) || !errors.As(err, &se) || se.Migration != name || !strings.Contains(err.Error(), name) {
		t.Errorf("CheckSchema = %v, want ErrSchemaAhead naming %s", err, name)
	}
	if _, err := db.Migrate(ctx); !errors.Is(err, ErrSchemaAhead) {
		t.Errorf("Migrate on a newer schema = %v, want ErrSchemaAhead", err)
	}
}

func TestMigrationChanged(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	if _, err := db.Exec(ctx, `UPDATE schema_migrations SET checksum = 'edited' WHERE version = 2`); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"CheckSchema": func() error { return db.CheckSchema(ctx) },
		"Migrate":     func() error { _, err := db.Migrate(ctx); return err },
	} {
		err := f()
		if !errors.Is(err, ErrMigrationChanged) || !strings.Contains(err.Error(), "0002_audit") {
			t.Errorf("%s = %v, want ErrMigrationChanged naming 0002_audit", name, err)
		}
	}
}

func TestMigrationFailureRollsBack(t *testing.T) {
	ctx := testContext(t)
	db := newDB(t)
	db.migrations = append(slices.Clone(db.migrations), Migration{
		Version: len(db.migrations) + 1, Name: "broken",
		SQL: "CREATE TABLE half_done (id int); SELECT 1/0;", Checksum: "b",
	})
	applied, err := db.Migrate(ctx)
	if err == nil || !strings.Contains(err.Error(), "_broken") {
		t.Fatalf("Migrate = %v, want an error naming the broken migration", err)
	}
	if len(applied) != len(db.migrations)-1 {
		t.Errorf("applied %v before the failure", ids(applied))
	}
	var exists bool
	db.QueryRow(ctx, `SELECT to_regclass('half_done') IS NOT NULL`).Scan(&exists)
	var n int
	db.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n)
	if exists || n != len(db.migrations)-1 {
		t.Errorf("after the failure: half_done exists=%v, %d rows in schema_migrations", exists, n)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	ctx := testContext(t)
	dsn := testenv.NewDatabase(t)
	const n = 4
	var (
		wg    sync.WaitGroup
		total atomic.Int32
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate pools: as separate processes would.
			db, err := Open(ctx, dsn, Options{})
			if err != nil {
				errs[i] = err
				return
			}
			defer db.Close()
			applied, err := db.Migrate(ctx)
			total.Add(int32(len(applied)))
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	want, _ := embeddedMigrations()
	if int(total.Load()) != len(want) {
		t.Errorf("%d migrations applied in all, want each of %d exactly once", total.Load(), len(want))
	}
}

func TestTransactRetriesSerializationFailure(t *testing.T) {
	ctx := testContext(t)
	db := newDB(t)
	if _, err := db.Exec(ctx, `CREATE TABLE duty (who int, seen int)`); err != nil {
		t.Fatal(err)
	}
	// Classic write skew: each transaction counts the rows, then adds one.
	// Run serially they would see 0 and 1; interleaved they both see 0,
	// which serializable isolation must refuse for one of them.
	var (
		attempts [2]atomic.Int32
		bothRead sync.WaitGroup
		wg       sync.WaitGroup
		errs     [2]error
	)
	bothRead.Add(2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Transact(ctx, TxOptions{}, func(tx pgx.Tx) error {
				first := attempts[i].Add(1) == 1
				var seen int
				err := tx.QueryRow(ctx, `SELECT count(*) FROM duty`).Scan(&seen)
				if first {
					bothRead.Done()
					bothRead.Wait()
				}
				if err != nil {
					return err
				}
				_, err = tx.Exec(ctx, `INSERT INTO duty VALUES ($1, $2)`, i, seen)
				return err
			})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatalf("Transact: %v", err)
	}
	if got := attempts[0].Load() + attempts[1].Load(); got != 3 {
		t.Errorf("%d attempts in all, want 3 (one serialization failure retried)", got)
	}
	rows, _ := db.Query(ctx, `SELECT seen FROM duty ORDER BY seen`)
	seen, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil || !slices.Equal(seen, []int{0, 1}) {
		t.Errorf("rows saw %v (%v), want [0 1] as in a serial order", seen, err)
	}
}

func TestTransactRetriesDeadlock(t *testing.T) {
	ctx := testContext(t)
	db := newDB(t)
	if _, err := db.Exec(ctx, `CREATE TABLE acct (id int PRIMARY KEY, n int); INSERT INTO acct VALUES (1, 0), (2, 0)`); err != nil {
		t.Fatal(err)
	}
	var (
		attempts atomic.Int32
		locked   sync.WaitGroup
		wg       sync.WaitGroup
		errs     [2]error
	)
	locked.Add(2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first, second := 1, 2
			if i == 1 {
				first, second = 2, 1
			}
			var tried atomic.Bool
			errs[i] = db.Transact(ctx, TxOptions{Isolation: pgx.ReadCommitted}, func(tx pgx.Tx) error {
				attempts.Add(1)
				if _, err := tx.Exec(ctx, `SET LOCAL deadlock_timeout = '50ms'`); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `UPDATE acct SET n = n + 1 WHERE id = $1`, first)
				if !tried.Swap(true) {
					locked.Done()
					locked.Wait()
				}
				if err != nil {
					return err
				}
				_, err = tx.Exec(ctx, `UPDATE acct SET n = n + 1 WHERE id = $1`, second)
				return err
			})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatalf("Transact: %v", err)
	}
	if got := attempts.Load(); got != 3 {
		t.Errorf("%d attempts, want 3 (one deadlock victim retried)", got)
	}
	var sum int
	db.QueryRow(ctx, `SELECT sum(n) FROM acct`).Scan(&sum)
	if sum != 4 {
		t.Errorf("sum = %d, want 4: both transactions committed exactly once", sum)
	}
}

func TestTransactErrors(t *testing.T) {
	ctx := testContext(t)
	db := newDB(t)
	if _, err := db.Exec(ctx, `CREATE TABLE t (v int)`); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		var n int
		db.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n)
		return n
	}

	// A closure error is returned as it is, once, and rolls back.
	errBusiness := errors.New("bill already settled")
	calls := 0
	err := db.Transact(ctx, TxOptions{}, func(tx pgx.Tx) error {
		calls++
		tx.Exec(ctx, `INSERT INTO t VALUES (1)`)
		return errBusiness
	})
	if err != errBusiness || calls != 1 || count() != 0 {
		t.Errorf("closure error: err=%v calls=%d rows=%d; want it unchanged, 1 call, 0 rows", err, calls, count())
	}

	err = db.Transact(ctx, TxOptions{ReadOnly: true}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO t VALUES (1)`)
		return err
	})
	if sqlState(err) != "25006" { // read_only_sql_transaction
		t.Errorf("insert in a read-only transaction: %v", err)
	}

	// A retryable error that keeps coming is given up after MaxAttempts.
	calls = 0
	err = db.Transact(ctx, TxOptions{MaxAttempts: 3}, func(tx pgx.Tx) error {
		calls++
		tx.Exec(ctx, `INSERT INTO t VALUES (1)`)
		_, err := tx.Exec(ctx, `DO $$ BEGIN RAISE EXCEPTION 'forced' USING ERRCODE = 'serialization_failure'; END $$`)
		return err
	})
	if !errors.Is(err, ErrRetriesExhausted) || sqlState(err) != "40001" || calls != 3 || count() != 0 {
		t.Errorf("persistent 40001: err=%v calls=%d rows=%d", err, calls, count())
	}

	// A panic rolls back and propagates.
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic did not propagate")
			}
		}()
		db.Transact(ctx, TxOptions{}, func(tx pgx.Tx) error {
			tx.Exec(ctx, `INSERT INTO t VALUES (1)`)
			panic("boom")
		})
	}()
	if count() != 0 {
		t.Error("panicking transaction was committed")
	}

	// And a good one commits.
	if err := db.Transact(ctx, TxOptions{}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO t VALUES (1)`)
		return err
	}); err != nil || count() != 1 {
		t.Errorf("commit: err=%v rows=%d", err, count())
	}
}

func testCert(serial, issuer, customer, token string, der string) *Certificate {
	nb := time.Date(2025, 1, 1, 0, 0, 0, 0, time.FixedZone("CST", 8*3600))
	return &Certificate{
		Serial: serial, Issuer: issuer, Subject: "CN=" + serial, CustomerID: customer, TokenSerial: token,
		Kind: KindCustomer, NotBefore: nb, NotAfter: nb.AddDate(2, 0, 0), DER: []byte(der),
	}
}

func TestCertificates(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)

	a := testCert("0a01", "ca1", "C001", "TOK-1", "der-a")
	b := testCert("0b02", "ca1", "C001", "", "der-b")
	c := testCert("0c03", "ca2", "", "TOK-1", "der-c")
	c.Kind = KindServer
	for _, cert := range []*Certificate{a, b, c} {
		if err := InsertCertificate(ctx, db, cert); err != nil {
			t.Fatal(err)
		}
	}
	if a.CreatedAt.IsZero() || a.SHA256[0] == 0 && a.SHA256[1] == 0 {
		t.Errorf("InsertCertificate did not fill in CreatedAt/SHA256: %+v", a)
	}

	got, err := GetCertificate(ctx, db, "0a01")
	if err != nil {
		t.Fatal(err)
	}
	if got.Serial != "0a01" || got.Issuer != "ca1" || got.CustomerID != "C001" || got.TokenSerial != "TOK-1" ||
		got.Kind != KindCustomer || string(got.DER) != "der-a" || got.SHA256 != a.SHA256 ||
		!got.NotBefore.Equal(a.NotBefore) || got.NotBefore.Location() != time.UTC || !got.NotAfter.Equal(a.NotAfter) {
		t.Errorf("GetCertificate = %+v, want %+v", got, a)
	}
	if got, _ := GetCertificate(ctx, db, "0b02"); got.TokenSerial != "" {
		t.Errorf("empty token serial came back as %q", got.TokenSerial)
	}
	if _, err := GetCertificate(ctx, db, "ffff"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetCertificate(unknown) = %v, want ErrNotFound", err)
	}

	// Idempotent insert; conflicting insert.
	if err := InsertCertificate(ctx, db, testCert("0a01", "ca1", "C001", "TOK-1", "der-a")); err != nil {
		t.Errorf("re-inserting the same certificate: %v", err)
	}
	if err := InsertCertificate(ctx, db, testCert("0a01", "ca1", "C001", "TOK-1", "der-other")); !errors.Is(err, ErrConflict) {
		t.Errorf("different certificate under the same serial: %v, want ErrConflict", err)
	}
	for _, bad := range []*Certificate{
		testCert("0A01", "ca1", "", "", "x"),
		testCert("0x01", "ca1", "", "", "x"),
		testCert("0d04", "", "", "", "x"),
		testCert("0d04", "ca1", "", "", ""),
	} {
		if err := InsertCertificate(ctx, db, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("InsertCertificate(%+v) = %v, want ErrInvalid", bad, err)
		}
	}

	serials := func(cs []Certificate, err error) []string {
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range cs {
			out = append(out, c.Serial)
		}
		return out
	}
	if got := serials(CertificatesForCustomer(ctx, db, "C001")); !slices.Equal(got, []string{"0a01", "0b02"}) {
		t.Errorf("CertificatesForCustomer = %v", got)
	}
	if got := serials(CertificatesForToken(ctx, db, "TOK-1")); !slices.Equal(got, []string{"0a01", "0c03"}) {
		t.Errorf("CertificatesForToken = %v", got)
	}
	if got := serials(CertificatesForCustomer(ctx, db, "nobody")); len(got) != 0 {
		t.Errorf("CertificatesForCustomer(nobody) = %v", got)
	}

	// Revocation.
	if revoked, err := IsRevoked(ctx, db, "0a01"); err != nil || revoked {
		t.Errorf("IsRevoked before = %v, %v", revoked, err)
	}
	if _, err := IsRevoked(ctx, db, "ffff"); !errors.Is(err, ErrNotFound) {
		t.Errorf("IsRevoked(unknown) = %v, want ErrNotFound", err)
	}
	at := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	if _, _, err := RevokeCertificate(ctx, db, Revocation{Serial: "ffff", Reason: ReasonKeyCompromise, RevokedAt: at, RevokedBy: "op"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking an unknown serial: %v, want ErrNotFound", err)
	}
	if _, _, err := RevokeCertificate(ctx, db, Revocation{Serial: "0a01", Reason: 7, RevokedAt: at, RevokedBy: "op"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("reason 7: %v, want ErrInvalid", err)
	}
	first := Revocation{Serial: "0a01", Reason: ReasonKeyCompromise, RevokedAt: at, RevokedBy: "op:li", Note: "lost"}
	rev, now, err := RevokeCertificate(ctx, db, first)
	if err != nil || !now || rev != first {
		t.Errorf("RevokeCertificate = %+v, %v, %v; want %+v, true", rev, now, err, first)
	}
	again := Revocation{Serial: "0a01", Reason: ReasonSuperseded, RevokedAt: at.Add(time.Hour), RevokedBy: "op:wang"}
	rev, now, err = RevokeCertificate(ctx, db, again)
	if err != nil || now || rev != first {
		t.Errorf("revoking again = %+v, %v, %v; want the first revocation unchanged, false", rev, now, err)
	}
	if revoked, err := IsRevoked(ctx, db, "0a01"); err != nil || !revoked {
		t.Errorf("IsRevoked after = %v, %v", revoked, err)
	}
	if _, err := GetRevocation(ctx, db, "0b02"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetRevocation(not revoked) = %v", err)
	}

	// Concurrent revocations of one certificate: exactly one wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, now, err := RevokeCertificate(ctx, db, Revocation{Serial: "0c03", Reason: ReasonCessationOfOperation, RevokedAt: at, RevokedBy: fmt.Sprint("op", i)})
			if err != nil {
				t.Error(err)
			}
			if now {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d concurrent revocations reported revokedNow, want 1", wins.Load())
	}

	revs, err := Revocations(ctx, db, "ca1")
	if err != nil || len(revs) != 1 || revs[0] != first {
		t.Errorf("Revocations(ca1) = %+v, %v; want just %+v", revs, err, first)
	}
	revs, err = Revocations(ctx, db, "ca2")
	if err != nil || len(revs) != 1 || revs[0].Serial != "0c03" || revs[0].Reason != ReasonCessationOfOperation {
		t.Errorf("Revocations(ca2) = %+v, %v", revs, err)
	}
	if revs, err := Revocations(ctx, db, "nobody"); err != nil || len(revs) != 0 {
		t.Errorf("Revocations(nobody) = %+v, %v", revs, err)
	}

	// Inside a transaction that rolls back, a revocation leaves no trace.
	errUndo := errors.New("undo")
	err = db.Transact(ctx, TxOptions{}, func(tx pgx.Tx) error {
		if _, _, err := RevokeCertificate(ctx, tx, Revocation{Serial: "0b02", Reason: ReasonUnspecified, RevokedAt: at, RevokedBy: "op"}); err != nil {
			return err
		}
		return errUndo
	})
	if revoked, _ := IsRevoked(ctx, db, "0b02"); err != errUndo || revoked {
		t.Errorf("rolled back revocation: err=%v revoked=%v", err, revoked)
	}
}

func TestCRLState(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)

	if _, err := LatestCRL(ctx, db, "ca1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LatestCRL before any = %v, want ErrNotFound", err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		nums []int64
	)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := NextCRLNumber(ctx, db, "ca1")
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			nums = append(nums, n)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(nums)
	if !slices.Equal(nums, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Errorf("concurrent NextCRLNumber gave %v, want 1..10 once each", nums)
	}
	if n, err := NextCRLNumber(ctx, db, "ca2"); err != nil || n != 1 {
		t.Errorf("first number of another issuer = %d, %v", n, err)
	}

	this := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	crl := &CRL{Issuer: "ca1", Number: 9, DER: []byte("crl9"), ThisUpdate: this, NextUpdate: this.Add(24 * time.Hour)}
	if err := SaveCRL(ctx, db, crl); err != nil {
		t.Fatal(err)
	}
	if err := SaveCRL(ctx, db, &CRL{Issuer: "ca1", Number: 8, DER: []byte("crl8"), ThisUpdate: this, NextUpdate: this.Add(time.Hour)}); !errors.Is(err, ErrStaleCRL) {
		t.Errorf("saving an older CRL = %v, want ErrStaleCRL", err)
	}
	if err := SaveCRL(ctx, db, &CRL{Issuer: "ca1", Number: 11, DER: []byte("x"), ThisUpdate: this, NextUpdate: this.Add(time.Hour)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("saving a number never handed out = %v, want ErrInvalid", err)
	}
	if err := SaveCRL(ctx, db, &CRL{Issuer: "ca9", Number: 1, DER: []byte("x"), ThisUpdate: this, NextUpdate: this.Add(time.Hour)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("saving for an issuer without numbers = %v, want ErrInvalid", err)
	}
	got, err := LatestCRL(ctx, db, "ca1")
	if err != nil || got.Number != 9 || string(got.DER) != "crl9" || !got.ThisUpdate.Equal(this) || got.SavedAt.IsZero() {
		t.Errorf("LatestCRL = %+v, %v", got, err)
	}
	// A retried publication of the same number replaces it.
	if err := SaveCRL(ctx, db, &CRL{Issuer: "ca1", Number: 10, DER: []byte("crl10"), ThisUpdate: this, NextUpdate: this.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := LatestCRL(ctx, db, "ca1"); got.Number != 10 || string(got.DER) != "crl10" {
		t.Errorf("LatestCRL after newer = %+v", got)
	}
}

// appendN appends n audit records from workers goroutines.
func appendN(t *testing.T, db *DB, n, workers int) {
	t.Helper()
	ctx := testContext(t)
	var (
		wg   sync.WaitGroup
		next atomic.Int32
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int32(n) {
					return
				}
				_, err := AppendAudit(ctx, db, AuditRecord{
					Actor:   fmt.Sprintf("worker-%d", w),
					Action:  "certificate.issue",
					Subject: fmt.Sprintf("%04x", i),
					Outcome: OutcomeOK,
					Detail: map[string]any{
						"i": i, "customer_id": "C001", "amount_fen": int64(1234500),
						"note": "含中文 and \"quotes\"\n<&>", "nested": map[string]any{"list": []any{1, "two", nil, true}},
					},
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func verifyOK(t *testing.T, db *DB, want int64) {
	t.Helper()
	rep, err := db.VerifyAudit(testContext(t))
	if err != nil || !rep.OK() || rep.Checked != want || rep.HeadSeq != want {
		t.Fatalf("VerifyAudit = %+v, %v; want %d rows verified", rep, err, want)
	}
}

func TestAuditConcurrentAppend(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	verifyOK(t, db, 0) // an empty log verifies

	appendN(t, db, 50, 5)
	verifyOK(t, db, 50)

	rows, _ := db.Query(ctx, `SELECT seq FROM audit_log ORDER BY seq`)
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("seqs are not 1..50: %v", seqs)
		}
	}
	if len(seqs) != 50 {
		t.Fatalf("%d rows, want 50", len(seqs))
	}
	var ordered bool
	db.QueryRow(ctx, `SELECT bool_and(at >= prev_at) FROM (SELECT at, lag(at) OVER (ORDER BY seq) AS prev_at FROM audit_log) x WHERE prev_at IS NOT NULL`).Scan(&ordered)
	if !ordered {
		t.Error("at goes backwards along the chain")
	}
}

func TestAuditAppendJoinsTransaction(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	rec := AuditRecord{Actor: "op", Action: "binding.drop", Subject: "TOK-1", Outcome: OutcomeOK, Detail: map[string]any{"reason": "test"}}

	errUndo := errors.New("undo")
	err := db.Transact(ctx, TxOptions{}, func(tx pgx.Tx) error {
		if _, err := AppendAudit(ctx, tx, rec); err != nil {
			return err
		}
		return errUndo
	})
	if err != errUndo {
		t.Fatal(err)
	}
	verifyOK(t, db, 0)

	var e AuditEntry
	err = db.Transact(ctx, TxOptions{}, func(tx pgx.Tx) error {
		var err error
		e, err = AppendAudit(ctx, tx, rec)
		return err
	})
	if err != nil || e.Seq != 1 {
		t.Fatalf("append after a rolled-back one: seq %d, %v; want seq 1 (no gap)", e.Seq, err)
	}
	if h, _ := AuditHash(e); string(h) != string(e.Hash) || len(e.PrevHash) != 32 || e.PrevHash[0] != 0 {
		t.Errorf("returned entry does not hash to its Hash: %+v", e)
	}
	verifyOK(t, db, 1)

	if _, err := AppendAudit(ctx, db, AuditRecord{Actor: "op", Action: "pin.reset", Outcome: OutcomeOK, Detail: map[string]any{"new_pin": "123456"}}); !errors.Is(err, ErrSecretInDetail) || strings.Contains(err.Error(), "123456") {
		t.Errorf("secret in detail: %v", err)
	}
	verifyOK(t, db, 1)
}

func TestAuditAppendOnly(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	appendN(t, db, 3, 1)

	for _, sql := range []string{
		`UPDATE audit_log SET detail = '{"i":99}' WHERE seq = 2`,
		`DELETE FROM audit_log WHERE seq = 3`,
		`TRUNCATE audit_log`,
		`DELETE FROM audit_head`,
		`UPDATE audit_head SET seq = 2`,
		`TRUNCATE audit_head`,
	} {
		_, err := db.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s: err = %v, want refused with SQLSTATE 42501", sql, err)
		}
	}
	verifyOK(t, db, 3)
}

// tamper runs SQL as a superuser DBA would: with the append-only triggers
// switched off for the duration.
func tamper(t *testing.T, db *DB, sql string, args ...any) {
	t.Helper()
	ctx := testContext(t)
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `ALTER TABLE audit_log DISABLE TRIGGER USER`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `ALTER TABLE audit_log ENABLE TRIGGER USER`)
		return err
	})
	if err != nil {
		t.Fatalf("tampering: %v", err)
	}
}

func TestAuditTamperDetected(t *testing.T) {
	const rows = 10
	tests := []struct {
		name    string
		tamper  func(t *testing.T, db *DB)
		badSeq  int64
		problem AuditProblem
	}{
		{"edited detail", func(t *testing.T, db *DB) {
			tamper(t, db, `UPDATE audit_log SET detail = jsonb_set(detail, '{amount_fen}', '1') WHERE seq = 7`)
		}, 7, AuditEdited},
		{"edited actor", func(t *testing.T, db *DB) {
			tamper(t, db, `UPDATE audit_log SET actor = 'someone-else' WHERE seq = 1`)
		}, 1, AuditEdited},
		{"deleted middle row", func(t *testing.T, db *DB) {
			tamper(t, db, `DELETE FROM audit_log WHERE seq = 4`)
		}, 4, AuditGap},
		{"deleted last row", func(t *testing.T, db *DB) {
			tamper(t, db, `DELETE FROM audit_log WHERE seq = $1`, rows)
		}, rows, AuditTruncated},
		{"deleted last rows and head rolled back", func(t *testing.T, db *DB) {
			// Without the head trigger's help, as a thorough DBA would.
			tamper(t, db, `DELETE FROM audit_log WHERE seq > 8`)
			ctx := testContext(t)
			pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
				tx.Exec(ctx, `ALTER TABLE audit_head DISABLE TRIGGER USER`)
				tx.Exec(ctx, `UPDATE audit_head SET seq = 8`)
				_, err := tx.Exec(ctx, `ALTER TABLE audit_head ENABLE TRIGGER USER`)
				return err
			})
		}, 8, AuditHeadMismatch},
		{"inserted forged row", func(t *testing.T, db *DB) {
			// A forger who even computes a valid hash for the new row.
			ctx := testContext(t)
			var last AuditEntry
			db.QueryRow(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&last.Seq, &last.Hash)
			forged := AuditEntry{Seq: last.Seq + 1, At: time.Now().UTC().Truncate(time.Microsecond), Actor: "op", Action: "refund",
				Subject: "P1", Outcome: OutcomeOK, Detail: []byte(`{"amount_fen":100000}`), PrevHash: last.Hash}
			forged.Hash, _ = AuditHash(forged)
			if _, err := db.Exec(ctx, `INSERT INTO audit_log VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
				forged.Seq, forged.At, forged.Actor, forged.Action, forged.Subject, string(forged.Outcome), string(forged.Detail), forged.PrevHash, forged.Hash); err != nil {
				t.Fatal(err)
			}
		}, rows + 1, AuditUnrecorded},
		{"replaced row with recomputed hash", func(t *testing.T, db *DB) {
			ctx := testContext(t)
			var e AuditEntry
			var outcome, detail string
			db.QueryRow(ctx, `SELECT seq, at, actor, action, subject, outcome, detail::text, prev_hash FROM audit_log WHERE seq = 5`).
				Scan(&e.Seq, &e.At, &e.Actor, &e.Action, &e.Subject, &outcome, &detail, &e.PrevHash)
			e.Outcome, e.Detail, e.Subject = Outcome(outcome), []byte(detail), "forged"
			h, _ := AuditHash(e)
			tamper(t, db, `UPDATE audit_log SET subject = 'forged', hash = $1 WHERE seq = 5`, h)
		}, 6, AuditBrokenLink},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := migratedDB(t)
			appendN(t, db, rows, 2)
			verifyOK(t, db, rows)

			tt.tamper(t, db)

			rep, err := db.VerifyAudit(testContext(t))
			var te *AuditTamperedError
			if !errors.Is(err, ErrAuditTampered) || !errors.As(err, &te) {
				t.Fatalf("VerifyAudit after tampering = %+v, %v; want ErrAuditTampered", rep, err)
			}
			if rep.OK() || rep.FirstBadSeq != tt.badSeq || rep.Problem != tt.problem || te.Report.FirstBadSeq != tt.badSeq {
				t.Errorf("report = %+v; want first bad seq %d: %s", rep, tt.badSeq, tt.problem)
			}
			if want := fmt.Sprintf("seq %d:", tt.badSeq); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name seq %d", err, tt.badSeq)
			}
			t.Logf("detected: %v", err)
		})
	}
}

func TestAuditVerifyPages(t *testing.T) {
	// More rows than one page, so the walk crosses page boundaries.
	ctx := testContext(t)
	db := migratedDB(t)
	n := auditPageSize*2 + 3
	// Appending through AppendAudit one by one is the real path but slow
	// for a thousand rows on a small machine; batch them in one
	// transaction instead, which AppendAudit supports.
	err := db.Transact(ctx, TxOptions{}, func(tx pgx.Tx) error {
		for i := range n {
			if _, err := AppendAudit(ctx, tx, AuditRecord{Actor: "bulk", Action: "x", Subject: fmt.Sprint(i), Outcome: OutcomeOK}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	verifyOK(t, db, int64(n))
	tamper(t, db, `UPDATE audit_log SET subject = 'x' WHERE seq = $1`, auditPageSize+1)
	rep, err := db.VerifyAudit(ctx)
	if !errors.Is(err, ErrAuditTampered) || rep.FirstBadSeq != auditPageSize+1 || rep.Checked != auditPageSize {
		t.Errorf("VerifyAudit = %+v, %v", rep, err)
	}
}

// TestHarnessExplicitDir checks the other way of using testenv: a cluster in
// a directory the caller chose, which survives Stop.
func TestHarnessExplicitDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pg")
	start := time.Now()
	pg, err := testenv.StartPostgres(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("StartPostgres took %v", time.Since(start).Round(time.Millisecond))
	defer pg.Stop()
	ctx := testContext(t)
	dsn, err := pg.CreateDatabase(ctx, "harness_check")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pg.CreateDatabase(ctx, "Bad-Name"); err == nil {
		t.Error("CreateDatabase accepted an invalid name")
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var db, fsync string
	conn.QueryRow(ctx, `SELECT current_database(), current_setting('fsync')`).Scan(&db, &fsync)
	conn.Close(ctx)
	if db != "harness_check" || fsync != "off" {
		t.Errorf("connected to %q with fsync=%s", db, fsync)
	}
	if _, err := os.Stat(filepath.Join(dir, "sock", fmt.Sprintf(".s.PGSQL.%d", pg.Port()))); err != nil {
		t.Errorf("unix socket not inside the directory: %v", err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, dsn); err == nil {
		t.Error("server still answers after Stop")
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
		t.Errorf("Stop removed a directory it did not create: %v", err)
	}

	t.Setenv("GRIDPAY_PG_BIN", filepath.Join(t.TempDir(), "nothing-here"))
	if _, err := testenv.StartPostgres(""); err == nil || !strings.Contains(err.Error(), "make deps") {
		t.Errorf("StartPostgres without binaries = %v, want a hint to run make deps", err)
	}
}

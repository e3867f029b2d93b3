package store

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gridpay/gridpay/internal/derrors"
)

// Migration files are embedded at build time, so a binary always knows
// exactly which schema it was written against.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one numbered SQL file, migrations/NNNN_name.up.sql.
type Migration struct {
	Version  int    // NNNN, counting up from 1 without gaps
	Name     string // the part after the number, e.g. "audit"
	SQL      string
	Checksum string // lower-case hex SHA-256 of SQL
}

// ID is how the migration is named in messages: "0002_audit".
func (m Migration) ID() string { return fmt.Sprintf("%04d_%s", m.Version, m.Name) }

// MigrationStatus is one line of Status.
type MigrationStatus struct {
	Migration
	Applied   bool
	AppliedAt time.Time // zero if pending
}

var (
	// ErrSchemaBehind means the database lacks migrations this program
	// needs: run "adminctl db migrate".
	ErrSchemaBehind = errors.New("database schema is behind")
	// ErrSchemaAhead means the database has a migration this program does
	// not know, so it was written for an older schema: upgrade the program.
	ErrSchemaAhead = errors.New("database schema is ahead of this program")
	// ErrMigrationChanged means a migration file was edited after it was
	// applied. Applied migrations are history: add a new one instead.
	ErrMigrationChanged = errors.New("applied migration was changed")
)

// SchemaError says which migration makes the schema unusable. It matches
// ErrSchemaBehind, ErrSchemaAhead or ErrMigrationChanged with errors.Is.
type SchemaError struct {
	Err       error  // one of the sentinels above
	Migration string // e.g. "0002_audit"
	// For ErrMigrationChanged: the checksum recorded in the database and
	// the one of this binary's file.
	AppliedChecksum, FileChecksum string
}

func (e *SchemaError) Error() string {
	switch e.Err {
	case ErrSchemaBehind:
		return fmt.Sprintf("%v: migration %s not applied; run \"adminctl db migrate\"", e.Err, e.Migration)
	case ErrSchemaAhead:
		return fmt.Sprintf("%v: migration %s is applied but unknown to this binary; upgrade the program", e.Err, e.Migration)
	case ErrMigrationChanged:
		return fmt.Sprintf("%v: migration %s has checksum %s in the database but %s in this binary; restore the file and add a new migration instead",
			e.Err, e.Migration, e.AppliedChecksum, e.FileChecksum)
	}
	return fmt.Sprintf("%v: migration %s", e.Err, e.Migration)
}

func (e *SchemaError) Unwrap() error { return e.Err }

var migrationNameRE = regexp.MustCompile(`^([0-9]{4})_([a-z0-9]+(?:_[a-z0-9]+)*)\.(up|down)\.sql$`)

// parseMigrations reads NNNN_name.up.sql files from dir of fsys and returns
// them in order. Versions must run 1, 2, 3… with no gap or duplicate, so that
// "the first missing migration" is well defined and a merge that reuses a
// number fails the build's tests instead of a production start.
// NNNN_name.down.sql files are allowed but not used: Migrate only goes up.
func parseMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range entries {
		name := e.Name()
		m := migrationNameRE.FindStringSubmatch(name)
		if e.IsDir() || m == nil {
			return nil, fmt.Errorf("migration file %q: name must look like 0001_some_name.up.sql", name)
		}
		if m[3] == "down" {
			continue
		}
		version, _ := strconv.Atoi(m[1])
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		ms = append(ms, Migration{Version: version, Name: m[2], SQL: string(b), Checksum: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i, m := range ms {
		if m.Version != i+1 {
			if i > 0 && m.Version == ms[i-1].Version {
				return nil, fmt.Errorf("migrations %s and %s share version %d", ms[i-1].ID(), m.ID(), m.Version)
			}
			return nil, fmt.Errorf("migration %s: expected version %04d; versions must count up from 0001 without gaps", m.ID(), i+1)
		}
	}
	return ms, nil
}

func embeddedMigrations() ([]Migration, error) {
	ms, err := parseMigrations(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("embedded migrations: %w", err)
	}
	return ms, nil
}

// Migrations returns the migrations compiled into this binary, in order.
func (db *DB) Migrations() []Migration { return slices.Clone(db.migrations) }

// migrationLockKey names the session advisory lock that serialises Migrate
// across processes. Its value is arbitrary but must never change.
const migrationLockKey int64 = 0x6772_6964_7061_7901 // "gridpay" + 1

const createSchemaMigrations = `
CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer     PRIMARY KEY,
	name       text        NOT NULL,
	checksum   text        NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

type appliedMigration struct {
	Version   int
	Name      string
	Checksum  string
	AppliedAt time.Time
}

// Migrate applies the pending migrations in order, each in its own
// transaction together with its schema_migrations row, and returns those it
// applied (none if the schema was up to date). Concurrent callers, in this
// process or others, take turns on an advisory lock; the second finds
// nothing left to do. It refuses to run if an applied migration is unknown
// to this binary or was changed since it was applied.
//
// Statements of a migration are not subject to the pool's statement timeout
// (a migration may rewrite a large table); ctx bounds them instead.
func (db *DB) Migrate(ctx context.Context) (applied []Migration, err error) {
	defer derrors.Wrap(&err, "store.Migrate")
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockKey); err != nil {
		return nil, fmt.Errorf("taking the migration lock: %w", err)
	}
	defer func() {
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLockKey); uerr != nil {
			// Closing the session is the sure way to free the lock.
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()

	if _, err := conn.Exec(ctx, createSchemaMigrations); err != nil {
		return nil, err
	}
	done, err := appliedMigrations(ctx, conn)
	if err != nil {
		return nil, err
	}
	if err := db.compare(done, false); err != nil {
		return nil, err
	}
	for _, m := range db.migrations {
		if _, ok := done[m.Version]; ok {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = 0"); err != nil {
				return err
			}
			// No arguments: pgx uses the simple protocol, which allows
			// several statements in one string.
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx,
				"INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
				m.Version, m.Name, m.Checksum)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("applying %s: %w", m.ID(), err)
		}
		applied = append(applied, m)
	}
	return applied, nil
}

// CheckSchema tells whether the database has exactly the migrations of this
// binary. Programs call it at start and refuse to run on a mismatch. The
// error is a *SchemaError matching ErrSchemaBehind (naming the first missing
// migration), ErrSchemaAhead (naming the first unknown one) or
// ErrMigrationChanged.
func (db *DB) CheckSchema(ctx context.Context) (err error) {
	defer derrors.Wrap(&err, "store.CheckSchema")
	done, err := db.applied(ctx)
	if err != nil {
		return err
	}
	return db.compare(done, true)
}

// Status lists this binary's migrations with whether each is applied. An
// applied migration unknown to the binary or changed since it was applied
// gives a *SchemaError, as from CheckSchema.
func (db *DB) Status(ctx context.Context) (_ []MigrationStatus, err error) {
	defer derrors.Wrap(&err, "store.Status")
	done, err := db.applied(ctx)
	if err != nil {
		return nil, err
	}
	if err := db.compare(done, false); err != nil {
		return nil, err
	}
	st := make([]MigrationStatus, len(db.migrations))
	for i, m := range db.migrations {
		st[i].Migration = m
		if a, ok := done[m.Version]; ok {
			st[i].Applied, st[i].AppliedAt = true, a.AppliedAt
		}
	}
	return st, nil
}

// applied reads schema_migrations, treating a missing table as an empty
// one, without creating it: checking must not change the database.
func (db *DB) applied(ctx context.Context) (map[int]appliedMigration, error) {
	var exists bool
	if err := db.pool.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return map[int]appliedMigration{}, nil
	}
	return appliedMigrations(ctx, db.pool)
}

func appliedMigrations(ctx context.Context, q Querier) (map[int]appliedMigration, error) {
	rows, err := q.Query(ctx, "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version")
	if err != nil {
		return nil, err
	}
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[appliedMigration])
	if err != nil {
		return nil, err
	}
	done := make(map[int]appliedMigration, len(list))
	for _, a := range list {
		a.AppliedAt = a.AppliedAt.UTC()
		done[a.Version] = a
	}
	return done, nil
}

// compare checks the applied migrations against the binary's: none unknown,
// none changed, and, if requireAll, none missing.
func (db *DB) compare(done map[int]appliedMigration, requireAll bool) error {
	known := make(map[int]Migration, len(db.migrations))
	for _, m := range db.migrations {
		known[m.Version] = m
	}
	versions := make([]int, 0, len(done))
	for v := range done {
		versions = append(versions, v)
	}
	slices.Sort(versions)
	for _, v := range versions {
		a := done[v]
		m, ok := known[v]
		if !ok || m.Name != a.Name {
			return &SchemaError{Err: ErrSchemaAhead, Migration: Migration{Version: a.Version, Name: a.Name}.ID()}
		}
		if m.Checksum != a.Checksum {
			return &SchemaError{Err: ErrMigrationChanged, Migration: m.ID(), AppliedChecksum: a.Checksum, FileChecksum: m.Checksum}
		}
	}
	if requireAll {
		for _, m := range db.migrations {
			if _, ok := done[m.Version]; !ok {
				return &SchemaError{Err: ErrSchemaBehind, Migration: m.ID()}
			}
		}
	}
	return nil
}

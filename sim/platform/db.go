package simplatform

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
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/internal/derrors"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/store"
)

// Schema is the PostgreSQL schema holding the simulator's tables. It can
// live in GridPay's own database without touching GridPay's tables.
const Schema = "platform_sim"

// The simulator's migrations, applied at start. Applied migrations are
// history: change the schema by adding a file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version  int
	name     string
	sql      string
	checksum string
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_([a-z0-9_]+)\.up\.sql$`)

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q: name must look like 0001_name.up.sql", e.Name())
		}
		b, err := fs.ReadFile(migrationFiles, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		v, _ := strconv.Atoi(m[1])
		sum := sha256.Sum256(b)
		ms = append(ms, migration{version: v, name: m[2], sql: string(b), checksum: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %04d_%s: versions must count up from 0001 without gaps", m.version, m.name)
		}
	}
	return ms, nil
}

// migrateLock serialises simulators migrating the same database at once
// (an arbitrary constant: "psim" in ASCII).
const migrateLock = 0x7073696d

// migrate creates the schema and applies the pending migrations, all in one
// transaction.
func migrate(ctx context.Context, db *store.DB) (err error) {
	defer derrors.Wrap(&err, "simplatform.migrate")
	ms, err := migrations()
	if err != nil {
		return err
	}
	return db.Transact(ctx, store.TxOptions{Isolation: pgx.ReadCommitted, MaxAttempts: 3}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+Schema); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+Schema+`.schema_migrations (
			version    int PRIMARY KEY,
			name       text NOT NULL,
			checksum   text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT version, name, checksum FROM `+Schema+`.schema_migrations ORDER BY version`)
		if err != nil {
			return err
		}
		applied := map[int]migration{}
		for rows.Next() {
			var m migration
			if err := rows.Scan(&m.version, &m.name, &m.checksum); err != nil {
				return err
			}
			applied[m.version] = m
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for v, m := range applied {
			if v > len(ms) {
				return fmt.Errorf("the database has migration %04d_%s, unknown to this simulator; upgrade it", v, m.name)
			}
			if ms[v-1].checksum != m.checksum {
				return fmt.Errorf("migration %04d_%s was changed after it was applied; add a new migration instead", v, m.name)
			}
		}
		for _, m := range ms {
			if _, ok := applied[m.version]; ok {
				continue
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("applying %04d_%s: %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+Schema+`.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)`,
				m.version, m.name, m.checksum); err != nil {
				return err
			}
		}
		return nil
	})
}

// OpenOptions tune Open.
type OpenOptions struct {
	// Today returns an instant of the simulator's business day (its
	// Shanghai date is "today" for due dates and late fees). Nil means the
	// real clock.
	Today func() time.Time
	// Now stamps postings and entries. Nil means time.Now.
	Now func() time.Time
	// Logger receives the simulator's log; nil discards it.
	Logger *zap.Logger
	// MaxConns caps the connection pool; zero means 20.
	MaxConns int32
}

// Platform is the simulator without the network: its database, its clock,
// the contract's rules and the data generator. Server adds the HTTPS
// front. It is safe for concurrent use.
type Platform struct {
	db     *store.DB
	ledger *ledger
	log    *zap.Logger
}

// Open connects to the database at dsn, creates the simulator's schema
// (Schema) and applies its migrations.
func Open(ctx context.Context, dsn string, opts OpenOptions) (_ *Platform, err error) {
	defer derrors.Wrap(&err, "simplatform.Open")
	if dsn == "" {
		return nil, errors.New("no database DSN")
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = 20
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Today == nil {
		opts.Today = opts.Now
	}
	db, err := store.Open(ctx, dsn, store.Options{ApplicationName: "platform-sim", MaxConns: opts.MaxConns})
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return &Platform{
		db:     db,
		log:    opts.Logger,
		ledger: &ledger{db: db, today: func() day { return todayIn(opts.Today()) }, now: opts.Now},
	}, nil
}

// Close closes the database connections.
func (p *Platform) Close() { p.db.Close() }

// Service is the contract implemented directly on the database, without
// HTTP or TLS (for tests that want to set up state quickly).
func (p *Platform) Service() platform.Service { return p.ledger }

// Today is the simulator's business date.
func (p *Platform) Today() platform.Date { return p.ledger.today().date() }

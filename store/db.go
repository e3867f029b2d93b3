// Package store keeps GridPay's own records in PostgreSQL: certificates and
// their revocations, CRL state, and the append-only, hash-chained audit log.
//
// Two kinds of API live here. Operations that manage connections themselves
// (Open, Migrate, CheckSchema, Status, Transact, VerifyAudit) are methods of
// *DB. Queries are functions taking a Querier, so the same call runs on the
// pool (pass the *DB) or inside a caller's transaction (pass the pgx.Tx that
// Transact hands to its closure):
//
//	err := db.Transact(ctx, store.TxOptions{}, func(tx pgx.Tx) error {
//		if _, _, err := store.RevokeCertificate(ctx, tx, rev); err != nil {
//			return err
//		}
//		_, err := store.AppendAudit(ctx, tx, rec)
//		return err
//	})
//
// Timestamps are stored as timestamptz and returned in UTC. Money columns,
// when they come, are bigint fen.
package store

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gridpay/gridpay/internal/derrors"
)

// Querier is what queries need from a connection. *DB, *pgxpool.Pool,
// *pgx.Conn and pgx.Tx all satisfy it. Begin starts a transaction on a pool
// or connection and a savepoint inside a transaction, which lets a query that
// needs several statements to be atomic (AppendAudit) join a caller's
// transaction or make its own.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

var (
	_ Querier = (*DB)(nil)
	_ Querier = (*pgxpool.Pool)(nil)
	_ Querier = (pgx.Tx)(nil)
	_ Querier = (*pgx.Conn)(nil)
)

// Options tunes Open. The zero value gives the defaults noted on each field.
// These settings take precedence over the same ones in the DSN
// (pool_max_conns, connect_timeout, application_name …).
type Options struct {
	// ApplicationName shows up in pg_stat_activity and the server log, so an
	// operator can tell the worker from the gateway. Default "gridpay".
	ApplicationName string
	// MaxConns caps the pool. Default 10.
	MaxConns int32
	// MinConns is kept open even when idle. Default 0.
	MinConns int32
	// ConnectTimeout bounds dialling and authenticating one connection.
	// Default 5s.
	ConnectTimeout time.Duration
	// StatementTimeout makes the server cancel any statement running longer.
	// Default 30s; negative disables it.
	StatementTimeout time.Duration
	// IdleInTransactionTimeout makes the server end a session whose
	// transaction sits idle, releasing its locks. Default 60s; negative
	// disables it.
	IdleInTransactionTimeout time.Duration
	// Password, when set, is used instead of any in the DSN. It comes from a
	// secret file or the environment, so the DSN can be printed and logged.
	Password string
}

func (o Options) withDefaults() Options {
	if o.ApplicationName == "" {
		o.ApplicationName = "gridpay"
	}
	if o.MaxConns == 0 {
		o.MaxConns = 10
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.StatementTimeout == 0 {
		o.StatementTimeout = 30 * time.Second
	}
	if o.IdleInTransactionTimeout == 0 {
		o.IdleInTransactionTimeout = 60 * time.Second
	}
	return o
}

// DB is a connection pool plus the migrations this binary knows.
type DB struct {
	pool       *pgxpool.Pool
	migrations []Migration
}

// Open creates the pool and checks that the server answers. The session
// time zone is UTC so that timestamps rendered by the server are UTC too.
// Open does not check the schema; programs call CheckSchema next.
func Open(ctx context.Context, dsn string, opts Options) (_ *DB, err error) {
	defer derrors.Wrap(&err, "store.Open")
	migrations, err := embeddedMigrations()
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The DSN may hold a password; pgconn's parse error already
		// redacts it, so wrapping it is safe.
		return nil, err
	}
	opts = opts.withDefaults()
	cfg.MaxConns = opts.MaxConns
	cfg.MinConns = opts.MinConns
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	if opts.Password != "" {
		cfg.ConnConfig.Password = opts.Password
	}
	rp := cfg.ConnConfig.RuntimeParams
	rp["application_name"] = opts.ApplicationName
	rp["timezone"] = "UTC"
	rp["statement_timeout"] = millis(opts.StatementTimeout)
	rp["idle_in_transaction_session_timeout"] = millis(opts.IdleInTransactionTimeout)

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return &DB{pool: pool, migrations: migrations}, nil
}

// millis renders a duration as a PostgreSQL timeout setting; 0 means none.
func millis(d time.Duration) string {
	if d < 0 {
		return "0"
	}
	return strconv.FormatInt(d.Milliseconds(), 10)
}

// Close closes all connections of the pool.
func (db *DB) Close() { db.pool.Close() }

// Pool exposes the underlying pool, for health checks and metrics.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Exec runs sql on a pooled connection.
func (db *DB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return db.pool.Exec(ctx, sql, args...)
}

// Query runs sql on a pooled connection.
func (db *DB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return db.pool.Query(ctx, sql, args...)
}

// QueryRow runs sql on a pooled connection.
func (db *DB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return db.pool.QueryRow(ctx, sql, args...)
}

// Begin starts a transaction with the server's default isolation (read
// committed). Prefer Transact, which picks serializable and retries.
func (db *DB) Begin(ctx context.Context) (pgx.Tx, error) {
	return db.pool.Begin(ctx)
}

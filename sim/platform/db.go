package simplatform

import (
	"context"
	"embed"
	"errors"
	"time"

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

// migrateLock serialises simulators migrating the same database at once
// ("psim" in ASCII).
const migrateLock = 0x7073696d

// migrate creates the schema and applies the pending migrations, all in one
// transaction.
func migrate(ctx context.Context, db *store.DB) error {
	return store.MigrateSchema(ctx, db, migrationFiles, "migrations", Schema, migrateLock)
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

package store

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"

	"github.com/gridpay/gridpay/internal/derrors"
)

// MigrateSchema applies another program's embedded migrations
// (dir/NNNN_name.up.sql in fsys, the same rules as GridPay's) to its own
// PostgreSQL schema, creating it if needed, all in one transaction. The
// simulators use it to live in any database without touching GridPay's
// tables. lock is an advisory lock key that serialises programs migrating
// the same schema at once.
func MigrateSchema(ctx context.Context, db *DB, fsys fs.FS, dir, schema string, lock int64) (err error) {
	defer derrors.Wrap(&err, "store.MigrateSchema(%q)", schema)
	ms, err := parseMigrations(fsys, dir)
	if err != nil {
		return err
	}
	return db.Transact(ctx, TxOptions{Isolation: pgx.ReadCommitted, MaxAttempts: 3}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+schema); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+schema+`.schema_migrations (
			version    int PRIMARY KEY,
			name       text NOT NULL,
			checksum   text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT version, name, checksum FROM `+schema+`.schema_migrations ORDER BY version`)
		if err != nil {
			return err
		}
		applied, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Migration, error) {
			var m Migration
			err := r.Scan(&m.Version, &m.Name, &m.Checksum)
			return m, err
		})
		if err != nil {
			return err
		}
		for _, m := range applied {
			if m.Version > len(ms) {
				return fmt.Errorf("the database has migration %s, unknown to this program; upgrade it", m.ID())
			}
			if ms[m.Version-1].Checksum != m.Checksum {
				return fmt.Errorf("migration %s was changed after it was applied; add a new migration instead", m.ID())
			}
		}
		for _, m := range ms[len(applied):] {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("applying %s: %w", m.ID(), err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+schema+`.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)`,
				m.Version, m.Name, m.Checksum); err != nil {
				return err
			}
		}
		return nil
	})
}

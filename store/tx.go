package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// TxOptions tunes Transact. The zero value is a read-write serializable
// transaction retried up to DefaultMaxAttempts times.
type TxOptions struct {
	// Isolation defaults to pgx.Serializable: with it, a transaction that
	// commits behaves as if it ran alone, and PostgreSQL reports the rare
	// conflict as a retryable error instead of silently losing an update.
	Isolation pgx.TxIsoLevel
	ReadOnly  bool
	// MaxAttempts bounds how often the closure runs. Default
	// DefaultMaxAttempts; 1 disables retrying.
	MaxAttempts int
}

// DefaultMaxAttempts is how often Transact runs a closure that keeps hitting
// serialization failures or deadlocks before it gives up.
const DefaultMaxAttempts = 8

// Backoff between attempts: full jitter over an exponentially growing
// window, so that transactions that collided once do not collide again in
// lockstep.
const (
	retryBaseDelay = 5 * time.Millisecond
	retryMaxDelay  = 500 * time.Millisecond
)

// ErrRetriesExhausted is returned (wrapping the last failure) when every
// attempt of Transact failed with a retryable error.
var ErrRetriesExhausted = errors.New("transaction kept failing with serialization failures or deadlocks")

// Transact runs fn in a transaction and commits it, or rolls it back if fn
// returns an error or panics. If the transaction fails with a serialization
// failure (SQLSTATE 40001) or a deadlock (40P01), whether in fn or at
// commit, it is rolled back and fn runs again in a new transaction, a bounded
// number of times. fn must therefore have no effects outside the
// transaction (or only idempotent ones).
//
// An error returned by fn is returned as it is, so errors.Is and errors.As
// see exactly what fn returned; failures of Transact's own steps (begin,
// commit) are wrapped and name the step.
func (db *DB) Transact(ctx context.Context, opts TxOptions, fn func(tx pgx.Tx) error) error {
	if opts.Isolation == "" {
		opts.Isolation = pgx.Serializable
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	access := pgx.ReadWrite
	if opts.ReadOnly {
		access = pgx.ReadOnly
	}
	txOpts := pgx.TxOptions{IsoLevel: opts.Isolation, AccessMode: access}

	var err error
	for attempt := 1; ; attempt++ {
		err = db.transactOnce(ctx, txOpts, fn)
		if err == nil || !retryable(err) {
			return err
		}
		if attempt == opts.MaxAttempts {
			return fmt.Errorf("store.Transact: %w after %d attempts: %w", ErrRetriesExhausted, attempt, err)
		}
		if werr := sleep(ctx, backoff(attempt)); werr != nil {
			return fmt.Errorf("store.Transact: waiting to retry after %w: %w", err, werr)
		}
	}
}

func (db *DB) transactOnce(ctx context.Context, txOpts pgx.TxOptions, fn func(tx pgx.Tx) error) (err error) {
	tx, err := db.pool.BeginTx(ctx, txOpts)
	if err != nil {
		return fmt.Errorf("store.Transact: begin: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			tx.Rollback(context.WithoutCancel(ctx))
			panic(p)
		}
		if err != nil {
			// The rollback error is dropped on purpose: the transaction is
			// already lost and err says why. A failed rollback closes the
			// connection, so nothing leaks back into the pool.
			tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store.Transact: commit: %w", err)
	}
	return nil
}

// backoff returns a random delay in [0, min(retryMaxDelay, base·2^(attempt-1))).
func backoff(attempt int) time.Duration {
	window := retryMaxDelay
	if attempt < 16 {
		window = min(retryMaxDelay, retryBaseDelay<<(attempt-1))
	}
	return rand.N(window)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

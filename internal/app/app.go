// Package app wires GridPay's programs to their dependencies from
// configuration: the database, the HSM, the CA and Temporal. Programs share
// it so that each connection is made, checked and reported the same way.
package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/codec"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/logging"
	"github.com/gridpay/gridpay/store"
)

func init() { cli.RegisterClassifier(classify) }

// classify maps the errors of the packages wired here to exit codes.
func classify(err error) (int, bool) {
	var cfgErr config.Errors
	var pgErr *pgconn.ConnectError
	switch {
	case errors.As(err, &cfgErr), errors.Is(err, config.ErrSecretMissing), errors.Is(err, hsm.ErrNoPINSource):
		return cli.ExitConfig, true
	case errors.Is(err, hsm.ErrWrongPIN), errors.Is(err, hsm.ErrPINLocked), errors.Is(err, hsm.ErrPINExpired):
		return cli.ExitAuth, true
	case errors.Is(err, hsm.ErrModuleMissing), errors.Is(err, hsm.ErrTokenAbsent), errors.Is(err, hsm.ErrDeviceRemoved),
		errors.As(err, &pgErr), errors.Is(err, store.ErrSchemaBehind), errors.Is(err, store.ErrSchemaAhead),
		errors.Is(err, ErrTemporalUnavailable):
		return cli.ExitUnavailable, true
	case errors.Is(err, store.ErrNotFound), errors.Is(err, authority.ErrNotInitialised), errors.Is(err, hsm.ErrKeyNotFound):
		return cli.ExitNotFound, true
	case errors.Is(err, hsm.ErrKeyExists), errors.Is(err, hsm.ErrObjectExists), errors.Is(err, store.ErrConflict):
		return cli.ExitConflict, true
	}
	return 0, false
}

// OpenDB connects to GridPay's database. Unless the caller is about to
// migrate, it refuses a database whose schema differs from this binary's
// (the error names the missing migration).
func OpenDB(ctx context.Context, cfg config.Database, appName string, checkSchema bool) (*store.DB, error) {
	opts := store.Options{ApplicationName: appName, MaxConns: cfg.MaxConns}
	if cfg.Password.Provided() {
		pw, err := cfg.Password.Read("database.password")
		if err != nil {
			return nil, err
		}
		opts.Password = string(pw)
	}
	db, err := store.Open(ctx, cfg.DSN, opts)
	if err != nil {
		return nil, fmt.Errorf("connecting to the database: %w", err)
	}
	if checkSchema {
		if err := db.CheckSchema(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// OpenHSM logs in to the HSM token named in the configuration.
func OpenHSM(cfg config.HSM, log *zap.Logger) (*hsm.Token, error) {
	pin, err := cfg.PIN.Read("hsm.pin")
	if err != nil {
		return nil, err
	}
	defer hsm.Zero(pin)
	return hsm.OpenToken(cfg.Module, hsm.Selector{Label: cfg.TokenLabel, Serial: cfg.TokenSerial}, pin,
		hsm.Options{PoolSize: cfg.Sessions, Logger: log})
}

// AuthorityOptions translates the PKI configuration.
func AuthorityOptions(p config.PKI) authority.Options {
	return authority.Options{
		Organization: p.Organization, Country: p.Country,
		RootLabel: p.RootKeyLabel, CustomerLabel: p.CustomerKeyLabel, ServicesLabel: p.ServicesKeyLabel,
		RootValidity: p.RootValidity, IssuingValidity: p.IssuingValidity,
		CustomerValidity: p.CustomerValidity, ServerValidity: p.ServerValidity,
		CRLValidity: p.CRLValidity, CRLURL: p.CRLURL, Dir: p.Dir,
	}
}

// ErrTemporalUnavailable means the Temporal frontend did not answer.
var ErrTemporalUnavailable = errors.New("temporal unavailable")

// PayloadCodec loads the payload codec's keys (temporal.codec) from the
// HSM. It is nil when the configuration disables the codec, which is
// logged as a warning. A missing key is an error that says to run
// adminctl ca init.
func PayloadCodec(ctx context.Context, cfg config.Temporal, tok *hsm.Token, log *zap.Logger) (*codec.Codec, error) {
	if cfg.Codec.Disabled {
		log.Warn("temporal.codec.disabled is set: workflow payloads go to Temporal in clear")
		return nil, nil
	}
	c, err := codec.LoadHSM(ctx, tok, cfg.Codec.KeyLabel, cfg.Codec.OldKeyLabels)
	if err != nil {
		return nil, fmt.Errorf("temporal.codec: %w", err)
	}
	log.Info("payload codec: Temporal payloads encrypted in the HSM", zap.String("key_id", c.KeyID()),
		zap.Strings("decrypt_key_ids", c.KeyIDs()))
	return c, nil
}

// DialTemporal connects to Temporal with the SDK logging through zap and
// every payload going through pc (see codec.Codec.DataConverter): all of a
// program's Temporal clients and workers must come from here, or share
// this one. pc may be nil only when temporal.codec.disabled is set.
func DialTemporal(ctx context.Context, cfg config.Temporal, pc *codec.Codec, log *zap.Logger) (client.Client, error) {
	opts := client.Options{
		HostPort:  cfg.Address,
		Namespace: cfg.Namespace,
		Logger:    logging.Temporal(log.Named("temporal")),
	}
	switch {
	case pc != nil:
		opts.DataConverter, opts.FailureConverter = pc.DataConverter(), pc.FailureConverter()
	case !cfg.Codec.Disabled:
		return nil, errors.New("app.DialTemporal: no payload codec, and temporal.codec.disabled is not set")
	}
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrTemporalUnavailable, cfg.Address, err)
	}
	return c, nil
}

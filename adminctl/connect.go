package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/store"
)

func init() {
	cli.RegisterClassifier(func(err error) (int, bool) {
		var cfgErr config.Errors
		var pgErr *pgconn.ConnectError
		switch {
		case errors.As(err, &cfgErr), errors.Is(err, config.ErrSecretMissing), errors.Is(err, hsm.ErrNoPINSource):
			return cli.ExitConfig, true
		case errors.Is(err, hsm.ErrWrongPIN), errors.Is(err, hsm.ErrPINLocked), errors.Is(err, hsm.ErrPINExpired):
			return cli.ExitAuth, true
		case errors.Is(err, hsm.ErrModuleMissing), errors.Is(err, hsm.ErrTokenAbsent), errors.Is(err, hsm.ErrDeviceRemoved),
			errors.As(err, &pgErr), errors.Is(err, store.ErrSchemaBehind), errors.Is(err, store.ErrSchemaAhead):
			return cli.ExitUnavailable, true
		case errors.Is(err, store.ErrNotFound), errors.Is(err, authority.ErrNotInitialised), errors.Is(err, hsm.ErrKeyNotFound):
			return cli.ExitNotFound, true
		case errors.Is(err, hsm.ErrKeyExists), errors.Is(err, hsm.ErrObjectExists), errors.Is(err, store.ErrConflict):
			return cli.ExitConflict, true
		}
		return 0, false
	})
}

// openDB connects to GridPay's database. Unless migrating, it refuses a
// database whose schema differs from this binary's.
func (a *app) openDB(ctx context.Context, checkSchema bool) (*store.DB, error) {
	opts := store.Options{ApplicationName: "adminctl", MaxConns: a.cfg.Database.MaxConns}
	if a.cfg.Database.Password.Provided() {
		pw, err := a.cfg.Database.Password.Read("database.password")
		if err != nil {
			return nil, err
		}
		opts.Password = string(pw)
	}
	db, err := store.Open(ctx, a.cfg.Database.DSN, opts)
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

// openHSM logs in to the HSM token named in the configuration.
func (a *app) openHSM() (*hsm.Token, error) {
	c := a.cfg.HSM
	pin, err := c.PIN.Read("hsm.pin")
	if err != nil {
		return nil, err
	}
	defer hsm.Zero(pin)
	return hsm.OpenToken(c.Module, hsm.Selector{Label: c.TokenLabel, Serial: c.TokenSerial}, pin, hsm.Options{PoolSize: c.Sessions, Logger: a.log})
}

func (a *app) authorityOptions() authority.Options {
	p := a.cfg.PKI
	return authority.Options{
		Organization: p.Organization, Country: p.Country,
		RootLabel: p.RootKeyLabel, CustomerLabel: p.CustomerKeyLabel, ServicesLabel: p.ServicesKeyLabel,
		RootValidity: p.RootValidity, IssuingValidity: p.IssuingValidity,
		CustomerValidity: p.CustomerValidity, ServerValidity: p.ServerValidity,
		CRLValidity: p.CRLValidity, CRLURL: p.CRLURL, Dir: p.Dir,
	}
}

// withCA opens the database and the HSM and loads the CA for fn.
func (a *app) withCA(ctx context.Context, fn func(*authority.Authority, *store.DB) error) error {
	db, err := a.openDB(ctx, true)
	if err != nil {
		return err
	}
	defer db.Close()
	tok, err := a.openHSM()
	if err != nil {
		return err
	}
	defer tok.Close()
	ca, err := authority.Open(ctx, authority.HSMKeys{Token: tok}, db, a.authorityOptions())
	if err != nil {
		return err
	}
	return fn(ca, db)
}

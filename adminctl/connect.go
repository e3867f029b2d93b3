package main

import (
	"context"

	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/app"
	"github.com/gridpay/gridpay/store"
)

func (a *admin) openDB(ctx context.Context, checkSchema bool) (*store.DB, error) {
	return app.OpenDB(ctx, a.cfg.Database, "adminctl", checkSchema)
}

func (a *admin) openHSM() (*hsm.Token, error) { return app.OpenHSM(a.cfg.HSM, a.log) }

func (a *admin) authorityOptions() authority.Options { return app.AuthorityOptions(a.cfg.PKI) }

// withHSM opens the database (checking its schema) and the HSM for fn.
func (a *admin) withHSM(ctx context.Context, fn func(*store.DB, *hsm.Token) error) error {
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
	return fn(db, tok)
}

// withCA opens the database and the HSM and loads the CA for fn.
func (a *admin) withCA(ctx context.Context, fn func(*authority.Authority, *store.DB) error) error {
	return a.withHSM(ctx, func(db *store.DB, tok *hsm.Token) error {
		ca, err := authority.Open(ctx, authority.HSMKeys{Token: tok}, db, a.authorityOptions())
		if err != nil {
			return err
		}
		return fn(ca, db)
	})
}

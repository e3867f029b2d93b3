package main

import (
	"context"
	"net/url"
	"os"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/logging"
	"github.com/gridpay/gridpay/pki"
)

// session is an unlocked, verified key and a gateway client using it.
type session struct {
	key *unlockedKey
	id  pki.Identity
	gw  *gateway
}

// withSession unlocks the key, verifies its certificate before any
// connection, reports wrong PINs not yet reported, runs fn and releases
// everything.
func (a *app) withSession(ctx context.Context, fn func(ctx context.Context, s *session) error) error {
	// Configuration problems are found before the key is touched, so they
	// never cost a PIN attempt.
	roots, err := loadRoots(a.cfg.CAFile)
	if err != nil {
		return err
	}
	key, err := a.openKey(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err := key.Close(); err != nil {
			a.log.Warn("closing the USB key", zap.Error(err))
		}
	}()
	id, err := a.verifyKey(key, roots)
	if err != nil {
		return err
	}
	gw, err := newGateway(a.cfg.GatewayURL, a.cfg.Timeout, roots, key, a.log)
	if err != nil {
		return err
	}
	defer gw.Close()
	s := &session{key: key, id: id, gw: gw}
	a.reportPINFailures(ctx, s)
	a.settleOpenLoad(ctx, s)
	return fn(ctx, s)
}

// fetch GETs path into out while a progress indicator runs.
func (a *app) fetch(ctx context.Context, s *session, what, path string, q url.Values, out any) error {
	p := a.progress("asking the gateway for " + what)
	err := s.gw.get(ctx, path, q, out)
	if err != nil {
		p.Done("failed")
		return err
	}
	p.Done("done")
	return nil
}

// reportPINFailures sends the gateway, for its audit log, the wrong PINs
// entered on this key that it has not been told about, and marks them
// reported. A failure is only logged: they are sent again next time.
func (a *app) reportPINFailures(ctx context.Context, s *session) {
	serial := s.key.TokenSerial
	log := a.log.With(zap.String(logging.KeyTokenSerial, serial))
	events, err := a.local.Unreported(serial)
	if err != nil {
		log.Warn("reading the local PIN-failure log", zap.Error(err))
		return
	}
	if len(events) == 0 {
		return
	}
	host, _ := os.Hostname()
	rep := api.PINFailureReport{Failures: make([]api.PINFailure, len(events))}
	for i, e := range events {
		rep.Failures[i] = api.PINFailure{At: e.At, Count: e.Count, Locked: e.Locked, Hostname: host}
	}
	if err := s.gw.post(ctx, api.PathPINFailures, rep, nil); err != nil {
		log.Warn("reporting wrong PINs to the gateway failed; they will be reported next time", zap.Error(err))
		return
	}
	if err := a.local.MarkReported(serial, events[len(events)-1].Seq, a.now()); err != nil {
		log.Warn("marking wrong PINs as reported", zap.Error(err))
		return
	}
	log.Info("wrong PINs reported to the gateway", zap.Int("count", len(events)))
}

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/internal/app"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/unionpay"
	"github.com/gridpay/gridpay/workflows"
)

// hooks let tests replace what run builds from configuration.
type hooks struct {
	// platform builds the platform client; nil means newPlatformClient.
	platform func(ctx context.Context, cfg config.Gateway, keys authority.Keys, trust *authority.Trust) (platform.Service, error)
	// ready is told the listening address once the gateway serves.
	ready func(addr net.Addr)
	// now is the clock; nil means time.Now.
	now func() time.Time
	// payments replaces the Temporal-backed payment starter (and the
	// Temporal connection); nil means Temporal at temporal.address.
	payments Payments
}

// run wires the gateway and serves until ctx ends.
func run(ctx context.Context, cfg config.Gateway, log *zap.Logger) error {
	return runGateway(ctx, cfg, log, hooks{})
}

// maxReadHeaderTimeout bounds the wait for a request's headers (and the
// TLS handshake before them): a slow client holds a connection no longer.
const maxReadHeaderTimeout = 10 * time.Second

func runGateway(ctx context.Context, cfg config.Gateway, log *zap.Logger, h hooks) error {
	now := h.now
	if now == nil {
		now = time.Now
	}
	newPlatform := h.platform
	if newPlatform == nil {
		newPlatform = newPlatformClient
	}

	db, err := app.OpenDB(ctx, cfg.Database, "gateway", true)
	if err != nil {
		return err
	}
	defer db.Close()
	tok, err := app.OpenHSM(cfg.HSM, log)
	if err != nil {
		return err
	}
	defer tok.Close()
	keys := authority.HSMKeys{Token: tok}

	trust, err := authority.LoadTrust(ctx, db)
	if err != nil {
		return err
	}
	verifier, err := trust.Verifier(ctx, db)
	if err != nil {
		return fmt.Errorf("loading the CRLs: %w (publish them: adminctl ca crl)", err)
	}
	serverCert, err := app.HSMCertificate(ctx, keys, cfg.TLSKeyLabel, trust.Services)
	if err != nil {
		return fmt.Errorf("gateway TLS certificate: %w (issue it: adminctl ca issue --server --name gateway --dns <name> --key-label %s)", err, cfg.TLSKeyLabel)
	}
	if err := checkServerCertificate(verifier, serverCert.Leaf, now(), log); err != nil {
		return err
	}
	plat, err := newPlatform(ctx, cfg, keys, trust)
	if err != nil {
		return err
	}

	secret, err := cfg.PayLinkSecret.Read("pay_link_secret")
	if err != nil {
		return cli.WithCode(cli.ExitConfig, err)
	}
	if len(secret) < 32 {
		return cli.WithCode(cli.ExitConfig, fmt.Errorf("pay_link_secret: %d bytes; at least 32 are needed", len(secret)))
	}
	upVerifier, err := app.UnionPayVerifier(cfg.UnionPay, now)
	if err != nil {
		return err
	}
	var pays Payments = h.payments
	var loads Loads
	signal := func(context.Context, string, unionpay.Notification) error {
		return errors.New("no Temporal connection")
	}
	if pays == nil {
		pc, err := app.PayloadCodec(ctx, cfg.Temporal, tok, log)
		if err != nil {
			return err
		}
		tc, err := app.DialTemporal(ctx, cfg.Temporal, pc, log)
		if err != nil {
			return err
		}
		defer tc.Close()
		pays = temporalPayments{tc: tc, taskQueue: cfg.Temporal.TaskQueue}
		loads = temporalLoads{tc: tc, taskQueue: cfg.Temporal.TaskQueue}
		signal = func(ctx context.Context, workflowID string, n unionpay.Notification) error {
			return tc.SignalWorkflow(ctx, workflowID, "", workflows.SignalNotification, n)
		}
	}

	store := dbStore{db: db}
	srv := NewServer(Deps{Platform: plat, Verifier: verifier, Bindings: store, Auditor: store, Payments: pays, Records: storeLookup{db: db}, Log: log}, Options{
		RatePerSecond: cfg.RatePerSecond, RateBurst: cfg.RateBurst, RequestTimeout: cfg.RequestTimeout, Now: now,
		PublicURL: cfg.PublicURL, PayLinkSecret: secret, PaymentTiming: workflows.PaymentTiming{PayTimeout: cfg.UnionPay.PayTimeout,
			QueryFirst: cfg.Payment.QueryFirst, QueryMax: cfg.Payment.QueryMax, Grace: cfg.Payment.Grace,
			RefundQueryMax: cfg.Payment.RefundQueryMax, PostRetryMax: cfg.Payment.PostRetryMax},
	})
	if loads != nil {
		srv.EnableLoads(loads, loadRecordsOf(db), workflows.LoadTiming{AllowValidity: cfg.Load.AllowValidity, ReceiptGrace: cfg.Load.ReceiptGrace})
	}
	httpSrv := newHTTPServer(srv, serverTLSConfig(serverCert, now), cfg, log)
	pub := &public{verifier: upVerifier, lookup: storeLookup{db: db}, payments: pays, links: srv.payLinks, audit: srv.audit,
		log: log.Named("public"), signal: signal}
	publicSrv := &http.Server{Handler: pub, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: cfg.IdleTimeout, ErrorLog: newServerErrorLog(log.Named("public"), nil)}
	publicLn, err := net.Listen("tcp", cfg.PublicListen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.PublicListen, err)
	}
	go func() {
		if err := publicSrv.Serve(publicLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("public listener stopped", zap.Error(err))
		}
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		_ = publicSrv.Shutdown(sctx)
	}()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	var wg sync.WaitGroup
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer func() {
		stopLoop()
		wg.Wait()
	}()
	wg.Go(func() {
		refreshCRLs(loopCtx, cfg.CRLRefresh, func(ctx context.Context) error { return trust.RefreshCRLs(ctx, db, verifier) }, log)
	})
	served := make(chan error, 1)
	go func() { served <- httpSrv.ServeTLS(ln, "", "") }()

	log.Info("gateway ready", zap.String("listen", ln.Addr().String()), zap.String("tls_certificate", serverCert.Leaf.Subject.String()),
		zap.Time("tls_not_after", serverCert.Leaf.NotAfter), zap.String("platform", cfg.Platform.URL),
		zap.Duration("crl_refresh", cfg.CRLRefresh), zap.Float64("rate_per_second", cfg.RatePerSecond), zap.Int("rate_burst", cfg.RateBurst))
	if h.ready != nil {
		h.ready(ln.Addr())
	}

	select {
	case err := <-served:
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	log.Info("gateway stopping: finishing requests in progress", zap.Duration("timeout", cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := httpSrv.Shutdown(sctx); err != nil {
		log.Warn("graceful stop timed out; closing the remaining connections", zap.Error(err))
		_ = httpSrv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	srv.audit.wait()
	log.Info("gateway stopped")
	return nil
}

// newHTTPServer is the gateway's HTTP server, with timeouts on every phase
// of a request.
func newHTTPServer(srv *Server, tlsConfig *tls.Config, cfg config.Gateway, log *zap.Logger) *http.Server {
	return &http.Server{
		Handler:           srv,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: min(maxReadHeaderTimeout, cfg.RequestTimeout),
		ReadTimeout:       cfg.RequestTimeout,
		// Leave the handler its whole request_timeout to answer, then
		// some time to write the answer.
		WriteTimeout:   cfg.RequestTimeout + 5*time.Second,
		IdleTimeout:    cfg.IdleTimeout,
		MaxHeaderBytes: 32 << 10,
		ErrorLog:       newServerErrorLog(log, srv.audit),
	}
}

// refreshCRLs reloads the CRLs every interval. A failure is logged and
// tried again at the next tick; meanwhile the verifier keeps the CRLs it
// has, and fails closed once they are past their next update.
func refreshCRLs(ctx context.Context, every time.Duration, refresh func(context.Context) error, log *zap.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, max(every, 5*time.Second))
		err := refresh(rctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("refreshing the CRLs failed; keeping the current ones and retrying", zap.Duration("retry_in", every), zap.Error(err))
			failing = true
		case err == nil && failing:
			log.Info("CRLs refreshed again")
			failing = false
		}
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/codec"
	"github.com/gridpay/gridpay/config"
)

// serveCodec serves the payload codec to the Temporal Web UI on
// temporal.codec.listen, so that operators read payloads in clear in their
// browser while Temporal stores ciphertext. It returns a function that
// stops the server.
func serveCodec(cfg config.PayloadCodec, pc *codec.Codec, log *zap.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("temporal.codec.listen %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{
		Handler:           codec.NewServer(pc, codec.ServerOptions{Origin: cfg.UIOrigin, Log: log}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("codec server stopped", zap.Error(err))
		}
	}()
	log.Info("codec server for the Temporal Web UI", zap.String("listen", ln.Addr().String()), zap.String("ui_origin", cfg.UIOrigin))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

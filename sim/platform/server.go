package simplatform

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/internal/derrors"
	"github.com/gridpay/gridpay/pki"
)

// DefaultAllowServices are the GridPay services the platform admits.
var DefaultAllowServices = []string{"gateway", "worker"}

// Options configure Start.
type Options struct {
	// DSN of the PostgreSQL database; the simulator keeps its tables in
	// schema platform_sim. Required.
	DSN string
	// StateDir holds the simulator's CA and server certificate and keys,
	// made on first start. Required.
	StateDir string
	// ClientCAs are the CAs client certificates must chain to: GridPay's
	// services CA. Give the pool or a PEM file (ClientCAFile); one is
	// required.
	ClientCAs    *x509.CertPool
	ClientCAFile string
	// AllowServices are the service names admitted (pki.IdentityOf of the
	// client certificate); default DefaultAllowServices.
	AllowServices []string
	// Listen is the TCP address; default "127.0.0.1:0" (a free port).
	Listen string
	// ServerNames are added to DefaultServerNames in the server
	// certificate (DNS names or IP addresses).
	ServerNames []string
	// Today, Now: see OpenOptions.
	Today func() time.Time
	Now   func() time.Time
	// Logger receives the log, refusals at the handshake included; nil
	// discards it.
	Logger *zap.Logger
}

// Server is a running simulator: Platform plus its HTTPS front with the
// mutual-TLS firewall.
type Server struct {
	*Platform

	pki         *serverPKI
	ln          net.Listener
	srv         *http.Server
	unavailable atomic.Bool
	done        chan struct{}
	serveErr    error
	stopOnce    sync.Once
	stopErr     error
}

// Start opens the database (creating the simulator's schema), loads or
// makes the simulator's CA and server certificate in StateDir, and serves
// the contract on Listen until Stop.
func Start(ctx context.Context, opts Options) (_ *Server, err error) {
	defer derrors.Wrap(&err, "simplatform.Start")
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StateDir == "" {
		return nil, errors.New("no state directory")
	}
	roots := opts.ClientCAs
	if roots == nil {
		if opts.ClientCAFile == "" {
			return nil, errors.New("no client CA: give GridPay's services CA certificate (ClientCAs or ClientCAFile)")
		}
		pem, err := os.ReadFile(opts.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		certs, err := pki.DecodeCertificatesPEM(pem)
		if err != nil {
			return nil, fmt.Errorf("client CA %s: %w", opts.ClientCAFile, err)
		}
		roots = x509.NewCertPool()
		for _, c := range certs {
			roots.AddCert(c)
		}
	}
	allow := opts.AllowServices
	if len(allow) == 0 {
		allow = DefaultAllowServices
	}
	for _, s := range allow {
		if s == "" {
			return nil, errors.New("an empty service name in AllowServices")
		}
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	names := slices.Clone(DefaultServerNames)
	if host, _, err := net.SplitHostPort(opts.Listen); err == nil && host != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			names = append(names, host)
		}
	}
	for _, n := range append(names, opts.ServerNames...) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	lg := opts.Logger

	sp, err := loadOrCreatePKI(opts.StateDir, names, opts.Now(), lg)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := serverTLSConfig(sp, clientPolicy{roots: roots, allow: slices.Clone(allow), now: opts.Now}, lg)
	if err != nil {
		return nil, err
	}
	p, err := Open(ctx, opts.DSN, OpenOptions{Today: opts.Today, Now: opts.Now, Logger: lg})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		p.Close()
		return nil, err
	}
	s := &Server{Platform: p, pki: sp, ln: ln, done: make(chan struct{})}
	stdLog, err := zap.NewStdLogAt(lg.Named("http"), zap.InfoLevel)
	if err != nil {
		ln.Close()
		p.Close()
		return nil, err
	}
	s.srv = &http.Server{
		Handler:           newHandler(p.ledger, lg, &s.unavailable),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// Refusals are logged by the TLS policy with more detail; the
		// HTTP server's line about the failed handshake would repeat them.
		ErrorLog: log.New(dropRefusals{stdLog.Writer()}, "", 0),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			s.serveErr = err
			lg.Error("serving stopped", zap.Error(err))
		}
	}()
	lg.Info("platform simulator serving", zap.String("url", s.URL()), zap.String("ca_file", sp.caFile),
		zap.Strings("allow_services", allow), zap.String("today", string(p.Today())))
	return s, nil
}

// dropRefusals passes on log lines except those about refused clients.
type dropRefusals struct{ w io.Writer }

var refusedMarker = []byte(ErrRefused.Error())

func (d dropRefusals) Write(p []byte) (int, error) {
	if bytes.Contains(p, refusedMarker) {
		return len(p), nil
	}
	return d.w.Write(p)
}

// URL is the base URL of the contract, https://host:port.
func (s *Server) URL() string { return "https://" + s.ln.Addr().String() }

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// CAFile is the path of the simulator's CA certificate (PEM), which
// GridPay's platform client must trust.
func (s *Server) CAFile() string { return s.pki.caFile }

// CACert is the simulator's CA certificate.
func (s *Server) CACert() *x509.Certificate { return s.pki.caCert }

// RootCAs is a pool holding the simulator's CA, for a client's RootCAs.
func (s *Server) RootCAs() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.pki.caCert)
	return p
}

// SetUnavailable switches maintenance on or off: while on, every request
// is answered 503 with code unavailable (the TLS firewall still applies).
func (s *Server) SetUnavailable(on bool) { s.unavailable.Store(on) }

// Done is closed when the server stops serving (Stop, or a failure; see
// Err).
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is why serving stopped, or nil (still serving, or stopped by Stop).
func (s *Server) Err() error {
	select {
	case <-s.done:
		return s.serveErr
	default:
		return nil
	}
}

// Stop stops accepting connections, waits up to 10 seconds for requests in
// flight, and closes the database. It is safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
			s.stopErr = fmt.Errorf("simplatform.Server.Stop: %w", err)
		}
		<-s.done
		s.Platform.Close()
	})
	return s.stopErr
}

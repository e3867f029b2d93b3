package simunionpay

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/internal/derrors"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/unionpay"
)

// Endpoint paths, as the real gateway's.
const (
	PathFront = "/gateway/api/frontTransReq.do"
	PathBack  = "/gateway/api/backTransReq.do"
	PathQuery = "/gateway/api/queryTrans.do"
	PathFile  = "/gateway/api/fileTransReq.do"
	PathPay   = "/gateway/pay/" // + token: the pay page
)

// Defaults of Options.
const (
	DefaultProcessDelay  = 2 * time.Second
	DefaultNotifyTimeout = 10 * time.Second // the real gateway waits 10 s for the merchant's answer
)

// ResendSchedule is the real gateway's: a notification not answered with
// HTTP 200 is sent again 1, 2, 4 and 5 minutes after the previous send,
// five sends in all (ACP merchant documentation: "总共发送5次，银联后续间隔1、
// 2、4、5 分钟后会再次通知"). Options.TimeScale shrinks it for tests.
var ResendSchedule = []time.Duration{1 * time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute}

// MaxSends is how often a notification is sent at most.
const MaxSends = 5

// Options configure Start.
type Options struct {
	// DSN of the PostgreSQL database; the simulator keeps its tables in
	// schema unionpay_sim. Required.
	DSN string
	// StateDir holds the simulator's root CA and gateway signing key and
	// certificate (made on first start), and MerchantsDir. Required.
	StateDir string
	// Listen is the gateway's TCP address; default "127.0.0.1:0".
	Listen string
	// AdminListen is the admin endpoint's address (faults, lookups); it
	// must be a loopback address and refuses other clients. Default
	// "127.0.0.1:0"; "off" disables it.
	AdminListen string
	// Organization is the gateway certificate's subject O; default
	// DefaultOrganization.
	Organization string
	// MerchantCerts are the merchants' signing certificates (certId = the
	// serial number); MerchantCertFiles names more, as "path" (the
	// merchant ID is the subject CN) or "merId=path". Certificates in
	// StateDir/merchants are trusted too.
	MerchantCerts     []MerchantCert
	MerchantCertFiles []string
	// TimeScale multiplies the simulator's waits: the resend schedule and
	// the processing delay of refunds and cancels (0.01: 100 times
	// faster). Default 1.
	TimeScale float64
	// ProcessDelay is how long an accepted refund or cancel stays pending
	// before it succeeds (scaled); default DefaultProcessDelay.
	ProcessDelay time.Duration
	// NotifyTimeout bounds one notification POST (not scaled); default
	// DefaultNotifyTimeout.
	NotifyTimeout time.Duration
	// NotifyFailures sends back notifications for declined and expired
	// payments too. The real gateway does not ("支付失败的交易银联不会发送后台
	// 通知"), so the default is false: GridPay learns a failure by query.
	NotifyFailures bool
	// Faults switched on from the start.
	Faults Faults
	// Now is the business clock (txnTime checks, pay timeouts, settlement
	// dates); default time.Now. The simulator's own timers run on the
	// real clock.
	Now func() time.Time
	// Logger receives the log; nil discards it. Card numbers and request
	// bodies are never logged.
	Logger *zap.Logger
	// MaxConns caps the database pool; default 20.
	MaxConns int32
	// HTTPClient posts notifications; default a client with
	// NotifyTimeout that follows no redirects.
	HTTPClient *http.Client
}

// Server is a running simulator.
type Server struct {
	opts   Options
	db     *store.DB
	pki    *gatewayPKI
	log    *zap.Logger
	faults faultState
	mer    *merchantRegistry
	http   *http.Client

	ln, adminLn   net.Listener
	srv, adminSrv *http.Server
	url, adminURL string

	wakeNotifier  chan struct{}
	wakeProcessor chan struct{}
	inflight      sync.Map // notification ID → struct{}: being sent
	sendSlots     chan struct{}

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	done     chan struct{}
	errMu    sync.Mutex
	serveErr error
	stopOnce sync.Once
	stopErr  error
}

// Start opens the database (creating the simulator's schema), loads or
// makes the PKI in StateDir, and serves the gateway on Listen and the
// admin endpoint on AdminListen until Stop. Pending notifications and
// refunds left by an earlier run carry on.
func Start(ctx context.Context, opts Options) (_ *Server, err error) {
	defer derrors.Wrap(&err, "simunionpay.Start")
	if opts.DSN == "" {
		return nil, errors.New("no database DSN")
	}
	if opts.StateDir == "" {
		return nil, errors.New("no state directory")
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.AdminListen == "" {
		opts.AdminListen = "127.0.0.1:0"
	}
	if opts.Organization == "" {
		opts.Organization = DefaultOrganization
	}
	if opts.TimeScale == 0 {
		opts.TimeScale = 1
	}
	if opts.TimeScale < 0 {
		return nil, fmt.Errorf("time scale %v is negative", opts.TimeScale)
	}
	if opts.ProcessDelay == 0 {
		opts.ProcessDelay = DefaultProcessDelay
	}
	if opts.NotifyTimeout == 0 {
		opts.NotifyTimeout = DefaultNotifyTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = 20
	}
	if err := opts.Faults.Validate(); err != nil {
		return nil, err
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{
			Timeout:       opts.NotifyTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	p, err := loadOrCreatePKI(opts.StateDir, opts.Organization, opts.Now(), opts.Logger)
	if err != nil {
		return nil, err
	}
	mer, err := newMerchantRegistry(opts)
	if err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, opts.DSN, store.Options{ApplicationName: "unionpay-sim", MaxConns: opts.MaxConns})
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	s := &Server{
		opts: opts, db: db, pki: p, log: opts.Logger, mer: mer, http: hc,
		wakeNotifier: make(chan struct{}, 1), wakeProcessor: make(chan struct{}, 1),
		sendSlots: make(chan struct{}, 16), done: make(chan struct{}),
	}
	s.faults.set(opts.Faults)
	if err := s.listen(); err != nil {
		db.Close()
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.runNotifier(bg) }()
	go func() { defer s.wg.Done(); s.runProcessor(bg) }()
	s.log.Info("UnionPay simulator serving", zap.String("url", s.url), zap.String("admin_url", s.adminURL),
		zap.String("root_file", p.rootFile), zap.Float64("time_scale", opts.TimeScale))
	return s, nil
}

func (s *Server) listen() error {
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return err
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: s.gatewayHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, ErrorLog: zap.NewStdLog(s.log)}
	var serving sync.WaitGroup
	serving.Add(1)
	go func() {
		serving.Done()
		err := s.srv.Serve(ln)
		s.setServeErr(err)
	}()
	if s.opts.AdminListen != "off" {
		host, _, err := net.SplitHostPort(s.opts.AdminListen)
		if err != nil {
			s.srv.Close()
			return fmt.Errorf("admin address: %w", err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			s.srv.Close()
			return fmt.Errorf("admin address %s is not a loopback address", s.opts.AdminListen)
		}
		aln, err := net.Listen("tcp", s.opts.AdminListen)
		if err != nil {
			s.srv.Close()
			return err
		}
		s.adminLn = aln
		s.adminURL = "http://" + aln.Addr().String()
		s.adminSrv = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(s.log)}
		go func() { s.setServeErr(s.adminSrv.Serve(aln)) }()
	}
	serving.Wait()
	return nil
}

func (s *Server) setServeErr(err error) {
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		return
	}
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.serveErr == nil {
		s.serveErr = err
		close(s.done)
	}
}

// Done is closed when a listener fails; Err says why.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is the error that stopped serving, if any.
func (s *Server) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.serveErr
}

// Stop stops serving, waits for the background work (an interrupted
// notification is sent again after a restart), and closes the database.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.cancel()
		errs := []error{s.srv.Shutdown(ctx)}
		if s.adminSrv != nil {
			errs = append(errs, s.adminSrv.Shutdown(ctx))
		}
		s.wg.Wait()
		s.db.Close()
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}

// URL is the gateway's base URL ("http://127.0.0.1:port").
func (s *Server) URL() string { return s.url }

// FrontURL, BackURL, QueryURL and FileURL are the endpoints for
// unionpay.Config.
func (s *Server) FrontURL() string { return s.url + PathFront }
func (s *Server) BackURL() string  { return s.url + PathBack }
func (s *Server) QueryURL() string { return s.url + PathQuery }
func (s *Server) FileURL() string  { return s.url + PathFile }

// AdminURL is the admin endpoint's base URL ("" when disabled).
func (s *Server) AdminURL() string { return s.adminURL }

// RootFile is the PEM file of the simulator's root: GridPay's gateway
// roots (unionpay.Config.Roots).
func (s *Server) RootFile() string { return s.pki.rootFile }

// GatewayCertPEM is the signing certificate sent with every message.
func (s *Server) GatewayCertPEM() string { return s.pki.certPEM }

// SetFaults replaces the current faults.
func (s *Server) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	s.faults.set(f)
	s.log.Info("faults set", zap.Any("faults", f))
	s.wake(s.wakeNotifier)
	return nil
}

// Faults returns the current faults (counting faults show what is left).
func (s *Server) Faults() Faults { return s.faults.get() }

// Transactions lists transactions, oldest first.
func (s *Server) Transactions(ctx context.Context, f TxnFilter) ([]Transaction, error) {
	return listTxns(ctx, s.db, f)
}

// Transaction finds one transaction by its merchant key; ErrNotFound if
// there is none.
func (s *Server) Transaction(ctx context.Context, merID, orderID, txnTime string) (Transaction, error) {
	return txnByKey(ctx, s.db, merID, orderID, txnTime, false)
}

// Refunds lists the refunds and cancels of a consume (every state).
func (s *Server) Refunds(ctx context.Context, origQueryID string) ([]Transaction, error) {
	return listTxns(ctx, s.db, TxnFilter{OrigQueryID: origQueryID})
}

// Notifications lists the back notifications of a transaction (all when
// queryID is empty) with every send, oldest first.
func (s *Server) Notifications(ctx context.Context, queryID string) ([]NotificationRecord, error) {
	return listNotifications(ctx, s.db, queryID)
}

// PayURL is the pay page of a pending consume.
func (s *Server) PayURL(t Transaction) string {
	if t.payToken == "" {
		return ""
	}
	return s.url + PathPay + t.payToken
}

// scaled applies the time scale to a wait.
func (s *Server) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * s.opts.TimeScale)
}

func (s *Server) wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// merchantRegistry maps certId to the merchant certificate.
type merchantRegistry struct {
	stateDir string
	mu       sync.Mutex
	byCertID map[string]MerchantCert
	scanned  time.Time
}

func newMerchantRegistry(opts Options) (*merchantRegistry, error) {
	r := &merchantRegistry{stateDir: opts.StateDir, byCertID: map[string]MerchantCert{}}
	all := append([]MerchantCert(nil), opts.MerchantCerts...)
	for _, spec := range opts.MerchantCertFiles {
		mc, err := LoadMerchantCert(spec)
		if err != nil {
			return nil, err
		}
		all = append(all, mc)
	}
	for _, mc := range all {
		if err := r.add(mc); err != nil {
			return nil, err
		}
	}
	if err := r.scan(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *merchantRegistry) add(mc MerchantCert) error {
	if err := unionpay.CheckMerchantID(mc.MerchantID); err != nil {
		return err
	}
	if _, ok := mc.Cert.PublicKey.(*rsa.PublicKey); !ok {
		return fmt.Errorf("merchant %s: the certificate's key is not RSA", mc.MerchantID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	id := unionpay.CertID(mc.Cert)
	if old, ok := r.byCertID[id]; ok && old.MerchantID != mc.MerchantID {
		return fmt.Errorf("certId %s is given for merchants %s and %s", id, old.MerchantID, mc.MerchantID)
	}
	r.byCertID[id] = mc
	return nil
}

// scan (re)loads the certificates in the state directory's merchants
// folder, so that `unionpay-sim merchant-cert` works without a restart.
func (r *merchantRegistry) scan() error {
	mcs, err := merchantsInDir(r.stateDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	r.mu.Lock()
	r.scanned = time.Now()
	r.mu.Unlock()
	for _, mc := range mcs {
		if err := r.add(mc); err != nil {
			return err
		}
	}
	return nil
}

func (r *merchantRegistry) lookup(certID string) (MerchantCert, bool) {
	r.mu.Lock()
	mc, ok := r.byCertID[certID]
	rescan := !ok && time.Since(r.scanned) > time.Second
	r.mu.Unlock()
	if ok || !rescan {
		return mc, ok
	}
	if err := r.scan(); err != nil {
		return MerchantCert{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	mc, ok = r.byCertID[certID]
	return mc, ok
}

package main

import (
	"context"
	"crypto/x509"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/logging"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/store"
)

// Audit log vocabulary of the gateway.
const (
	auditActor        = "gateway"
	actionRefuse      = "gateway.refuse"
	actionPINFailure  = "client.pin_failure"
	auditWriteTimeout = 5 * time.Second
	// auditThrottle is the window within which repeated refusals of the
	// same kind from the same source are audited once (see refused).
	auditThrottle = time.Minute
)

// dbStore is the gateway's view of GridPay's database.
type dbStore struct{ db *store.DB }

func (d dbStore) ActiveBinding(ctx context.Context, certSerial string) (store.Binding, error) {
	return store.ActiveBindingForCert(ctx, d.db, certSerial)
}

func (d dbStore) Audit(ctx context.Context, rec store.AuditRecord) error {
	_, err := store.AppendAudit(ctx, d.db, rec)
	return err
}

// auditLog writes the gateway's audit entries, each also logged.
type auditLog struct {
	a   Auditor
	log *zap.Logger
	now func() time.Time

	mu        sync.Mutex
	recent    map[string]time.Time // throttle key → when last audited
	lastSweep time.Time

	// Handshake refusals are written in the background (see
	// handshakeRefused): slots bounds the writes in flight, pending
	// tracks them so that a shutdown can wait for them.
	slots   chan struct{}
	pending sync.WaitGroup
}

// maxBackgroundAudits bounds the handshake refusals being written at once.
const maxBackgroundAudits = 8

func newAuditLog(a Auditor, log *zap.Logger, now func() time.Time) *auditLog {
	return &auditLog{a: a, log: log, now: now, recent: map[string]time.Time{}, slots: make(chan struct{}, maxBackgroundAudits)}
}

// refusedEvent is one refused request.
type refusedEvent struct {
	code, reason string
	remote       string
	requestID    string
	path         string
	cert         *x509.Certificate // the presented leaf, if any
	p            *principal        // the verified identity, if it got that far
}

// refused audits a refused request: subject the certificate serial (or the
// remote address without a certificate), detail the code, the reason and
// whatever is known of the customer. Never the certificate itself.
func (l *auditLog) refused(ctx context.Context, ev refusedEvent) {
	subject := ev.remote
	if ev.cert != nil {
		subject = pki.SerialHex(ev.cert.SerialNumber)
	}
	detail := map[string]any{
		"code": ev.code, "reason": ev.reason, "remote": ev.remote,
		"request_id": ev.requestID, "path": clip(ev.path, 128),
	}
	fields := []zap.Field{zap.String("code", ev.code), zap.String("reason", ev.reason), zap.String("remote", ev.remote),
		zap.String("request_id", ev.requestID), zap.String(logging.KeyCertSerial, subject)}
	if ev.p != nil {
		detail["customer_id"], detail["token_serial"] = ev.p.id.CustomerID, ev.p.id.TokenSerial
		fields = append(fields, zap.String(logging.KeyCustomerID, ev.p.id.CustomerID), zap.String(logging.KeyTokenSerial, ev.p.id.TokenSerial))
	}
	l.log.Info("refused", fields...)
	// A client in a retry loop would write to the audit log at the very
	// rate it is being refused for: rate_limited refusals are audited once
	// per certificate per minute (each is still logged above).
	if ev.code == api.CodeRateLimited && !l.firstIn(ev.code+" "+subject) {
		return
	}
	l.write(ctx, store.AuditRecord{Actor: auditActor, Action: actionRefuse, Subject: clip(subject, 128), Outcome: store.OutcomeRefused, Detail: detail})
}

// handshakeRefused audits a TLS handshake that failed for want of a client
// certificate. Anyone on the network can cause these, so they are audited
// once per remote IP per minute (each is still logged), and written in the
// background: they come through http.Server's error log, whose writes are
// serialised, and a database round trip there would hold up every other
// connection's. When too many writes are in flight, the entry is dropped
// and that is logged.
func (l *auditLog) handshakeRefused(remote, reason string) {
	ip := remote
	if host, _, err := net.SplitHostPort(remote); err == nil {
		ip = host
	}
	l.log.Info("refused", zap.String("code", api.CodeNoCertificate), zap.String("reason", reason), zap.String("remote", remote))
	if !l.firstIn(api.CodeNoCertificate + " " + ip) {
		return
	}
	rec := store.AuditRecord{
		Actor: auditActor, Action: actionRefuse, Subject: clip(remote, 128), Outcome: store.OutcomeRefused,
		Detail: map[string]any{"code": api.CodeNoCertificate, "reason": clip(reason, 256), "remote": remote, "stage": "tls handshake"},
	}
	select {
	case l.slots <- struct{}{}:
	default:
		l.log.Error("audit log busy: a refused handshake was not audited", zap.String("remote", remote))
		return
	}
	l.pending.Add(1)
	go func() {
		defer func() {
			<-l.slots
			l.pending.Done()
		}()
		l.write(context.Background(), rec)
	}()
}

// wait returns once the background writes have finished.
func (l *auditLog) wait() { l.pending.Wait() }

// firstIn reports whether key was not seen within auditThrottle, and
// remembers it.
func (l *auditLog) firstIn(key string) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= auditThrottle {
		for k, t := range l.recent {
			if now.Sub(t) >= auditThrottle {
				delete(l.recent, k)
			}
		}
		l.lastSweep = now
	}
	if t, ok := l.recent[key]; ok && now.Sub(t) < auditThrottle {
		return false
	}
	l.recent[key] = now
	return true
}

// write appends one entry for a refusal: a failure to audit is logged,
// never hides the answer.
func (l *auditLog) write(ctx context.Context, rec store.AuditRecord) {
	if err := l.append(ctx, rec); err != nil {
		l.log.Error("writing the audit log", zap.String("action", rec.Action), zap.String("subject", rec.Subject), zap.Error(err))
	}
}

// append appends one entry, even if the client hangs up meanwhile.
func (l *auditLog) append(ctx context.Context, rec store.AuditRecord) error {
	if l.a == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditWriteTimeout)
	defer cancel()
	return l.a.Audit(ctx, rec)
}

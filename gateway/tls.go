package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/pki"
)

// serverTLSConfig is TLS 1.3 only, with a client certificate required at
// the handshake: a client without one never gets to send a request. The
// chain, validity, revocation and binding of that certificate are checked
// on every request instead (Server.authenticate), so that a refused client
// gets a reason it can show rather than a bare TLS alert. For the same
// reason the certificate request names no acceptable CAs: clients that
// filter their certificates by those names (Go's, browsers) would send
// none at all from another CA, and get an alert instead of unknown_ca.
func serverTLSConfig(cert tls.Certificate, now func() time.Time) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		ClientAuth:   tls.RequireAnyClientCert,
		Certificates: []tls.Certificate{cert},
		Time:         now,
	}
}

// checkServerCertificate refuses to serve with a server certificate that
// clients would refuse: expired, revoked, not a GridPay server
// certificate. A CRL that is missing or stale only warns: customers are
// then refused with "unavailable" until the next CRL, which the gateway
// picks up without a restart.
func checkServerCertificate(v CertVerifier, cert *x509.Certificate, now time.Time, log *zap.Logger) error {
	_, err := v.Verify([]*x509.Certificate{cert}, now, x509.ExtKeyUsageServerAuth)
	switch {
	case err == nil:
	case errors.Is(err, pki.ErrNoCRL), errors.Is(err, pki.ErrCRLStale):
		log.Warn("cannot check the revocation of the gateway's own certificate", zap.Error(err))
	default:
		return fmt.Errorf("the gateway's TLS certificate cannot be used: %w (issue a new one: adminctl ca issue --server --name gateway ...)", err)
	}
	if left := cert.NotAfter.Sub(now); left < 30*24*time.Hour {
		log.Warn("the gateway's TLS certificate expires soon; renew it with adminctl ca issue --server", zap.Time("not_after", cert.NotAfter))
	}
	return nil
}

// serverErrorLog receives what http.Server logs, mostly failed TLS
// handshakes, which never reach a handler: a client without a certificate
// is refused there, and that refusal is audited from here.
type serverErrorLog struct {
	log   *zap.Logger
	audit *auditLog
}

func newServerErrorLog(l *zap.Logger, a *auditLog) *log.Logger {
	return log.New(&serverErrorLog{log: l, audit: a}, "", 0)
}

const handshakePrefix = "http: TLS handshake error from "

func (e *serverErrorLog) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	rest, ok := strings.CutPrefix(line, handshakePrefix)
	if !ok {
		e.log.Warn("http server", zap.String("message", clip(line, 512)))
		return len(p), nil
	}
	remote, reason, _ := strings.Cut(rest, ": ")
	reason = clip(reason, 256)
	switch {
	case strings.Contains(reason, "client didn't provide a certificate"):
		e.audit.handshakeRefused(remote, "no client certificate presented in the TLS handshake")
	case strings.Contains(reason, "unsupported versions"), strings.Contains(reason, "protocol version"):
		e.log.Info("TLS handshake refused: TLS 1.3 is required", zap.String("remote", remote), zap.String("reason", reason))
	case reason == "EOF" || strings.Contains(reason, "connection reset") || strings.Contains(reason, "i/o timeout"):
		e.log.Debug("TLS handshake abandoned", zap.String("remote", remote), zap.String("reason", reason))
	default:
		e.log.Info("TLS handshake failed", zap.String("remote", remote), zap.String("reason", reason))
	}
	return len(p), nil
}

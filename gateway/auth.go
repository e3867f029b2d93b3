package main

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/store"
)

// certOf is the client certificate of the request's connection: the leaf
// the client proved it holds the key of in the handshake (TLS checks the
// CertificateVerify signature even though it leaves the chain to us).
func certOf(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}

// authenticate establishes who sends the request, on every request rather
// than once per connection: a certificate revoked, or a CRL gone stale,
// while a connection is open is refused at its next request. The handshake
// only demands a certificate (tls.RequireAnyClientCert); checking it here
// lets the client get a reason it can show instead of a TLS alert.
//
// The rate limit comes first, keyed by the certificate itself, so that a
// client retrying with a refused certificate cannot make the gateway
// verify and audit without bound.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*principal, bool) {
	cert := certOf(r)
	if cert == nil {
		// Only reachable without TLS client authentication in front (the
		// real listener refuses such a handshake); refuse all the same.
		s.refuse(w, r, refusal{
			status: http.StatusUnauthorized, code: api.CodeNoCertificate,
			message: "no client certificate was presented: insert your USB key and log in",
			reason:  "no client certificate",
		})
		return nil, false
	}
	now := s.now()
	if wait, ok := s.limits.allow(sha256.Sum256(cert.Raw), now); !ok {
		secs := retryAfterSeconds(wait)
		s.refuse(w, r, refusal{
			status: http.StatusTooManyRequests, code: api.CodeRateLimited,
			message:    fmt.Sprintf("too many requests from this USB key; please retry in %d s", secs),
			reason:     fmt.Sprintf("over %g requests per second (burst %d)", s.limits.rate, s.limits.burst),
			retryAfter: secs,
		})
		return nil, false
	}
	id, err := s.verifier.Verify(r.TLS.PeerCertificates, now, x509.ExtKeyUsageClientAuth)
	if err != nil {
		rf := certRefusal(err)
		if rf.code == api.CodeUnavailable {
			s.log.Error("cannot check revocation: is the CRL publication running?", zap.String("request_id", stateOf(r).id), zap.Error(err))
		}
		s.refuse(w, r, rf)
		return nil, false
	}
	if id.Kind != pki.KindCustomer {
		s.refuse(w, r, refusal{
			status: http.StatusUnauthorized, code: api.CodeUnknownCA,
			message: "only the certificate of a customer's USB key, issued by GridPay's customer CA, can log in here",
			reason:  fmt.Sprintf("a %s certificate (%s) presented as a customer's", id.Kind, id),
		})
		return nil, false
	}
	return &principal{cert: cert, serial: pki.SerialHex(cert.SerialNumber), id: id}, true
}

// certRefusal maps a verification failure to what the client is told.
// pki's error texts are written for the person holding the certificate, so
// they lead the message; a hint says what to do.
func certRefusal(err error) refusal {
	reason := clip(err.Error(), 512)
	rf := refusal{status: http.StatusUnauthorized, reason: reason}
	switch {
	case errors.Is(err, pki.ErrRevoked):
		rf.code = api.CodeCertRevoked
		rf.message = reason + ". This USB key can no longer be used; please contact the power company."
	case errors.Is(err, pki.ErrExpired):
		rf.code = api.CodeCertExpired
		rf.message = reason + ". Please ask the power company to renew the certificate of your USB key."
	case errors.Is(err, pki.ErrNotYetValid):
		rf.code = api.CodeCertExpired
		rf.message = reason + ". Please check the date and time of this computer."
	case errors.Is(err, pki.ErrUnknownCA):
		rf.code = api.CodeUnknownCA
		rf.message = reason + ". Please use the USB key the power company issued to you."
	case errors.Is(err, pki.ErrNoCRL), errors.Is(err, pki.ErrCRLStale):
		// Not the customer's fault: we cannot tell whether the key was
		// revoked, so we fail closed and say it is on our side.
		rf.status = http.StatusServiceUnavailable
		rf.code = api.CodeUnavailable
		rf.message = "service unavailable: the revocation status of your certificate cannot be checked right now; please try again later"
	default: // ErrBadCertificate, ErrWrongUsage
		rf.code = api.CodeCertInvalid
		rf.message = reason + ". This is not a GridPay customer certificate for logging in."
	}
	return rf
}

// checkBinding makes sure the certificate belongs to an active binding of
// the very customer and token it names. Run on every request, so that a key
// unbound while its connection is open is refused at its next request.
func (s *Server) checkBinding(w http.ResponseWriter, r *http.Request, p *principal) bool {
	b, err := s.bindings.ActiveBinding(r.Context(), p.serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.refuse(w, r, refusal{
			status: http.StatusForbidden, code: api.CodeNotBound, message: msgNotBound,
			reason: "no active binding for this certificate",
		})
		return false
	case err != nil:
		s.log.Error("looking up the binding", zap.String("request_id", stateOf(r).id), zap.Error(err))
		s.fail(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, msgUnavailable)
		return false
	case b.CustomerID != p.id.CustomerID || b.TokenSerial != p.id.TokenSerial:
		s.refuse(w, r, refusal{
			status: http.StatusForbidden, code: api.CodeNotBound, message: msgNotBound,
			reason: fmt.Sprintf("active binding %d is for customer %s token %s, the certificate names customer %s token %s",
				b.ID, b.CustomerID, b.TokenSerial, p.id.CustomerID, p.id.TokenSerial),
		})
		return false
	}
	return true
}

const msgNotBound = "this USB key is not bound to a customer account (it was unbound or replaced, or its binding was never completed); please contact the power company"

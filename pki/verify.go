package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridpay/gridpay/internal/derrors"
)

// VerifierConfig is what a Verifier trusts.
type VerifierConfig struct {
	Roots []*x509.Certificate // GridPay root CAs (more than one during a rollover)
	// Intermediates are the issuing CAs; each must be signed by one of Roots.
	// Only leaves issued by one of these are accepted.
	Intermediates []*x509.Certificate
	// CRLs are the current DER CRLs: one from each root (covering the
	// issuing CAs) and one from each issuing CA. They may also be loaded
	// later with UpdateCRL; until then verification fails with ErrNoCRL.
	CRLs [][]byte
	// NoChainCache turns off the memo of verified chains (benchmarks
	// compare with it).
	NoChainCache bool
}

// Verifier checks certificates presented to GridPay: chain, validity,
// purpose, profile and revocation. It is safe for concurrent use; UpdateCRL
// swaps in a new CRL atomically while Verify calls go on.
type Verifier struct {
	roots     []*caEntry
	issuing   []*caEntry
	rootPool  *x509.CertPool
	interPool *x509.CertPool

	mu   sync.Mutex // serialises UpdateCRL; Verify only loads crls
	crls atomic.Pointer[crlMap]

	chains *chainCache // nil: off
}

// chainCache memoizes what Verify learns from a certificate's bytes and
// the configured CAs alone, which never change for a Verifier: the issuing
// CA whose key signed it, that it chains to a root through that CA with
// the usage, and its identity and profile. The expensive part of Verify
// (signature checks, path building) is done once per certificate; time
// and revocation are checked on every call, so a CRL update or an expiry
// takes effect at the next request.
type chainCache struct {
	mu sync.RWMutex
	m  map[chainKey]chainEntry
}

type chainKey struct {
	leaf  [sha256.Size]byte
	usage x509.ExtKeyUsage
}

type chainEntry struct {
	issuer *caEntry
	id     Identity
}

// maxChainCache bounds the memo; when full it starts over (customers'
// certificates number in the thousands).
const maxChainCache = 1 << 14

func (c *chainCache) get(k chainKey) (chainEntry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.m[k]
	return e, ok
}

func (c *chainCache) put(k chainKey, e chainEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxChainCache {
		c.m = make(map[chainKey]chainEntry)
	}
	c.m[k] = e
}

type caEntry struct {
	cert   *x509.Certificate
	role   Role
	id     [sha256.Size]byte // of cert.Raw; keys the CRL map
	parent *caEntry          // the root, for issuing CAs
}

type crlMap map[[sha256.Size]byte]*crlState

// crlState is a parsed CRL whose signature has been checked.
type crlState struct {
	raw        []byte
	number     *big.Int
	nextUpdate time.Time
	revoked    map[string]x509.RevocationListEntry // by serial in decimal
}

// NewVerifier checks the configuration (roots self-signed, each issuing CA
// signed by a root and carrying a GridPay role) and loads the CRLs.
func NewVerifier(cfg VerifierConfig) (_ *Verifier, err error) {
	defer derrors.Wrap(&err, "NewVerifier")
	if len(cfg.Roots) == 0 {
		return nil, fmt.Errorf("%w: no root CA configured", ErrNotCA)
	}
	if len(cfg.Intermediates) == 0 {
		return nil, fmt.Errorf("%w: no issuing CA configured", ErrNotCA)
	}
	v := &Verifier{rootPool: x509.NewCertPool(), interPool: x509.NewCertPool()}
	if !cfg.NoChainCache {
		v.chains = &chainCache{m: make(map[chainKey]chainEntry)}
	}
	seen := map[[sha256.Size]byte]bool{}
	for _, c := range cfg.Roots {
		if RoleOf(c) != RoleRoot {
			return nil, fmt.Errorf("%w: %s is not a root CA", ErrNotCA, describeCert(c))
		}
		if err := c.CheckSignatureFrom(c); err != nil {
			return nil, fmt.Errorf("%w: root %s is not validly self-signed: %v", ErrNotCA, describeCert(c), err)
		}
		e := &caEntry{cert: c, role: RoleRoot, id: sha256.Sum256(c.Raw)}
		if seen[e.id] {
			continue
		}
		seen[e.id] = true
		v.roots = append(v.roots, e)
		v.rootPool.AddCert(c)
	}
	for _, c := range cfg.Intermediates {
		role := RoleOf(c)
		if role != RoleCustomer && role != RoleServices {
			return nil, fmt.Errorf("%w: %s is not a GridPay issuing CA", ErrNotCA, describeCert(c))
		}
		e := &caEntry{cert: c, role: role, id: sha256.Sum256(c.Raw)}
		if seen[e.id] {
			continue
		}
		for _, r := range v.roots {
			if bytes.Equal(c.RawIssuer, r.cert.RawSubject) && c.CheckSignatureFrom(r.cert) == nil {
				e.parent = r
				break
			}
		}
		if e.parent == nil {
			return nil, fmt.Errorf("%w: issuing CA %s is not signed by a configured root", ErrNotCA, describeCert(c))
		}
		seen[e.id] = true
		v.issuing = append(v.issuing, e)
		v.interPool.AddCert(c)
	}
	v.crls.Store(&crlMap{})
	for i, der := range cfg.CRLs {
		if err := v.UpdateCRL(der); err != nil {
			return nil, fmt.Errorf("CRL %d: %w", i+1, err)
		}
	}
	return v, nil
}

// UpdateCRL installs a CRL after checking it: it must parse, be signed by
// the configured CA it names as issuer (a forged or foreign CRL is
// refused), carry a CRL number and a next update, and not be older than
// the CRL in use for that CA. Installing the same CRL again is a no-op. A
// CRL whose next update has passed is accepted, and Verify reports it as
// stale until a newer one arrives.
func (v *Verifier) UpdateCRL(der []byte) (err error) {
	defer derrors.Wrap(&err, "Verifier.UpdateCRL")
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return withDetail(ErrBadCRL, "cannot parse: %v", err)
	}
	ca, err := v.crlIssuer(crl)
	if err != nil {
		return err
	}
	if crl.Number == nil {
		return withDetail(ErrBadCRL, "%s has no CRL number", describeCRL(crl))
	}
	if crl.NextUpdate.IsZero() || !crl.NextUpdate.After(crl.ThisUpdate) {
		return withDetail(ErrBadCRL, "%s has no valid next update", describeCRL(crl))
	}
	st := &crlState{
		raw:        bytes.Clone(der),
		number:     crl.Number,
		nextUpdate: crl.NextUpdate,
		revoked:    make(map[string]x509.RevocationListEntry, len(crl.RevokedCertificateEntries)),
	}
	for _, e := range crl.RevokedCertificateEntries {
		st.revoked[e.SerialNumber.String()] = e
	}

	v.mu.Lock()
	defer v.mu.Unlock()
	cur := *v.crls.Load()
	if old := cur[ca.id]; old != nil {
		switch crl.Number.Cmp(old.number) {
		case -1:
			return withDetail(ErrCRLOlder, "%s, the one in use is number %s", describeCRL(crl), old.number)
		case 0:
			if bytes.Equal(old.raw, der) {
				return nil
			}
			return withDetail(ErrBadCRL, "%s differs from the CRL in use with the same number", describeCRL(crl))
		}
	}
	next := maps.Clone(cur)
	next[ca.id] = st
	v.crls.Store(&next)
	return nil
}

// CRLs returns the CRLs in use (DER), ordered by issuer, for relying
// parties that check certificates themselves: the desktop client checks
// GridPay's load signer with them.
func (v *Verifier) CRLs() [][]byte {
	cur := *v.crls.Load()
	var out [][]byte
	for _, ca := range v.allCAs() {
		if st := cur[ca.id]; st != nil {
			out = append(out, bytes.Clone(st.raw))
		}
	}
	return out
}

// crlIssuer finds the configured CA that signed crl.
func (v *Verifier) crlIssuer(crl *x509.RevocationList) (*caEntry, error) {
	named := false
	for _, e := range v.allCAs() {
		if !bytes.Equal(crl.RawIssuer, e.cert.RawSubject) {
			continue
		}
		named = true
		if len(crl.AuthorityKeyId) > 0 && !bytes.Equal(crl.AuthorityKeyId, e.cert.SubjectKeyId) {
			continue
		}
		if crl.CheckSignatureFrom(e.cert) == nil {
			return e, nil
		}
	}
	if !named {
		return nil, withDetail(ErrBadCRL, "%s was issued by %s, which is not a configured CA", describeCRL(crl), crl.Issuer)
	}
	return nil, withDetail(ErrBadCRL, "the signature of %s does not verify against the configured CA %s", describeCRL(crl), crl.Issuer)
}

func (v *Verifier) allCAs() []*caEntry {
	return append(append([]*caEntry(nil), v.roots...), v.issuing...)
}

func describeCRL(crl *x509.RevocationList) string {
	if crl.Number == nil {
		return "CRL"
	}
	return "CRL number " + crl.Number.String()
}

// Verify checks a certificate presented for usage (x509.ExtKeyUsageClientAuth
// for customers and services logging in, x509.ExtKeyUsageServerAuth for the
// gateway) at time now (zero: the current time), and returns whom it
// identifies. chain[0] is the leaf; the rest of chain, as a TLS peer sends
// it, is not needed and not used: only the configured issuing CAs and
// roots are trusted.
//
// It checks, failing closed:
//   - the leaf was issued by a configured issuing CA under a configured
//     root (ErrUnknownCA);
//   - the leaf, the issuing CA and the root are valid at now (ErrExpired,
//     ErrNotYetValid);
//   - the path is valid for usage (ErrWrongUsage, ErrBadCertificate);
//   - the leaf follows the GridPay profile for its kind, and its kind comes
//     from the right CA: customers from the customer CA, services and
//     servers from the services CA (ErrBadCertificate, ErrUnknownCA);
//   - neither the leaf nor the issuing CA is revoked (ErrRevoked), by CRLs
//     that are present (ErrNoCRL) and current (ErrCRLStale).
//
// Errors are always a *VerifyError, returned without an operation prefix
// because its message is meant for the client.
func (v *Verifier) Verify(chain []*x509.Certificate, now time.Time, usage x509.ExtKeyUsage) (Identity, error) {
	if len(chain) == 0 || chain[0] == nil {
		return Identity{}, &VerifyError{Err: ErrBadCertificate, Detail: "no certificate presented"}
	}
	leaf := chain[0]
	if now.IsZero() {
		now = time.Now()
	}
	if usage != x509.ExtKeyUsageClientAuth && usage != x509.ExtKeyUsageServerAuth {
		return Identity{}, &VerifyError{Err: ErrWrongUsage, Detail: "only client and server authentication can be checked, not " + usageName(usage)}
	}
	key := chainKey{leaf: sha256.Sum256(leaf.Raw), usage: usage}
	var known chainEntry
	var ok bool
	if v.chains != nil {
		known, ok = v.chains.get(key)
	}
	issuer, id := known.issuer, known.id
	if !ok {
		issuer = v.issuerOf(leaf)
		if issuer == nil {
			return Identity{}, leafError(leaf, ErrUnknownCA, "issued by %s", leaf.Issuer)
		}
	}
	if err := checkTime(leaf, "", now); err != nil {
		return Identity{}, err
	}
	if err := checkTime(issuer.cert, "the issuing CA", now); err != nil {
		return Identity{}, err
	}
	if err := checkTime(issuer.parent.cert, "the root CA", now); err != nil {
		return Identity{}, err
	}
	if !ok {
		var err error
		if id, err = v.verifyChain(leaf, issuer, now, usage); err != nil {
			return Identity{}, err
		}
		if v.chains != nil {
			v.chains.put(key, chainEntry{issuer: issuer, id: id})
		}
	}
	crls := *v.crls.Load()
	if err := checkRevoked(crls, issuer, leaf, now); err != nil {
		return Identity{}, err
	}
	if err := checkRevoked(crls, issuer.parent, issuer.cert, now); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// verifyChain checks what depends only on the certificate and the
// configured CAs: the path to a root through issuer with the usage, and
// the leaf's identity and profile.
func (v *Verifier) verifyChain(leaf *x509.Certificate, issuer *caEntry, now time.Time, usage x509.ExtKeyUsage) (Identity, error) {
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.rootPool,
		Intermediates: v.interPool,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return Identity{}, mapX509Error(leaf, usage, err)
	}
	if !throughIssuer(chains, issuer) {
		return Identity{}, leafError(leaf, ErrUnknownCA, "does not chain to a configured root through %s", issuer.cert.Subject)
	}
	id, err := identityOf(leaf)
	if err != nil {
		return Identity{}, leafError(leaf, ErrBadCertificate, "%s", detailOf(err))
	}
	if err := checkKind(leaf, id, issuer, usage); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// issuerOf finds the configured issuing CA whose key signed leaf.
func (v *Verifier) issuerOf(leaf *x509.Certificate) *caEntry {
	for _, e := range v.issuing {
		if !bytes.Equal(leaf.RawIssuer, e.cert.RawSubject) {
			continue
		}
		if len(leaf.AuthorityKeyId) > 0 && !bytes.Equal(leaf.AuthorityKeyId, e.cert.SubjectKeyId) {
			continue
		}
		if leaf.CheckSignatureFrom(e.cert) == nil {
			return e
		}
	}
	return nil
}

func throughIssuer(chains [][]*x509.Certificate, issuer *caEntry) bool {
	for _, ch := range chains {
		if len(ch) == 3 && ch[1].Equal(issuer.cert) && ch[2].Equal(issuer.parent.cert) {
			return true
		}
	}
	return false
}

func checkTime(c *x509.Certificate, what string, now time.Time) *VerifyError {
	var e *VerifyError
	switch {
	case now.Before(c.NotBefore):
		e = leafError(c, ErrNotYetValid, "valid from %s, now is %s", stamp(c.NotBefore), stamp(now))
	case now.After(c.NotAfter):
		e = leafError(c, ErrExpired, "expired at %s, now is %s", stamp(c.NotAfter), stamp(now))
	default:
		return nil
	}
	if what != "" {
		e.Detail = what + " " + e.Detail
	}
	return e
}

// checkKind makes sure each kind of certificate comes from the CA entitled
// to issue it and is presented for its own purpose: a service certificate
// must not pass for a customer, nor a customer's for the gateway.
func checkKind(leaf *x509.Certificate, id Identity, issuer *caEntry, usage x509.ExtKeyUsage) *VerifyError {
	want := RoleServices
	if id.Kind == KindCustomer {
		want = RoleCustomer
	}
	if issuer.role != want {
		return leafError(leaf, ErrUnknownCA, "%s certificates must be issued by the %s, not %s", id.Kind, want, issuer.cert.Subject)
	}
	serverKind := id.Kind == KindServer
	if serverKind != (usage == x509.ExtKeyUsageServerAuth) {
		return leafError(leaf, ErrWrongUsage, "a %s certificate is not valid for %s", id.Kind, usageName(usage))
	}
	return nil
}

func usageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageClientAuth:
		return "client authentication"
	case x509.ExtKeyUsageServerAuth:
		return "server authentication"
	}
	return fmt.Sprintf("extended key usage %d", u)
}

func checkRevoked(crls crlMap, ca *caEntry, cert *x509.Certificate, now time.Time) *VerifyError {
	st := crls[ca.id]
	if st == nil {
		return &VerifyError{Err: ErrNoCRL, Subject: describeCert(ca.cert),
			Detail: "cannot tell whether " + describeCert(cert) + " is revoked"}
	}
	if now.After(st.nextUpdate) {
		return &VerifyError{Err: ErrCRLStale, Subject: describeCert(ca.cert),
			Detail: fmt.Sprintf("CRL number %s was due to be replaced at %s, now is %s", st.number, stamp(st.nextUpdate), stamp(now))}
	}
	entry, ok := st.revoked[cert.SerialNumber.String()]
	if !ok {
		return nil
	}
	reason := Reason(entry.ReasonCode)
	return &VerifyError{
		Err:       ErrRevoked,
		Subject:   describeCert(cert),
		Serial:    cert.SerialNumber,
		Reason:    reason,
		RevokedAt: entry.RevocationTime,
		Detail:    fmt.Sprintf("revoked at %s, reason: %s", stamp(entry.RevocationTime), reason.Text()),
	}
}

func leafError(c *x509.Certificate, sentinel error, format string, args ...any) *VerifyError {
	return &VerifyError{Err: sentinel, Subject: describeCert(c), Serial: c.SerialNumber, Detail: fmt.Sprintf(format, args...)}
}

// mapX509Error turns crypto/x509's path validation errors into ours.
func mapX509Error(leaf *x509.Certificate, usage x509.ExtKeyUsage, err error) *VerifyError {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return leafError(leaf, ErrUnknownCA, "%v", err)
	case errors.As(err, &invalid):
		c := leaf
		if invalid.Cert != nil {
			c = invalid.Cert
		}
		switch invalid.Reason {
		case x509.Expired:
			return leafError(c, ErrExpired, "%s", invalid.Detail)
		case x509.IncompatibleUsage:
			return leafError(c, ErrWrongUsage, "not valid for %s", usageName(usage))
		}
		return leafError(c, ErrBadCertificate, "%v", err)
	default:
		return leafError(leaf, ErrBadCertificate, "%v", err)
	}
}

// detailOf returns the explanation of a withDetail error, or its message.
func detailOf(err error) string {
	var d *detailed
	if errors.As(err, &d) {
		return d.detail
	}
	return err.Error()
}

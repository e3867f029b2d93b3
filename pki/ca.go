package pki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/gridpay/gridpay/internal/derrors"
)

// Default lifetimes, used when a request leaves Validity at zero. A
// certificate never outlives its issuer: NotAfter is cut to the issuer's.
const (
	DefaultRootValidity     = 20 * 365 * 24 * time.Hour
	DefaultIssuingValidity  = 10 * 365 * 24 * time.Hour
	DefaultCustomerValidity = 2 * 365 * 24 * time.Hour
	DefaultServerValidity   = 365 * 24 * time.Hour
	DefaultServiceValidity  = 365 * 24 * time.Hour
)

// ClockSkew is how far NotBefore is set back from the issuing time, so that
// a relying party whose clock is a little behind accepts a fresh
// certificate.
const ClockSkew = 5 * time.Minute

// Organizational units that mark the kind of a leaf certificate.
const (
	OUCustomer = "Customer"
	OUService  = "Service"
	OUServer   = "Server"
)

// Role is what a CA certificate is for.
type Role int

const (
	RoleUnknown  Role = iota
	RoleRoot          // self-signed; signs issuing CAs and its own CRL
	RoleCustomer      // issues USB-key client certificates
	RoleServices      // issues GridPay's server and service certificates
)

func (r Role) String() string {
	switch r {
	case RoleRoot:
		return "root CA"
	case RoleCustomer:
		return "customer CA"
	case RoleServices:
		return "services CA"
	default:
		return "unknown role"
	}
}

// ekus is the extended key usage an issuing CA of the role carries. It
// constrains what the CA can usefully issue (Go and OpenSSL check that a
// leaf's purpose is allowed all along its chain) and tells the two issuing
// CAs apart.
func (r Role) ekus() []x509.ExtKeyUsage {
	switch r {
	case RoleCustomer:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case RoleServices:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	return nil
}

// RoleOf returns the role of a CA certificate made by this package, or
// RoleUnknown for anything else (leaves included).
func RoleOf(cert *x509.Certificate) Role {
	if cert == nil || !cert.IsCA || !cert.BasicConstraintsValid {
		return RoleUnknown
	}
	if bytes.Equal(cert.RawIssuer, cert.RawSubject) {
		if len(cert.ExtKeyUsage) == 0 {
			return RoleRoot
		}
		return RoleUnknown
	}
	eku := slices.Clone(cert.ExtKeyUsage)
	slices.Sort(eku)
	for _, r := range []Role{RoleCustomer, RoleServices} {
		want := r.ekus()
		slices.Sort(want)
		if slices.Equal(eku, want) {
			return r
		}
	}
	return RoleUnknown
}

// CA is a certificate authority: its certificate and the signer holding its
// private key (normally in the HSM). Build it with NewCA, which checks that
// the two belong together.
type CA struct {
	Cert   *x509.Certificate
	Signer crypto.Signer
	// CRLURL, if set, is where this CA publishes its CRL. It is written as
	// the CRL distribution point of every certificate the CA signs.
	CRLURL string
}

// NewCA pairs a CA certificate with the signer of its private key. It
// refuses a signer whose public key differs from the certificate's (the
// usual mistake: the wrong HSM object), a certificate that is not a CA, and
// a key this package would not accept from a customer.
func NewCA(cert *x509.Certificate, signer crypto.Signer) (_ *CA, err error) {
	defer derrors.Wrap(&err, "NewCA(%s)", describeCert(cert))
	ca := &CA{Cert: cert, Signer: signer}
	if err := ca.check(); err != nil {
		return nil, err
	}
	return ca, nil
}

// check is run by NewCA and again before every signature, since CA's fields
// are exported and may have been set by hand.
func (ca *CA) check() error {
	if ca == nil || ca.Cert == nil {
		return fmt.Errorf("%w: no CA certificate", ErrNotCA)
	}
	if ca.Signer == nil {
		return fmt.Errorf("%w: no signer", ErrNotCA)
	}
	c := ca.Cert
	if !c.BasicConstraintsValid || !c.IsCA {
		return fmt.Errorf("%w: certificate is not a CA certificate", ErrNotCA)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 || c.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return fmt.Errorf("%w: key usage lacks certificate or CRL signing", ErrNotCA)
	}
	if len(c.SubjectKeyId) == 0 {
		// Issued certificates and CRLs name their issuer's key by it.
		return fmt.Errorf("%w: certificate has no subject key identifier", ErrNotCA)
	}
	if err := checkPublicKey(c.PublicKey); err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	if !sameKey(ca.Signer.Public(), c.PublicKey) {
		return ErrSignerMismatch
	}
	return nil
}

// checkRole makes sure the CA may sign for the given role.
func (ca *CA) checkRole(want Role) error {
	if err := ca.check(); err != nil {
		return err
	}
	if got := RoleOf(ca.Cert); got != want {
		return fmt.Errorf("%w: %s is a %s, this needs the %s", ErrNotCA, describeCert(ca.Cert), got, want)
	}
	return nil
}

// RootOptions describe a new root CA.
type RootOptions struct {
	CommonName   string        // required, e.g. "GridPay Root CA"
	Organization string        // required; issued certificates repeat it
	Country      string        // optional two-letter code, e.g. "CN"
	Validity     time.Duration // zero means DefaultRootValidity
	Now          time.Time     // zero means time.Now()
}

// NewRoot creates the self-signed root certificate for signer's key. The
// root signs only issuing CAs (path length 1) and its own CRL.
func NewRoot(signer crypto.Signer, opts RootOptions) (_ *x509.Certificate, err error) {
	defer derrors.Wrap(&err, "NewRoot(%q)", clip(opts.CommonName))
	if signer == nil {
		return nil, fmt.Errorf("%w: no signer", ErrNotCA)
	}
	if err := checkText("CommonName", opts.CommonName, true, maxCommonName); err != nil {
		return nil, err
	}
	if err := checkText("Organization", opts.Organization, true, maxCommonName); err != nil {
		return nil, err
	}
	if err := checkCountry(opts.Country); err != nil {
		return nil, err
	}
	validity, err := pickValidity(opts.Validity, DefaultRootValidity)
	if err != nil {
		return nil, err
	}
	pub := signer.Public()
	if err := checkPublicKey(pub); err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	now := pickNow(opts.Now)
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: opts.CommonName, Organization: []string{opts.Organization}},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	if opts.Country != "" {
		tmpl.Subject.Country = []string{opts.Country}
	}
	if tmpl.SerialNumber, err = newSerial(rand.Reader); err != nil {
		return nil, err
	}
	if tmpl.SubjectKeyId, err = keyID(pub); err != nil {
		return nil, err
	}
	tmpl.AuthorityKeyId = tmpl.SubjectKeyId
	return sign(tmpl, tmpl, pub, signer)
}

// IssuingOptions describe a new issuing CA.
type IssuingOptions struct {
	CommonName   string        // required, e.g. "GridPay Customer CA"
	Role         Role          // RoleCustomer or RoleServices
	Organization string        // empty: the root's
	Country      string        // empty: the root's
	Validity     time.Duration // zero means DefaultIssuingValidity
	Now          time.Time     // zero means time.Now()
}

// NewIssuing has the root sign an issuing CA certificate for pub (path
// length 0: it signs leaves only). The role decides the extended key usage
// of the new CA and so what it may issue.
func NewIssuing(root *CA, pub crypto.PublicKey, opts IssuingOptions) (_ *x509.Certificate, err error) {
	defer derrors.Wrap(&err, "NewIssuing(%q, %s)", clip(opts.CommonName), opts.Role)
	if err := root.checkRole(RoleRoot); err != nil {
		return nil, err
	}
	if opts.Role != RoleCustomer && opts.Role != RoleServices {
		return nil, fmt.Errorf("%w: Role must be %s or %s", ErrInvalidRequest, RoleCustomer, RoleServices)
	}
	if err := checkText("CommonName", opts.CommonName, true, maxCommonName); err != nil {
		return nil, err
	}
	if err := checkText("Organization", opts.Organization, false, maxCommonName); err != nil {
		return nil, err
	}
	if err := checkCountry(opts.Country); err != nil {
		return nil, err
	}
	if opts.CommonName == root.Cert.Subject.CommonName {
		// The same name would make the issuing CA look self-issued.
		return nil, fmt.Errorf("%w: CommonName must differ from the root's", ErrInvalidRequest)
	}
	if err := checkPublicKey(pub); err != nil {
		return nil, fmt.Errorf("issuing CA key: %w", err)
	}
	if sameKey(root.Cert.PublicKey, pub) {
		return nil, fmt.Errorf("%w: the issuing CA must not reuse the root's key", ErrWeakKey)
	}
	validity, err := pickValidity(opts.Validity, DefaultIssuingValidity)
	if err != nil {
		return nil, err
	}
	subject := pkix.Name{
		CommonName:   opts.CommonName,
		Organization: root.Cert.Subject.Organization,
		Country:      root.Cert.Subject.Country,
	}
	if opts.Organization != "" {
		subject.Organization = []string{opts.Organization}
	}
	if opts.Country != "" {
		subject.Country = []string{opts.Country}
	}
	tmpl := &x509.Certificate{
		Subject:               subject,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           opts.Role.ekus(),
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	return root.issue(tmpl, pub, validity, opts.Now)
}

// issue fills in what every certificate signed by ca shares (serial,
// validity window, key identifiers, CRL distribution point) and signs.
func (ca *CA) issue(tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration, now time.Time) (*x509.Certificate, error) {
	var err error
	if tmpl.NotBefore, tmpl.NotAfter, err = ca.window(pickNow(now), validity); err != nil {
		return nil, err
	}
	if tmpl.SerialNumber, err = newSerial(rand.Reader); err != nil {
		return nil, err
	}
	if tmpl.SubjectKeyId, err = keyID(pub); err != nil {
		return nil, err
	}
	tmpl.AuthorityKeyId = ca.Cert.SubjectKeyId
	if ca.CRLURL != "" {
		if err := checkCRLURL(ca.CRLURL); err != nil {
			return nil, err
		}
		tmpl.CRLDistributionPoints = []string{ca.CRLURL}
	}
	return sign(tmpl, ca.Cert, pub, ca.Signer)
}

// window computes NotBefore and NotAfter for a certificate issued at now.
func (ca *CA) window(now time.Time, validity time.Duration) (notBefore, notAfter time.Time, err error) {
	issuer := ca.Cert
	if now.Before(issuer.NotBefore) || now.After(issuer.NotAfter) {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: %s is valid from %s to %s, signing at %s",
			ErrCAValidity, describeCert(issuer), stamp(issuer.NotBefore), stamp(issuer.NotAfter), stamp(now))
	}
	notBefore = now.Add(-ClockSkew)
	if notBefore.Before(issuer.NotBefore) {
		notBefore = issuer.NotBefore
	}
	notAfter = now.Add(validity)
	if notAfter.After(issuer.NotAfter) {
		notAfter = issuer.NotAfter
	}
	return notBefore, notAfter, nil
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the certificate just signed: %w", err)
	}
	return cert, nil
}

func checkCRLURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Relying parties fetch CRLs over plain HTTP (the CRL is signed);
		// anything else is a configuration mistake.
		return fieldError("CRLURL", s, "must be an absolute http or https URL")
	}
	return nil
}

func pickValidity(v, def time.Duration) (time.Duration, error) {
	switch {
	case v < 0:
		return 0, fieldError("Validity", v.String(), "must not be negative")
	case v == 0:
		return def, nil
	case v < time.Minute:
		return 0, fieldError("Validity", v.String(), "must be at least a minute")
	}
	return v, nil
}

// pickNow returns now, or the current time when zero, at the one-second
// precision certificates have, so that what the caller computes from it
// matches what the certificate says.
func pickNow(now time.Time) time.Time {
	if now.IsZero() {
		now = time.Now()
	}
	return now.UTC().Truncate(time.Second)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// describeCert names a certificate in messages by its subject.
func describeCert(c *x509.Certificate) string {
	if c == nil {
		return "<nil certificate>"
	}
	return c.Subject.String()
}

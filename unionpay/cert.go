package unionpay

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/gridpay/gridpay/internal/derrors"
)

// MinRSABits is the smallest RSA key accepted, for the merchant and the
// gateway alike.
const MinRSABits = 2048

// DefaultGatewayOrganization is the organisation (O) the gateway's signing
// certificate must name unless Config says otherwise.
const DefaultGatewayOrganization = "China UnionPay"

// CertID is the certId of a signing certificate: its serial number in
// decimal.
func CertID(cert *x509.Certificate) string { return cert.SerialNumber.String() }

// LoadKeyFile reads the merchant's RSA private key from a PEM file
// (PKCS #8 "PRIVATE KEY" or PKCS #1 "RSA PRIVATE KEY"), for development;
// production keeps the key in the HSM. A file that group or others may
// read or write is refused, and so is an encrypted or non-RSA key.
func LoadKeyFile(path string) (_ crypto.Signer, err error) {
	defer derrors.Wrap(&err, "unionpay.LoadKeyFile(%q)", path)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("the key file is accessible to group or others (mode %v); chmod 600 it", perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if _, encrypted := block.Headers["Proc-Type"]; encrypted || block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("the key is encrypted; give an unencrypted key (development only) or use the HSM")
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key (want PRIVATE KEY or RSA PRIVATE KEY)", block.Type)
	}
	if err != nil {
		// The parser's message names the structure, never the key bytes.
		return nil, fmt.Errorf("parsing the key: %w", err)
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is %T; the gateway needs RSA", key)
	}
	if n := rk.N.BitLen(); n < MinRSABits {
		return nil, fmt.Errorf("the RSA key has %d bits, fewer than %d", n, MinRSABits)
	}
	return rk, nil
}

// LoadCertificateFile reads the first certificate of a PEM file.
func LoadCertificateFile(path string) (_ *x509.Certificate, err error) {
	defer derrors.Wrap(&err, "unionpay.LoadCertificateFile(%q)", path)
	certs, err := readCertificates(path)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// LoadCertPool reads every certificate of a PEM file into a pool (the
// gateway's roots or intermediates).
func LoadCertPool(path string) (_ *x509.CertPool, err error) {
	defer derrors.Wrap(&err, "unionpay.LoadCertPool(%q)", path)
	certs, err := readCertificates(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

func readCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := parseCertificatesPEM(data)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE in the file")
	}
	return certs, nil
}

func parseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return certs, nil
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
}

// gatewayVerifier checks the signing certificate the gateway sends with
// every message (signPubKeyCert) and hands out its key. Chain checks are
// cached per certificate text; validity is checked on every use.
type gatewayVerifier struct {
	roots, intermediates *x509.CertPool
	org                  string
	now                  func() time.Time

	mu    sync.Mutex
	cache map[[sha256.Size]byte]verifiedCert
}

type verifiedCert struct {
	key                 *rsa.PublicKey
	notBefore, notAfter time.Time // the intersection over the whole chain
}

const maxCachedCerts = 64

// key returns the public key of the certificate in pemText (the leaf
// first, then any intermediates) after checking it. Every failure is
// ErrBadCertificate.
func (v *gatewayVerifier) key(pemText string) (*rsa.PublicKey, error) {
	if pemText == "" {
		return nil, fieldErr(ErrBadCertificate, FieldSignPubKeyCert, "missing")
	}
	now := v.now()
	id := sha256.Sum256([]byte(pemText))
	v.mu.Lock()
	vc, ok := v.cache[id]
	v.mu.Unlock()
	if !ok {
		var err error
		if vc, err = v.check(pemText, now); err != nil {
			return nil, err
		}
		v.mu.Lock()
		if len(v.cache) >= maxCachedCerts {
			clear(v.cache)
		}
		v.cache[id] = vc
		v.mu.Unlock()
	}
	if now.Before(vc.notBefore) || now.After(vc.notAfter) {
		return nil, fieldErr(ErrBadCertificate, FieldSignPubKeyCert, "outside its validity (%s to %s)",
			vc.notBefore.UTC().Format(time.RFC3339), vc.notAfter.UTC().Format(time.RFC3339))
	}
	return vc.key, nil
}

func (v *gatewayVerifier) check(pemText string, now time.Time) (verifiedCert, error) {
	bad := func(format string, args ...any) (verifiedCert, error) {
		return verifiedCert{}, fieldErr(ErrBadCertificate, FieldSignPubKeyCert, format, args...)
	}
	certs, err := parseCertificatesPEM([]byte(pemText))
	if err != nil {
		return bad("unparsable: %v", err)
	}
	if len(certs) == 0 {
		return bad("no PEM certificate")
	}
	leaf := certs[0]
	inter := v.intermediates
	if len(certs) > 1 {
		// Presented intermediates only help build a path; trust still comes
		// from the configured roots alone.
		if inter != nil {
			inter = inter.Clone()
		} else {
			inter = x509.NewCertPool()
		}
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
	}
	if !slices.Contains(leaf.Subject.Organization, v.org) {
		return bad("subject organisation %q, want %q", leaf.Subject.Organization, v.org)
	}
	pub, ok := leaf.PublicKey.(*rsa.PublicKey)
	if !ok {
		return bad("the key is %T, not RSA", leaf.PublicKey)
	}
	if pub.N.BitLen() < MinRSABits {
		return bad("the RSA key has %d bits, fewer than %d", pub.N.BitLen(), MinRSABits)
	}
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return bad("not a signing certificate (no digitalSignature key usage)")
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return bad("%v", err)
	}
	vc := verifiedCert{key: pub, notBefore: leaf.NotBefore, notAfter: leaf.NotAfter}
	// Any verified chain will do; keep the first one's window.
	for _, c := range chains[0] {
		if c.NotBefore.After(vc.notBefore) {
			vc.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(vc.notAfter) {
			vc.notAfter = c.NotAfter
		}
	}
	return vc, nil
}

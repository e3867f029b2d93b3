package main

import (
	"crypto"
	"crypto/x509"
	"os"
	"strings"
	"time"

	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
)

// expiryWarning is how long before its expiry the certificate on the key is
// announced.
const expiryWarning = 30 * 24 * time.Hour

// loadRoots reads ca_file: GridPay's root certificate (any further
// certificates in the file are trusted as well).
func loadRoots(path string) (*x509.CertPool, error) {
	certs, err := loadRootCerts(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// loadRootCerts reads GridPay's root certificates from ca_file.
func loadRootCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fail(cli.ExitConfig, err, "ca_file: %v", err)
	}
	certs, err := pki.DecodeCertificatesPEM(b)
	if err != nil {
		return nil, fail(cli.ExitConfig, err, "ca_file %s: %v", path, err)
	}
	if len(certs) == 0 {
		return nil, fail(cli.ExitConfig, nil, "ca_file %s holds no certificate", path)
	}
	return certs, nil
}

// verifyKey checks, before anything is sent to the gateway, that the key's
// certificate belongs to its key and to this token, is within its validity
// and chains to GridPay's root through the customer CA. It warns when the
// certificate expires soon.
func (a *app) verifyKey(key *unlockedKey, roots *x509.CertPool) (pki.Identity, error) {
	now := a.now()
	leaf := key.Leaf
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Signer.Public()) {
		return pki.Identity{}, fail(cli.ExitAuth, nil, "the certificate on the USB key does not belong to its key; ask the power company to reissue it")
	}
	if err := checkValidity(leaf, "the certificate on your USB key", now); err != nil {
		return pki.Identity{}, err
	}
	if key.CA != nil {
		if err := checkValidity(key.CA, "the customer CA certificate on your USB key", now); err != nil {
			return pki.Identity{}, err
		}
	}
	inter := x509.NewCertPool()
	if key.CA != nil {
		inter.AddCert(key.CA)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		hint := ""
		if key.CA == nil {
			hint = " (the key holds no customer CA certificate)"
		}
		return pki.Identity{}, fail(cli.ExitAuth, err, "the certificate on your USB key is not one of GridPay's%s: %v; check ca_file (%s)", hint, err, a.cfg.CAFile)
	}
	id, err := pki.IdentityOf(leaf)
	if err != nil || id.Kind != pki.KindCustomer {
		return pki.Identity{}, fail(cli.ExitAuth, err, "the certificate on your USB key is not a customer certificate")
	}
	if key.TokenSerial != "" && !strings.EqualFold(id.TokenSerial, key.TokenSerial) {
		return pki.Identity{}, fail(cli.ExitAuth, nil, "the certificate on this USB key (serial %s) was issued for another key (serial %s); ask the power company to reissue it", key.TokenSerial, id.TokenSerial)
	}
	if left := leaf.NotAfter.Sub(now); left < expiryWarning {
		a.warn("the certificate on your USB key expires on %s (in %d days); ask the power company to renew it", shanghaiTime(leaf.NotAfter), int(left.Hours()/24))
	}
	return id, nil
}

func checkValidity(c *x509.Certificate, what string, now time.Time) error {
	switch {
	case now.After(c.NotAfter):
		return fail(cli.ExitAuth, nil, "%s expired on %s; ask the power company for a new one", what, shanghaiTime(c.NotAfter))
	case now.Before(c.NotBefore):
		return fail(cli.ExitAuth, nil, "%s is not valid before %s; check this computer's date and time", what, shanghaiTime(c.NotBefore))
	}
	return nil
}

// shanghaiTime shows an instant as the business clock does.
func shanghaiTime(t time.Time) string {
	return t.In(platform.Shanghai).Format("2006-01-02 15:04 MST")
}

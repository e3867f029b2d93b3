package authority

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/gridpay/gridpay/hsm"
)

// HSMKeys keeps the CA keys and certificates on a PKCS#11 token.
type HSMKeys struct{ Token *hsm.Token }

var _ Keys = HSMKeys{}

func notFound(err error) error {
	if errors.Is(err, hsm.ErrKeyNotFound) || errors.Is(err, hsm.ErrObjectNotFound) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// Signer finds the private key labelled label.
func (k HSMKeys) Signer(ctx context.Context, label string) (crypto.Signer, error) {
	s, err := k.Token.Signer(ctx, hsm.KeyRef{Label: label})
	if err != nil {
		return nil, notFound(err)
	}
	return s, nil
}

// Generate creates an ECDSA P-256 key pair on the token: sensitive, never
// extractable.
func (k HSMKeys) Generate(ctx context.Context, label string) (crypto.Signer, error) {
	return k.Token.GenerateECDSAKey(ctx, label, nil)
}

// Certificate reads the certificate object labelled label.
func (k HSMKeys) Certificate(ctx context.Context, label string) (*x509.Certificate, error) {
	c, err := k.Token.Certificate(ctx, hsm.KeyRef{Label: label})
	if err != nil {
		return nil, notFound(err)
	}
	return c, nil
}

// PutCertificate writes cert next to the key labelled label, with the key's
// CKA_ID so that PKCS#11 tools pair them, replacing an older certificate.
func (k HSMKeys) PutCertificate(ctx context.Context, label string, cert *x509.Certificate) error {
	s, err := k.Token.Signer(ctx, hsm.KeyRef{Label: label})
	if err != nil {
		return notFound(err)
	}
	return k.Token.ReplaceCertificate(ctx, label, s.ID(), cert)
}

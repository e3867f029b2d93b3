package unionpay

import (
	"crypto/sha256"
	"errors"
	"net/url"
	"time"

	"github.com/gridpay/gridpay/internal/derrors"
)

// Verifier checks notifications without holding the merchant key: the
// gateway's notify endpoint runs where the signing key must not be.
type Verifier struct{ c *Client }

// NewVerifier builds a notification verifier from the merchant ID, the
// gateway's roots (and optional intermediates), the expected organisation
// and the clock; the rest of cfg is ignored.
func NewVerifier(cfg Config) (_ *Verifier, err error) {
	defer derrors.Wrap(&err, "unionpay.NewVerifier")
	if err := CheckMerchantID(cfg.MerchantID); err != nil {
		return nil, err
	}
	if cfg.Roots == nil {
		return nil, errors.New("no gateway roots (Roots): notifications could not be verified")
	}
	if cfg.GatewayOrganization == "" {
		cfg.GatewayOrganization = DefaultGatewayOrganization
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{c: &Client{cfg: cfg, gw: &gatewayVerifier{
		roots: cfg.Roots, intermediates: cfg.Intermediates, org: cfg.GatewayOrganization,
		now: cfg.Now, cache: map[[sha256.Size]byte]verifiedCert{},
	}}}, nil
}

// ParseNotification is Client.ParseNotification.
func (v *Verifier) ParseNotification(form url.Values) (Notification, error) {
	return v.c.parseNotification(form)
}

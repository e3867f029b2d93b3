package app

import (
	"context"
	"crypto"
	"fmt"
	"net/http"
	"time"

	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/unionpay"
)

// UnionPayClient builds the payment gateway client: the merchant key from
// the HSM (unionpay.merchant_key_label) or a file (merchant_key_file, in
// development), its certificate, and the gateway's roots.
func UnionPayClient(ctx context.Context, cfg config.UnionPay, keys authority.Keys) (*unionpay.Client, error) {
	var signer crypto.Signer
	var err error
	if cfg.MerchantKeyLabel != "" {
		signer, err = keys.Signer(ctx, cfg.MerchantKeyLabel)
	} else {
		signer, err = unionpay.LoadKeyFile(cfg.MerchantKeyFile)
	}
	if err != nil {
		return nil, cli.WithCode(cli.ExitConfig, fmt.Errorf("unionpay merchant key: %w", err))
	}
	cert, err := unionpay.LoadCertificateFile(cfg.MerchantCertFile)
	if err != nil {
		return nil, cli.WithCode(cli.ExitConfig, fmt.Errorf("unionpay.merchant_cert_file: %w", err))
	}
	roots, err := unionpay.LoadCertPool(cfg.RootFile)
	if err != nil {
		return nil, cli.WithCode(cli.ExitConfig, fmt.Errorf("unionpay.root_file: %w", err))
	}
	c, err := unionpay.NewClient(unionpay.Config{
		MerchantID: cfg.MerchantID, FrontURL: cfg.FrontURL, BackURL: cfg.BackURL, QueryURL: cfg.QueryURL, FileURL: cfg.FileURL,
		Signer: signer, SignCert: cert, Roots: roots, GatewayOrganization: cfg.Organization,
		HTTPClient: &http.Client{Timeout: cfg.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	})
	if err != nil {
		return nil, cli.WithCode(cli.ExitConfig, err)
	}
	return c, nil
}

// UnionPayVerifier builds the key-less notification verifier the gateway's
// notify endpoint uses.
func UnionPayVerifier(cfg config.UnionPay, now func() time.Time) (*unionpay.Verifier, error) {
	roots, err := unionpay.LoadCertPool(cfg.RootFile)
	if err != nil {
		return nil, cli.WithCode(cli.ExitConfig, fmt.Errorf("unionpay.root_file: %w", err))
	}
	v, err := unionpay.NewVerifier(unionpay.Config{MerchantID: cfg.MerchantID, Roots: roots, GatewayOrganization: cfg.Organization, Now: now})
	if err != nil {
		return nil, cli.WithCode(cli.ExitConfig, err)
	}
	return v, nil
}

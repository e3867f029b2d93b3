package app

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/platform"
)

// HSMCertificate reads the key and the certificate stored under label
// (adminctl ca issue puts them there) as a TLS certificate whose private
// key stays in the HSM. The chain sent is the certificate and the issuing
// CA among issuers that signed it.
func HSMCertificate(ctx context.Context, keys authority.Keys, label string, issuers []*x509.Certificate) (tls.Certificate, error) {
	cert, err := keys.Certificate(ctx, label)
	if errors.Is(err, authority.ErrNotFound) {
		return tls.Certificate{}, cli.WithCode(cli.ExitNotFound, fmt.Errorf("no certificate labelled %q in the HSM: %w", label, err))
	}
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("reading certificate %q from the HSM: %w", label, err)
	}
	signer, err := keys.Signer(ctx, label)
	if errors.Is(err, authority.ErrNotFound) {
		return tls.Certificate{}, cli.WithCode(cli.ExitNotFound, fmt.Errorf("no key labelled %q in the HSM: %w", label, err))
	}
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("finding key %q in the HSM: %w", label, err)
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(signer.Public()) {
		return tls.Certificate{}, fmt.Errorf("the certificate labelled %q in the HSM is not for the key with that label", label)
	}
	chain := [][]byte{cert.Raw}
	for _, ca := range issuers {
		if cert.CheckSignatureFrom(ca) == nil {
			chain = append(chain, ca.Raw)
			break
		}
	}
	if len(chain) == 1 {
		return tls.Certificate{}, fmt.Errorf("the certificate labelled %q (%s) was not issued by GridPay's services CA", label, cert.Subject)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: signer, Leaf: cert}, nil
}

// PlatformClient connects to the platform web service with mutual TLS: the
// service's certificate and key from the HSM (platform.client_key_label),
// and the platform's CA from platform.ca_file. service names the program in
// the hint shown when the certificate is missing (gateway, worker).
func PlatformClient(ctx context.Context, cfg config.Platform, keys authority.Keys, trust *authority.Trust, service string) (*platform.Client, error) {
	cert, err := HSMCertificate(ctx, keys, cfg.ClientKeyLabel, trust.Services)
	if err != nil {
		return nil, fmt.Errorf("platform client certificate: %w (issue it: adminctl ca issue --name %s --key-label %s)", err, service, cfg.ClientKeyLabel)
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, cli.WithCode(cli.ExitConfig, fmt.Errorf("platform.ca_file: %w", err))
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, cli.WithCode(cli.ExitConfig, fmt.Errorf("platform.ca_file: %s holds no PEM certificate", cfg.CAFile))
	}
	c, err := platform.NewClient(cfg.URL, &tls.Config{
		// The platform is the power company's existing system: TLS 1.2
		// is accepted there (the client's own minimum), 1.3 preferred.
		RootCAs:      roots,
		Certificates: []tls.Certificate{cert},
	}, cfg.Timeout)
	if err != nil {
		return nil, cli.WithCode(cli.ExitConfig, err)
	}
	return c, nil
}

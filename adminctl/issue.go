package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/store"
)

// issueCommand provisions the certificates of GridPay's own services: the
// gateway's TLS server certificate and the client certificates the gateway
// and the worker present to the platform. Keys are generated in the HSM.
func (a *admin) issueCommand() *cobra.Command {
	var (
		server      bool
		name, label string
		dns, ips    []string
		renew       bool
		renewWithin time.Duration
	)
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a service certificate (gateway TLS server, or a service's client certificate) for a key in the HSM",
		Long: `issue makes sure a key labelled --key-label exists in the HSM (creating it, never
extractable), issues its certificate from the services CA and stores it on the HSM
under the same label. An existing certificate for the same service that is valid for
longer than --renew-within is kept, unless --renew.

  adminctl ca issue --server --name gateway --dns localhost --ip 127.0.0.1 --key-label gridpay-gateway-tls
  adminctl ca issue --name gateway --key-label gridpay-gateway-platform
  adminctl ca issue --name worker  --key-label gridpay-worker-platform`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || label == "" {
				return cli.WithCode(cli.ExitUsage, errors.New("--name and --key-label are required"))
			}
			req := authority.ServiceCert{Server: server, Name: name, DNSNames: dns}
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return cli.WithCode(cli.ExitUsage, fmt.Errorf("--ip %q is not an IP address", s))
				}
				req.IPAddresses = append(req.IPAddresses, ip)
			}
			if server && len(dns)+len(ips) == 0 {
				return cli.WithCode(cli.ExitUsage, errors.New("--server needs at least one --dns or --ip"))
			}
			return a.withCA(cmd.Context(), func(ca *authority.Authority, _ *store.DB) error {
				keys := ca.Keys()
				outcome := "issued"
				cert, err := keys.Certificate(cmd.Context(), label)
				if renew || err != nil || !current(cert, req, renewWithin) {
					cert, err = ca.IssueServiceKey(cmd.Context(), keys, label, req, actor())
					if err != nil {
						return err
					}
				} else {
					outcome = "kept"
				}
				out := map[string]any{"outcome": outcome, "key_label": label, "serial": authority.SerialHex(cert),
					"subject": cert.Subject.String(), "not_after": cert.NotAfter.UTC()}
				return a.out.Print(out, func(w io.Writer) {
					fmt.Fprintf(w, "%s %s (serial %s, until %s) for key %q\n", outcome, cert.Subject, authority.SerialHex(cert),
						cert.NotAfter.UTC().Format(time.DateOnly), label)
				})
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&server, "server", false, "a TLS server certificate (else a service client certificate)")
	f.StringVar(&name, "name", "", "service name (gateway, worker)")
	f.StringVar(&label, "key-label", "", "label of the key and certificate in the HSM")
	f.StringSliceVar(&dns, "dns", nil, "DNS name of the server (repeatable)")
	f.StringSliceVar(&ips, "ip", nil, "IP address of the server (repeatable)")
	f.BoolVar(&renew, "renew", false, "issue a new certificate even if the current one is good")
	f.DurationVar(&renewWithin, "renew-within", 30*24*time.Hour, "renew a certificate expiring within this time")
	return cmd
}

// current reports whether cert already serves req for longer than margin.
func current(cert *x509.Certificate, req authority.ServiceCert, margin time.Duration) bool {
	if time.Until(cert.NotAfter) < margin {
		return false
	}
	id, err := pki.IdentityOf(cert)
	if err != nil {
		return false
	}
	if !req.Server {
		return id.Kind == pki.KindService && id.Service == req.Name
	}
	ips := make([]string, len(cert.IPAddresses))
	for i, ip := range cert.IPAddresses {
		ips[i] = ip.String()
	}
	want := make([]string, len(req.IPAddresses))
	for i, ip := range req.IPAddresses {
		want[i] = ip.String()
	}
	return id.Kind == pki.KindServer && sameSet(cert.DNSNames, req.DNSNames) && sameSet(ips, want)
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Command gateway is GridPay's security server: the only service customers'
// desktop clients reach. It terminates mutually authenticated TLS 1.3 with
// its key in the HSM, checks the client certificate of the customer's USB
// key on every request (chain to the customer CA, validity, revocation, an
// active binding), and answers the JSON API of package api from the power
// company's platform web service.
//
// # Who is asking
//
// The customer's identity (customer ID and token serial) comes from the
// verified client certificate alone; no request names its customer, so no
// request can read another customer's data. A bill of another customer is
// answered exactly like a bill that does not exist.
//
// # Refusals
//
// Every refusal carries an api.ErrorBody whose code the client maps to a
// message and an exit status, and is written to the audit log (actor
// "gateway", action "gateway.refuse"):
//
//	code                 status  when
//	no_certificate       —       no client certificate: the TLS handshake itself fails (audited from the handshake error)
//	unknown_ca           401     not issued by the customer CA (another CA, or a GridPay service certificate)
//	certificate_expired  401     outside its validity (expired or not yet valid)
//	certificate_revoked  401     on the customer CA's CRL
//	certificate_invalid  401     not the GridPay customer profile, or not for client authentication
//	not_bound            403     no active binding for this certificate and token
//	rate_limited         429     over the per-certificate rate; Retry-After says when to come back
//	invalid_request      400     malformed parameter or JSON body; the message names the parameter
//	payload_too_large    413     body above api.MaxBodyBytes
//	not_found            404     no such bill for this customer (audited: it may be a probe)
//	unavailable          503     the platform is down, or revocation cannot be checked (stale CRL)
//
// not_found for unknown paths, method_not_allowed (405) and
// unsupported_version (404, a path under another API version) are answered
// but not audited: they are client bugs, not attempts.
//
// # Alerts
//
// Unpaid bills raise alerts at login (GET /v1/me) and with the arrears
// summary: info when a bill falls due within dueSoonDays; warning once it
// is overdue (late fees accrue daily); critical when it is more than
// criticalOverdueDays overdue or its late fee has reached
// criticalLateFeePercent of its charges. See alerts.go.
package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/logging"
)

func main() { cli.Main("gateway", command()) }

func command() *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run GridPay's security server (mutual TLS 1.3 for customers' USB keys)",
		Long: `gateway serves GridPay's client API (/v1/...) over TLS 1.3 only, with a client
certificate required at the handshake. Its server key and certificate are in the HSM
(tls_key_label; "adminctl ca issue --server --name gateway ..."), and so are the
client key and certificate it presents to the power company's platform
(platform.client_key_label; "adminctl ca issue --name gateway ...").

Every request is checked again: the client certificate must chain to the customer CA,
be valid, not revoked (CRLs reloaded from the database every crl_refresh) and belong
to an active binding. Refusals are answered with a code and a message and written to
the audit log. When the platform is down, data requests are answered "service
unavailable" and the gateway serves again as soon as it returns.

It refuses to start against a database whose schema is older than this binary
(run "adminctl db migrate") or before the CA exists (run "adminctl ca init"). It
logs the address it listens on once ready, and stops gracefully on SIGINT or
SIGTERM (shutdown_timeout).`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(config.DefaultGateway(), config.Source{
				File:  configFile,
				Flags: cmd.Flags(),
				Bind:  map[string]string{"log-level": "log.level", "listen": "listen"},
			})
			if err != nil {
				return cli.WithCode(cli.ExitConfig, err)
			}
			log, err := logging.New(cfg.Log.Level, cfg.Log.Format)
			if err != nil {
				return cli.WithCode(cli.ExitConfig, err)
			}
			defer log.Sync()
			return run(cmd.Context(), cfg, log)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.WithCode(cli.ExitUsage, err) })
	cmd.SetHelpTemplate(cmd.HelpTemplate() + "\n" + cli.ExitCodesHelp + "\n")
	f := cmd.Flags()
	f.StringVar(&configFile, "config", os.Getenv("GRIDPAY_CONFIG"), "configuration file (YAML); default $GRIDPAY_CONFIG")
	f.String("listen", "", "address for clients, host:port (default 127.0.0.1:8443)")
	f.String("log-level", "", "log level: debug, info, warn, error")
	return cmd
}

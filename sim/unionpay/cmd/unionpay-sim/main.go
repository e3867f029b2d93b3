// Command unionpay-sim runs the simulator of the China UnionPay online
// payment gateway for development and tests: the pay page, back
// notifications with the real resend schedule, query, refund, cancel and
// the reconciliation file, on PostgreSQL, with switchable faults.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/logging"
	simunionpay "github.com/gridpay/gridpay/sim/unionpay"
	"github.com/gridpay/gridpay/unionpay"
)

// envPrefix: every flag can also be set as GRIDPAY_UNIONPAY_SIM_<FLAG>,
// dashes as underscores.
const envPrefix = "GRIDPAY_UNIONPAY_SIM_"

// Defaults are the development stack's (`make demo`).
const (
	defaultDSN         = "postgres://gridpay@127.0.0.1:55432/gridpay?sslmode=disable"
	defaultListen      = "127.0.0.1:8710"
	defaultAdminListen = "127.0.0.1:8711"
	defaultStateDir    = ".run/unionpay-sim"
	defaultMerchantID  = "898310048160001"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newCommand(os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "unionpay-sim:", err)
	}
	os.Exit(cli.ExitCode(err))
}

func init() {
	cli.RegisterClassifier(func(err error) (int, bool) {
		var connErr *pgconn.ConnectError
		var opErr *net.OpError
		switch {
		case errors.As(err, &connErr):
			return cli.ExitUnavailable, true
		case errors.As(err, &opErr) && opErr.Op == "listen":
			return cli.ExitUnavailable, true
		}
		return 0, false
	})
}

type sim struct {
	logLevel  string
	logFormat string
	log       *zap.Logger
	stdout    io.Writer
}

func newCommand(stdout, stderr io.Writer) *cobra.Command {
	s := &sim{stdout: stdout}
	root := &cobra.Command{
		Use:   "unionpay-sim",
		Short: "Simulator of the China UnionPay online payment gateway (ACP 5.1.0)",
		Long: `unionpay-sim simulates the China UnionPay online payment gateway GridPay pays through
(ACP 5.1.0 style): the consume form and a pay page usable in a browser (card number,
Approve, Decline), asynchronous back notifications with the real resend schedule
(five sends: again after 1, 2, 4 and 5 minutes), query, refund, cancel and the
reconciliation file. State lives in PostgreSQL (schema unionpay_sim), so a restart
loses nothing.

The simulator has its own "UnionPay root" CA and gateway signing key, made on first
start in --state-dir: GridPay trusts <state-dir>/root.pem. It trusts the merchant
certificates given with --merchant-cert and those in <state-dir>/merchants, which
"unionpay-sim merchant-cert" makes for development.

Every flag can also be given as an environment variable GRIDPAY_UNIONPAY_SIM_<FLAG>,
dashes as underscores (GRIDPAY_UNIONPAY_SIM_DSN, GRIDPAY_UNIONPAY_SIM_TIME_SCALE, ...);
flags win.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: s.setup,
		Args:              noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.WithCode(cli.ExitUsage, errors.New("a command is required: serve or merchant-cert (see --help)"))
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.WithCode(cli.ExitUsage, err) })
	root.SetHelpTemplate(root.HelpTemplate() + "\n" + cli.ExitCodesHelp + "\n")
	pf := root.PersistentFlags()
	pf.StringVar(&s.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	pf.StringVar(&s.logFormat, "log-format", "console", "log format: console or json")
	root.AddCommand(s.serveCommand(), s.merchantCertCommand(), s.payCommand())
	return root
}

// setup applies GRIDPAY_UNIONPAY_SIM_* variables to flags not given on the
// command line, then builds the logger.
func (s *sim) setup(cmd *cobra.Command, _ []string) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return cli.WithCode(cli.ExitConfig, err)
	}
	log, err := logging.New(s.logLevel, s.logFormat)
	if err != nil {
		return cli.WithCode(cli.ExitConfig, err)
	}
	s.log = log.With(zap.String(logging.KeyComponent, "unionpay-sim"))
	return nil
}

func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("unexpected argument %q", args[0]))
	}
	return nil
}

func (s *sim) serveCommand() *cobra.Command {
	var opts simunionpay.Options
	var delay, queryUnknownFor, processDelay time.Duration
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the gateway (HTTP) and its admin endpoint",
		Long: `serve creates the simulator's schema if needed, makes or reuses its root CA and gateway
signing certificate in --state-dir (root.pem is what GridPay must trust; keys are mode
0600), and serves the gateway on --listen until SIGINT or SIGTERM:

  POST /gateway/api/frontTransReq.do   consume form → pay page (/gateway/pay/<token>)
  POST /gateway/api/backTransReq.do    refund (04) and cancel (31)
  POST /gateway/api/queryTrans.do      query (00)
  POST /gateway/api/fileTransReq.do    reconciliation file (76)

The admin endpoint on --admin-listen (loopback only) shows and switches faults and
lists transactions and notifications:

  curl -s http://127.0.0.1:8711/faults
  curl -s -X PUT -d '{"duplicate_notifications":2,"query_unknown":3}' http://127.0.0.1:8711/faults
  curl -s 'http://127.0.0.1:8711/transactions?order_id=...'
  curl -s 'http://127.0.0.1:8711/notifications?query_id=...'

The fault flags below switch faults on from the start.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Logger = s.log
			opts.Faults.DelayNotifications = simunionpay.Duration(delay)
			opts.ProcessDelay = processDelay
			if queryUnknownFor > 0 {
				opts.Faults.QueryUnknownUntil = time.Now().Add(queryUnknownFor)
			}
			if err := opts.Faults.Validate(); err != nil {
				return cli.WithCode(cli.ExitUsage, err)
			}
			if opts.TimeScale <= 0 {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("--time-scale %v must be positive", opts.TimeScale))
			}
			for _, spec := range opts.MerchantCertFiles {
				if _, err := simunionpay.LoadMerchantCert(spec); err != nil {
					return cli.WithCode(cli.ExitConfig, fmt.Errorf("--merchant-cert: %w", err))
				}
			}
			srv, err := simunionpay.Start(cmd.Context(), opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.stdout, "gateway %s\nadmin   %s\nroot    %s\n", srv.URL(), srv.AdminURL(), srv.RootFile())
			select {
			case <-cmd.Context().Done():
				s.log.Info("stopping")
			case <-srv.Done():
			}
			stopErr := srv.Stop()
			if err := srv.Err(); err != nil {
				return cli.WithCode(cli.ExitUnavailable, err)
			}
			return stopErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DSN, "dsn", defaultDSN, "PostgreSQL connection string (the password, if any, via PGPASSWORD)")
	f.StringVar(&opts.StateDir, "state-dir", defaultStateDir, "directory for the simulator's root CA, gateway key and certificate, and merchants/")
	f.StringVar(&opts.Listen, "listen", defaultListen, "address of the gateway")
	f.StringVar(&opts.AdminListen, "admin-listen", defaultAdminListen, `address of the admin endpoint (loopback only; "off" disables it)`)
	f.StringArrayVar(&opts.MerchantCertFiles, "merchant-cert", nil, "a merchant certificate to trust: PEM file (merchant ID = subject CN) or merId=file; repeatable")
	f.StringVar(&opts.Organization, "organization", simunionpay.DefaultOrganization, "subject organisation (O) of the gateway signing certificate")
	f.Float64Var(&opts.TimeScale, "time-scale", 1, "multiplies the resend schedule and the refund processing delay (0.01: 100 times faster)")
	f.DurationVar(&processDelay, "process-delay", simunionpay.DefaultProcessDelay, "how long an accepted refund or cancel stays pending (scaled)")
	f.BoolVar(&opts.NotifyFailures, "notify-failures", false, "send back notifications for declined and expired payments too (the real gateway does not)")
	f.BoolVar(&opts.Faults.AutoApprove, "auto-approve", false, "fault: approve every consume form at once, without the pay page (load tests)")
	f.BoolVar(&opts.Faults.DropNotifications, "drop-notifications", false, "fault: never send back notifications")
	f.IntVar(&opts.Faults.DuplicateNotifications, "duplicate-notifications", 0, "fault: send each notification this many times (2 or 3)")
	f.DurationVar(&delay, "delay-notifications", 0, "fault: hold each new notification this long before its first send")
	f.BoolVar(&opts.Faults.ReorderNotifications, "reorder-notifications", false, "fault: send due notifications newest first, in batches")
	f.IntVar(&opts.Faults.QueryUnknown, "query-unknown", 0, "fault: answer the next N queries with 03/04/05")
	f.DurationVar(&queryUnknownFor, "query-unknown-for", 0, "fault: answer every query with 03/04/05 for this long after start")
	f.StringVar(&opts.Faults.QueryUnknownCode, "query-unknown-code", "", "fault: the code for --query-unknown: 03, 04 or 05 (default: each in turn)")
	f.IntVar(&opts.Faults.RefundFailures, "refund-failures", 0, "fault: fail the next N refund and cancel requests")
	f.StringVar(&opts.Faults.RefundFailureMode, "refund-failure-mode", simunionpay.RefundFailHTTP503, "fault: how refunds fail: http503, 03, or 03-processed (processed, answered 03)")
	return cmd
}

func (s *sim) merchantCertCommand() *cobra.Command {
	var stateDir, outDir, merID string
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "merchant-cert",
		Short: "Make a development merchant key and certificate the simulator trusts",
		Long: `merchant-cert makes a merchant signing key (RSA-2048) and a certificate for --mer-id,
signed by the simulator's root in --state-dir (made if missing), and writes:

  <out-dir>/merchant-key.pem   the private key, PKCS #8, mode 0600
  <out-dir>/merchant.pem       the certificate (its serial number is the certId)

and a copy of the certificate into <state-dir>/merchants/, which a running or later
simulator trusts. Point GridPay's UnionPay configuration at these two files and at
<state-dir>/root.pem. In production the merchant key lives in the HSM and the
certificate comes from UnionPay.`,
		Example: "  unionpay-sim merchant-cert --mer-id 898310048160001 --out-dir .run/unionpay",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := unionpay.CheckMerchantID(merID); err != nil {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("--mer-id: %w", err))
			}
			m, err := simunionpay.NewMerchant(stateDir, outDir, merID, time.Now())
			if err != nil {
				return err
			}
			out := struct {
				MerchantID string `json:"mer_id"`
				CertID     string `json:"cert_id"`
				KeyFile    string `json:"key_file"`
				CertFile   string `json:"cert_file"`
				NotAfter   string `json:"not_after"`
			}{m.ID, unionpay.CertID(m.Cert), m.KeyFile, m.CertFile, m.Cert.NotAfter.UTC().Format(time.RFC3339)}
			return cli.Output{JSON: jsonOut, W: s.stdout}.Print(out, func(w io.Writer) {
				fmt.Fprintf(w, "merchant %s: certId %s\nkey  %s (0600)\ncert %s (valid until %s)\n",
					out.MerchantID, out.CertID, out.KeyFile, out.CertFile, out.NotAfter)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&stateDir, "state-dir", defaultStateDir, "the simulator's state directory")
	f.StringVar(&outDir, "out-dir", ".run/unionpay", "where to write merchant-key.pem and merchant.pem")
	f.StringVar(&merID, "mer-id", defaultMerchantID, "the merchant ID (merId)")
	f.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return cmd
}

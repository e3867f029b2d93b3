// Command platform-sim runs the simulator of the power company's payment
// platform web service for development and tests: the contract of
// platform/openapi.yaml over HTTPS with mutual TLS, on PostgreSQL, with a
// seeded, deterministic data generator.
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/logging"
	"github.com/gridpay/gridpay/platform"
	simplatform "github.com/gridpay/gridpay/sim/platform"
)

// envPrefix: every flag can also be set as GRIDPAY_SIM_<FLAG>, with
// dashes as underscores (GRIDPAY_SIM_STATE_DIR sets --state-dir).
const envPrefix = "GRIDPAY_SIM_"

// Defaults are the development stack's (`make demo`).
const (
	defaultDSN      = "postgres://gridpay@127.0.0.1:55432/gridpay?sslmode=disable"
	defaultListen   = "127.0.0.1:8700"
	defaultStateDir = ".run/platform-sim"
	defaultClientCA = ".run/pki/services-ca.pem"
)

func main() { cli.Main("platform-sim", newCommand(os.Stdout, os.Stderr)) }

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

// sim is the state shared by the commands.
type sim struct {
	dsn       string
	today     string
	logLevel  string
	logFormat string
	log       *zap.Logger
	stdout    io.Writer
}

func newCommand(stdout, stderr io.Writer) *cobra.Command {
	s := &sim{stdout: stdout}
	root := &cobra.Command{
		Use:   "platform-sim",
		Short: "Simulator of the power company's payment platform web service",
		Long: `platform-sim simulates the power company's payment platform web service that GridPay
integrates with: customers, metering points, time-of-use consumption, bills with late
fees, arrears, payments received and prepaid accounts, as specified in
platform/openapi.yaml. Data lives in PostgreSQL (schema platform_sim) and is made by a
seeded, deterministic generator.

Like the real platform behind its firewall, the simulator accepts only mutual TLS
from GridPay's services (client certificates of GridPay's services CA naming an
admitted service) and refuses anything else at the TLS handshake. It has its own
CA, made on first start; GridPay trusts <state-dir>/ca.pem.

Every flag can also be given as an environment variable GRIDPAY_SIM_<FLAG>, dashes
as underscores (GRIDPAY_SIM_DSN, GRIDPAY_SIM_STATE_DIR, ...); flags win.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: s.setup,
		Args:              noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.WithCode(cli.ExitUsage, errors.New("a command is required: serve, seed or customers (see --help)"))
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.WithCode(cli.ExitUsage, err) })
	root.SetHelpTemplate(root.HelpTemplate() + "\n" + cli.ExitCodesHelp + "\n")
	pf := root.PersistentFlags()
	pf.StringVar(&s.dsn, "dsn", defaultDSN, "PostgreSQL connection string (the password, if any, via PGPASSWORD)")
	pf.StringVar(&s.today, "today", "", "the simulator's business date, YYYY-MM-DD (default: today in Shanghai)")
	pf.StringVar(&s.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	pf.StringVar(&s.logFormat, "log-format", "console", "log format: console or json")
	root.AddCommand(s.serveCommand(), s.seedCommand(), s.customersCommand())
	return root
}

// setup applies GRIDPAY_SIM_* variables to flags not given on the command
// line, then builds the logger.
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
	if s.today != "" {
		if _, err := platform.ParseDate(s.today); err != nil {
			return cli.WithCode(cli.ExitConfig, fmt.Errorf("--today: %w", err))
		}
	}
	log, err := logging.New(s.logLevel, s.logFormat)
	if err != nil {
		return cli.WithCode(cli.ExitConfig, err)
	}
	s.log = log.With(zap.String(logging.KeyComponent, "platform-sim"))
	return nil
}

// todayFunc is the simulator's clock: the --today date (at noon in
// Shanghai) or the real time.
func (s *sim) todayFunc() func() time.Time {
	if s.today == "" {
		return nil
	}
	t, _ := time.ParseInLocation(time.DateOnly, s.today, platform.Shanghai)
	t = t.Add(12 * time.Hour)
	return func() time.Time { return t }
}

func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("unexpected argument %q", args[0]))
	}
	return nil
}

func (s *sim) serveCommand() *cobra.Command {
	var opts simplatform.Options
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the platform web service over HTTPS with mutual TLS",
		Long: `serve creates the simulator's schema if needed, makes or reuses its CA and server
certificate in --state-dir (ca.pem is the CA certificate GridPay must trust; keys are
mode 0600), and serves the contract on --listen until SIGINT or SIGTERM.

Only client certificates issued by --client-ca (GridPay's services CA) whose identity
names a service in --allow-service are admitted; any other client is refused at the
TLS handshake and the refusal is logged.

Seed data first with "platform-sim seed".`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.DSN, opts.Today, opts.Logger = s.dsn, s.todayFunc(), s.log
			if opts.ClientCAFile == "" {
				return cli.WithCode(cli.ExitConfig, errors.New("--client-ca is required"))
			}
			if _, err := os.Stat(opts.ClientCAFile); err != nil {
				return cli.WithCode(cli.ExitConfig, fmt.Errorf("--client-ca: %w (in the development stack, run `adminctl ca init` first)", err))
			}
			srv, err := simplatform.Start(cmd.Context(), opts)
			if err != nil {
				return err
			}
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
	f.StringVar(&opts.Listen, "listen", defaultListen, "address to listen on")
	f.StringVar(&opts.StateDir, "state-dir", defaultStateDir, "directory for the simulator's CA, server certificate and keys")
	f.StringVar(&opts.ClientCAFile, "client-ca", defaultClientCA, "PEM file of the CA client certificates must chain to (GridPay's services CA)")
	f.StringSliceVar(&opts.AllowServices, "allow-service", simplatform.DefaultAllowServices, "service names admitted (comma-separated)")
	f.StringSliceVar(&opts.ServerNames, "server-name", nil, "extra DNS names or IP addresses for the server certificate")
	return cmd
}

func (s *sim) seedCommand() *cobra.Command {
	var opts simplatform.SeedOptions
	var ifEmpty, jsonOut bool
	cmd := &cobra.Command{
		Use:   "seed",
		Short: "Replace the simulator's data with generated data",
		Long: `seed generates customers, metering points, monthly consumption, bills, payments and
prepaid accounts and replaces all of the simulator's data with them, in one
transaction. The same --customers, --months, --seed and --today always give the same
data. The last billed month is the one before --today's.

With --if-empty, a database that already has customers is left alone.`,
		Example: "  platform-sim seed --customers 1000 --months 24 --seed 42 --today 2026-11-21",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			opts.Today = platform.Date(s.today)
			if opts.Today == "" {
				opts.Today = platform.DateOf(time.Now())
			}
			if err := opts.Validate(); err != nil {
				return cli.WithCode(cli.ExitUsage, err)
			}
			p, err := simplatform.Open(ctx, s.dsn, simplatform.OpenOptions{Today: s.todayFunc(), Logger: s.log})
			if err != nil {
				return err
			}
			defer p.Close()
			if ifEmpty {
				ids, err := p.FindCustomers(ctx, simplatform.Find{}, 1)
				if err != nil {
					return err
				}
				if len(ids) > 0 {
					s.log.Info("the database has data; not seeding (--if-empty)")
					return nil
				}
			}
			r, err := p.Seed(ctx, opts)
			if err != nil {
				return err
			}
			return cli.Output{JSON: jsonOut, W: s.stdout}.Print(r, func(w io.Writer) {
				fmt.Fprintf(w, "seeded %d customers, %d metering points, %d consumption records, %d bills, %d payments, %d prepaid entries in %v\n",
					r.Customers, r.MeteringPoints, r.Consumption, r.Bills, r.Payments, r.PrepaidEntries, r.Took.Round(time.Millisecond))
				fmt.Fprintf(w, "data hash %s\n", r.Hash)
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Customers, "customers", 1000, "number of customers")
	f.IntVar(&opts.Months, "months", 24, "number of billed months")
	f.Uint64Var(&opts.Seed, "seed", 42, "random seed")
	f.BoolVar(&ifEmpty, "if-empty", false, "seed only a database without customers")
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	return cmd
}

func (s *sim) customersCommand() *cobra.Command {
	var find simplatform.Find
	var typ string
	var limit int
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "customers",
		Short: "List seeded customers matching conditions (as of --today)",
		Long: `customers prints the IDs of customers matching every condition given, one per line,
for scripts and demos that need, say, a customer in arrears.`,
		Example: "  platform-sim customers --overdue --limit 1",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			find.Type = platform.CustomerType(typ)
			p, err := simplatform.Open(cmd.Context(), s.dsn, simplatform.OpenOptions{Today: s.todayFunc(), Logger: s.log})
			if err != nil {
				return err
			}
			defer p.Close()
			ids, err := p.FindCustomers(cmd.Context(), find, limit)
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				return cli.WithCode(cli.ExitNotFound, errors.New("no customer matches"))
			}
			return cli.Output{JSON: jsonOut, W: s.stdout}.Print(ids, func(w io.Writer) {
				fmt.Fprintln(w, strings.Join(ids, "\n"))
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&find.Overdue, "overdue", false, "with an overdue bill (in arrears)")
	f.BoolVar(&find.CarriedOver, "carried-over", false, "with an overdue bill due in an earlier year")
	f.BoolVar(&find.Open, "open", false, "with an open bill (issued, not yet due)")
	f.BoolVar(&find.PartlyPaid, "partly-paid", false, "with an unpaid bill partly paid")
	f.BoolVar(&find.AllSettled, "settled", false, "with every bill settled")
	f.BoolVar(&find.Prepaid, "prepaid", false, "with a prepaid balance")
	f.StringVar(&typ, "type", "", "customer type: large_industry or general_commercial")
	f.IntVar(&limit, "limit", 0, "print at most this many (0: all)")
	f.BoolVar(&jsonOut, "json", false, "print a JSON array")
	return cmd
}

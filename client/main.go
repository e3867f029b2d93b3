package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/client/pinlock"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/logging"
)

func main() { cli.Main("client", newApp().root) }

// app is the state shared by every command.
type app struct {
	configFile    string
	jsonOut       bool
	allowFinalTry bool

	root   *cobra.Command
	cfg    config.Client
	log    *zap.Logger
	out    cli.Output
	stderr io.Writer
	local  *pinlock.Local

	now func() time.Time
	// openKey unlocks the USB key; tests replace it with in-memory keys.
	openKey func(ctx context.Context) (*unlockedKey, error)
	// progress shows that the gateway is being waited for.
	progress func(msg string) interface{ Done(string) }
}

func newApp() *app {
	a := &app{now: time.Now, stderr: os.Stderr}
	a.openKey = a.openUSBKey
	a.progress = func(msg string) interface{ Done(string) } { return cli.StartProgress(msg) }
	a.root = &cobra.Command{
		Use:   "client",
		Short: "GridPay desktop client: log in with your USB key and see your electricity account",
		Long: `client is the GridPay desktop program for the power company's large customers.

It unlocks your USB key with its PIN, checks the certificate on the key, and
talks to GridPay's gateway over mutually authenticated TLS 1.3: the key on the
USB key signs the handshake and never leaves it.

The PIN comes from token.pin.file, the environment variable GRIDPAY_TOKEN_PIN,
or is asked on the terminal without echo (never when stdin is not a terminal).
After ` + fmt.Sprint(config.DefaultClient().MaxPINFailures) + ` wrong PINs in a row (max_pin_failures) the key is locked until
the power company resets it (adminctl pin reset, with the key on its desk).
Arrears alerts are shown by "login" and "arrears".

Exit code 4 also covers a locked key, a refused final try and a certificate
refused by this client (expired, not GridPay's) or by the gateway (revoked,
not bound...); 6 also covers no USB key inserted and a gateway that cannot be
reached or does not answer within timeout.

Configuration comes from --config (YAML; default $GRIDPAY_CONFIG), GRIDPAY_*
environment variables (GRIDPAY_GATEWAY_URL sets gateway_url) and flags.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: a.setup,
	}
	a.root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.WithCode(cli.ExitUsage, err) })
	a.root.SetHelpTemplate(a.root.HelpTemplate() + "\n" + cli.ExitCodesHelp + "\n")
	pf := a.root.PersistentFlags()
	pf.StringVar(&a.configFile, "config", os.Getenv("GRIDPAY_CONFIG"), "configuration file (YAML); default $GRIDPAY_CONFIG")
	pf.BoolVar(&a.jsonOut, "json", false, "print data as JSON")
	pf.String("token-serial", "", "serial number of the USB key to use (token.serial)")
	pf.String("token-label", "", "label of the USB key to use (token.label)")
	pf.BoolVar(&a.allowFinalTry, "allow-final-try", false, "try the PIN even when the key reports that one more wrong PIN locks it")
	pf.String("log-level", "", "log level: debug, info, warn, error")
	a.root.AddCommand(a.loginCommand(), a.infoCommand(), a.consumptionCommand(), a.billsCommand(), a.arrearsCommand(), a.historyCommand())
	a.root.AddCommand(a.uiCommand(), a.payCommand())
	a.root.AddCommand(a.walletCommand(), a.loadCommand(), a.cardCommand())
	return a
}

func (a *app) setup(cmd *cobra.Command, _ []string) error {
	cfg, err := config.Load(config.DefaultClient(), config.Source{
		File:  a.configFile,
		Flags: cmd.Flags(),
		Bind: map[string]string{
			"log-level":    "log.level",
			"token-serial": "token.serial",
			"token-label":  "token.label",
		},
	})
	if err != nil {
		return cli.WithCode(cli.ExitConfig, err)
	}
	a.cfg = cfg
	a.log, err = logging.New(cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return cli.WithCode(cli.ExitConfig, err)
	}
	a.out = cli.Output{JSON: a.jsonOut, W: cmd.OutOrStdout()}
	a.stderr = cmd.ErrOrStderr()
	a.local, err = pinlock.OpenLocal(cfg.StateDir)
	if err != nil {
		return cli.WithCode(cli.ExitConfig, fmt.Errorf("state_dir: %w", err))
	}
	return nil
}

// warn tells the user something on stderr, whatever the output format.
func (a *app) warn(format string, args ...any) {
	fmt.Fprintf(a.stderr, "warning: "+format+"\n", args...)
}

// userError is an error whose message is written for the customer; the
// error it wraps (with the technical detail) stays reachable for errors.Is
// and goes to the debug log.
type userError struct {
	msg string
	err error
}

func (e *userError) Error() string { return e.msg }
func (e *userError) Unwrap() error { return e.err }

// fail returns an error showing msg, with exit code code, wrapping err.
func fail(code int, err error, format string, args ...any) error {
	return cli.WithCode(code, &userError{msg: fmt.Sprintf(format, args...), err: err})
}

func init() { cli.RegisterClassifier(classify) }

// classify gives exit codes to errors no command has given one.
func classify(err error) (int, bool) {
	var cfgErr config.Errors
	var gwErr *gatewayError
	switch {
	case errors.As(err, &gwErr):
		return exitCodeFor(gwErr.Code, gwErr.Status), true
	case errors.As(err, &cfgErr), errors.Is(err, config.ErrSecretMissing), errors.Is(err, hsm.ErrNoPINSource), errors.Is(err, hsm.ErrModuleMissing):
		return cli.ExitConfig, true
	case errors.Is(err, pinlock.ErrLocked), errors.Is(err, hsm.ErrWrongPIN), errors.Is(err, hsm.ErrPINLocked), errors.Is(err, hsm.ErrPINExpired):
		return cli.ExitAuth, true
	case errors.Is(err, hsm.ErrTokenAbsent), errors.Is(err, hsm.ErrDeviceRemoved):
		return cli.ExitUnavailable, true
	}
	return 0, false
}

// noArgs refuses positional arguments with a usage error.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("unexpected argument %q", args[0]))
	}
	return nil
}

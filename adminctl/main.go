// Command adminctl is the operator's tool: database migrations, the
// certificate authority in the HSM, the audit log, and (with the USB key on
// the desk) tokens. It talks to PostgreSQL and the HSM directly and is used
// inside the company intranet only.
package main

import (
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/logging"
)

// admin is the state shared by every command.
type admin struct {
	configFile string
	jsonOut    bool
	logLevel   string
	wait       time.Duration

	root *cobra.Command
	cfg  config.Admin
	log  *zap.Logger
	out  cli.Output
}

func main() { cli.Main("adminctl", newAdmin().root) }

func newAdmin() *admin {
	a := &admin{}
	a.root = &cobra.Command{
		Use:   "adminctl",
		Short: "GridPay administration: database, certificate authority, audit log, tokens",
		Long: `adminctl administers GridPay: it applies database migrations, sets up and runs the
certificate authority whose keys live in the HSM, publishes CRLs, verifies the
tamper-evident audit log and lists PKCS#11 tokens.

Configuration comes from --config (YAML), GRIDPAY_* environment variables and flags;
secrets (the HSM PIN, the database password) only from files or the environment.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: a.setup,
	}
	a.root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.WithCode(cli.ExitUsage, err) })
	a.root.SetHelpTemplate(a.root.HelpTemplate() + "\n" + cli.ExitCodesHelp + "\n")
	pf := a.root.PersistentFlags()
	pf.StringVar(&a.configFile, "config", os.Getenv("GRIDPAY_CONFIG"), "configuration file (YAML); default $GRIDPAY_CONFIG")
	pf.BoolVar(&a.jsonOut, "json", false, "print data as JSON")
	pf.StringVar(&a.logLevel, "log-level", "", "log level: debug, info, warn, error")
	pf.DurationVar(&a.wait, "wait", 2*time.Minute, "how long to wait for a workflow step before giving up (the workflow goes on)")
	pin := &cobra.Command{Use: "pin", Short: "USB key PINs", Args: noArgs}
	pin.AddCommand(a.pinResetCommand())
	a.root.AddCommand(a.dbCommand(), a.caCommand(), a.auditCommand(), a.tokensCommand(), a.configCommand(), a.devCommand(),
		a.bindCommand(), a.unbindCommand(), a.reissueCommand(), a.bindingsCommand(), a.loadsCommand(), a.temporalCommand(), pin)
	return a
}

func (a *admin) setup(cmd *cobra.Command, _ []string) error {
	cfg, err := config.Load(config.DefaultAdmin(), config.Source{
		File:  a.configFile,
		Flags: cmd.Flags(),
		Bind:  map[string]string{"log-level": "log.level"},
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
	return nil
}

// actor names the operator in the audit log.
func actor() string {
	if u, err := user.Current(); err == nil {
		return "adminctl:" + u.Username
	}
	return "adminctl"
}

// noArgs refuses positional arguments with a usage error.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("unexpected argument %q", args[0]))
	}
	return nil
}

// Command worker hosts GridPay's Temporal workflows and activities. It is
// stateless: run as many as the load needs, each connected to Temporal,
// PostgreSQL and the HSM.
package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/logging"
)

func main() { cli.Main("worker", command()) }

func command() *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run GridPay's Temporal worker (workflows and activities)",
		Long: `worker connects to Temporal, PostgreSQL and the HSM, registers GridPay's workflows
and activities on the task queue, makes sure its schedules exist (CRL publication, audit anchors),
and runs until SIGINT or SIGTERM, then lets running activities finish
(shutdown_timeout) before exiting.

It refuses to start against a database whose schema is older than this binary
(run "adminctl db migrate") or before the CA and the payload key exist (run
"adminctl ca init"). Every payload it hands to Temporal is encrypted with the
payload key in the HSM; with temporal.codec.listen set it also serves the codec
endpoint through which the Temporal Web UI decrypts them.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(config.DefaultWorker(), config.Source{
				File:  configFile,
				Flags: cmd.Flags(),
				Bind:  map[string]string{"log-level": "log.level", "temporal-address": "temporal.address", "task-queue": "temporal.task_queue"},
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
	f.String("log-level", "", "log level: debug, info, warn, error")
	f.String("temporal-address", "", "Temporal frontend host:port")
	f.String("task-queue", "", "Temporal task queue")
	return cmd
}

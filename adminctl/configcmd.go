package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/config"
)

func (a *admin) configCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "The effective configuration", Args: noArgs}
	cmd.AddCommand(&cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration (secrets shown only as their sources)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := config.Redacted(a.cfg)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return err
		},
	})
	return cmd
}

package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/internal/cli"
)

func (a *admin) dbCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "db", Short: "Database schema: migrate, status", Args: noArgs}
	cmd.AddCommand(&cobra.Command{
		Use:   "migrate",
		Short: "Apply pending migrations (each in its own transaction; safe to run concurrently)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := a.openDB(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer db.Close()
			p := cli.StartProgress("applying migrations")
			applied, err := db.Migrate(cmd.Context())
			if err != nil {
				p.Done("failed")
				return err
			}
			p.Done(fmt.Sprintf("%d applied", len(applied)))
			ids := make([]string, len(applied))
			for i, m := range applied {
				ids[i] = m.ID()
			}
			return a.out.Print(map[string]any{"applied": ids}, func(w io.Writer) {
				if len(ids) == 0 {
					fmt.Fprintln(w, "database schema is up to date")
				}
				for _, id := range ids {
					fmt.Fprintln(w, "applied", id)
				}
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "List migrations and whether each is applied",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := a.openDB(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer db.Close()
			st, err := db.Status(cmd.Context())
			if err != nil {
				return err
			}
			type row struct {
				Migration string     `json:"migration"`
				Applied   bool       `json:"applied"`
				AppliedAt *time.Time `json:"applied_at,omitempty"`
			}
			rows := make([]row, len(st))
			for i, s := range st {
				rows[i] = row{Migration: s.ID(), Applied: s.Applied}
				if s.Applied {
					at := s.AppliedAt
					rows[i].AppliedAt = &at
				}
			}
			return a.out.Print(rows, func(w io.Writer) {
				for _, r := range rows {
					state := "pending"
					if r.Applied {
						state = "applied " + r.AppliedAt.Format(time.RFC3339)
					}
					fmt.Fprintf(w, "%-28s %s\n", r.Migration, state)
				}
			})
		},
	})
	return cmd
}

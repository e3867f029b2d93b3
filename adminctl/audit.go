package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/store"
)

func (a *admin) auditCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "The tamper-evident audit log", Args: noArgs}
	cmd.AddCommand(&cobra.Command{
		Use:   "verify",
		Short: "Walk the hash chain and report the first edited, inserted or deleted entry",
		Long: `verify recomputes every audit entry's hash and its link to the previous entry, and
compares the last one with the recorded head. Exit code 0 means the chain is intact;
1 means it was tampered with (the report names the first bad entry).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := a.openDB(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer db.Close()
			p := cli.StartProgress("verifying the audit chain")
			rep, err := db.VerifyAudit(cmd.Context())
			var tampered *store.AuditTamperedError
			if err != nil && !errors.As(err, &tampered) {
				p.Done("failed")
				return err
			}
			if rep.OK() {
				p.Done("intact")
			} else {
				p.Done("TAMPERED")
			}
			if perr := a.out.Print(rep, func(w io.Writer) {
				if rep.OK() {
					fmt.Fprintf(w, "audit log intact: %d entries, head #%d, head hash %x\n", rep.Checked, rep.HeadSeq, rep.HeadHash)
				} else {
					fmt.Fprintf(w, "audit log TAMPERED at entry #%d: %s (%s)\n", rep.FirstBadSeq, rep.Problem, rep.Explanation)
				}
			}); perr != nil {
				return perr
			}
			return err
		},
	})
	return cmd
}

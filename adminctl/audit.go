package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/gridpay/gridpay/pki"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/store"
)

// errAnchorsDisagree is audit verify's error when the log does not match
// its anchors (exit code 1, like a broken chain).
var errAnchorsDisagree = errors.New("the audit log does not match its anchors")

// pinnedRoots checks the root CAs the database holds against root.pem in
// pki.dir, the file ca init exported: anchors are verified up to those
// roots, and a superuser who replaced them in the database could
// otherwise make forged anchors verify. Without the file there is nothing
// to pin to (a machine that never ran ca init).
func pinnedRoots(dir string, roots []*x509.Certificate) error {
	b, err := os.ReadFile(filepath.Join(dir, "root.pem"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the pinned root CA: %w", err)
	}
	pinned, err := pki.DecodeCertificatesPEM(b)
	if err != nil {
		return fmt.Errorf("the pinned root CA %s: %w", filepath.Join(dir, "root.pem"), err)
	}
	for _, r := range roots {
		if !slices.ContainsFunc(pinned, r.Equal) {
			return cli.WithCode(cli.ExitError, fmt.Errorf("%w: root CA %q in the database is not in %s: its CA records may have been replaced",
				store.ErrAuditTampered, r.Subject.CommonName, filepath.Join(dir, "root.pem")))
		}
	}
	return nil
}

// auditVerifyReport is audit verify's output: the chain walk's report,
// and what the anchors say when there are any.
type auditVerifyReport struct {
	store.AuditReport
	Anchors  *activities.AnchorReport `json:"anchors,omitempty"`
	Temporal *activities.AnchorReport `json:"temporal,omitempty"`
}

func (a *admin) auditCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "The tamper-evident audit log", Args: noArgs}
	var (
		anchorDir   string
		useTemporal bool
		recent      int
	)
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Walk the hash chain and check it against the signed anchors kept outside the database",
		Long: `verify recomputes every audit entry's hash and its link to the previous entry, and
compares the last one with the recorded head. Then it checks the log against the
anchors of its head that the worker signed with the "audit" key in the HSM and wrote
outside PostgreSQL (--anchors, default audit.anchor_dir): each anchor's signature and
certificate must verify against GridPay's CAs, and the log's entry at the anchor's seq
must exist and have exactly the anchored hash. This detects what the chain alone
cannot: a database superuser rewriting the tail and the head consistently.
--temporal also checks the anchors returned by the latest AnchorAudit workflow runs.

Exit code 0 means the chain is intact and matches every anchor; 1 means it was
tampered with (the report names the first bad entry or anchor).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if !cmd.Flags().Changed("anchors") {
				anchorDir = a.cfg.Audit.AnchorDir
			}
			db, err := a.openDB(ctx, true)
			if err != nil {
				return err
			}
			defer db.Close()
			// Anchors are read before the walk: one written meanwhile could
			// otherwise be newer than the head the walk saw.
			var files, runs []activities.AnchorFile
			if anchorDir != "" {
				if files, err = activities.ReadAnchorDir(anchorDir); err != nil {
					return cli.WithCode(cli.ExitNotFound, err)
				}
			}
			if useTemporal {
				if runs, err = a.temporalAnchors(ctx, recent); err != nil {
					return err
				}
			}
			p := cli.StartProgress("verifying the audit chain")
			chain, err := db.VerifyAudit(ctx)
			var tampered *store.AuditTamperedError
			if err != nil && !errors.As(err, &tampered) {
				p.Done("failed")
				return err
			}
			rep := auditVerifyReport{AuditReport: chain}
			if anchorDir != "" || useTemporal {
				v, verr := authority.LoadTrust(ctx, db)
				if verr == nil {
					verr = pinnedRoots(a.cfg.PKI.Dir, v.Roots)
				}
				if verr != nil {
					p.Done("failed")
					return verr
				}
				ver, verr := v.Verifier(ctx, db)
				if verr != nil {
					p.Done("failed")
					return verr
				}
				check := func(source string, fs []activities.AnchorFile) (*activities.AnchorReport, error) {
					r, err := activities.CheckAnchors(ctx, source, fs, ver, db.AuditHashes, chain.HeadSeq)
					return &r, err
				}
				if anchorDir != "" {
					if rep.Anchors, verr = check(anchorDir, files); verr != nil {
						p.Done("failed")
						return verr
					}
				}
				if useTemporal {
					if rep.Temporal, verr = check("temporal", runs); verr != nil {
						p.Done("failed")
						return verr
					}
				}
			}
			anchorsOK := (rep.Anchors == nil || rep.Anchors.OK()) && (rep.Temporal == nil || rep.Temporal.OK())
			if err == nil && !anchorsOK {
				err = errAnchorsDisagree
			}
			if err == nil {
				p.Done("intact")
			} else {
				p.Done("TAMPERED")
			}
			if perr := a.out.Print(rep, func(w io.Writer) { printAuditReport(w, rep) }); perr != nil {
				return perr
			}
			return err
		},
	}
	f := verify.Flags()
	f.StringVar(&anchorDir, "anchors", "", "directory of audit anchor files (default audit.anchor_dir; empty: none)")
	f.BoolVar(&useTemporal, "temporal", false, "also check the anchors of the latest AnchorAudit workflow runs in Temporal")
	f.IntVar(&recent, "temporal-runs", 48, "how many of the latest AnchorAudit runs --temporal checks")
	cmd.AddCommand(verify)
	return cmd
}

func printAuditReport(w io.Writer, rep auditVerifyReport) {
	if rep.OK() {
		fmt.Fprintf(w, "audit log intact: %d entries, head #%d, head hash %x\n", rep.Checked, rep.HeadSeq, rep.HeadHash)
	} else {
		fmt.Fprintf(w, "audit log TAMPERED at entry #%d: %s (%s)\n", rep.FirstBadSeq, rep.Problem, rep.Explanation)
	}
	for _, r := range []*activities.AnchorReport{rep.Anchors, rep.Temporal} {
		switch {
		case r == nil:
		case r.Checked == 0:
			fmt.Fprintf(w, "anchors (%s): none found\n", r.Source)
		case r.OK():
			fmt.Fprintf(w, "anchors (%s): %d checked, all match; newest #%d at %s\n", r.Source, r.Checked, r.NewestSeq,
				r.NewestTime.Format(time.RFC3339))
		default:
			fmt.Fprintf(w, "anchors (%s): TAMPERED at anchored entry #%d (%s): %s (%s); %d checked, newest #%d at %s\n", r.Source,
				r.FirstBadSeq, r.FirstBadName, r.Problem, r.Explanation, r.Checked, r.NewestSeq, r.NewestTime.Format(time.RFC3339))
		}
	}
}

// temporalAnchors reads the anchors returned by the latest n completed
// AnchorAudit runs.
func (a *admin) temporalAnchors(ctx context.Context, n int) ([]activities.AnchorFile, error) {
	tc, err := a.dialTemporal(ctx)
	if err != nil {
		return nil, err
	}
	defer tc.Close()
	var out []activities.AnchorFile
	const query = "WorkflowType = 'AnchorAudit' AND ExecutionStatus = 'Completed'"
	it, err := listWorkflows(ctx, tc, a.cfg.Temporal.Namespace, query, n)
	if err != nil {
		return nil, err
	}
	for _, e := range it {
		var res activities.AnchorResult
		name := "workflow " + e.id + " run " + e.run
		f := activities.AnchorFile{Name: name}
		if err := tc.GetWorkflow(ctx, e.id, e.run).Get(ctx, &res); err != nil {
			f.Err = err
		}
		f.Anchor = res.Anchor
		out = append(out, f)
	}
	return out, nil
}

type execution struct{ id, run string }

func listWorkflows(ctx context.Context, tc client.Client, namespace, query string, n int) ([]execution, error) {
	var out []execution
	var token []byte
	for len(out) < n {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: namespace, Query: query,
			PageSize: int32(min(n, 100)), NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("listing AnchorAudit runs: %w", err)
		}
		for _, e := range resp.Executions {
			if len(out) < n {
				out = append(out, execution{e.Execution.WorkflowId, e.Execution.RunId})
			}
		}
		if token = resp.NextPageToken; len(token) == 0 {
			break
		}
	}
	return out, nil
}

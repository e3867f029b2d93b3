package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/workflows"
)

func init() {
	// A settlement the load workflow refuses, as adminctl reports it.
	cli.RegisterClassifier(func(err error) (int, bool) {
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) {
			return 0, false
		}
		switch appErr.Type() {
		case workflows.ErrTypeSettlementRefused:
			return cli.ExitConflict, true
		case workflows.ErrTypeInvalidInput:
			return cli.ExitUsage, true
		}
		return 0, false
	})
}

// loadView is a load as adminctl prints it: GridPay's record and, while
// the workflow runs, its live state.
type loadView struct {
	LoadID      string     `json:"load_id"`
	WorkflowID  string     `json:"workflow_id"`
	CustomerID  string     `json:"customer_id"`
	TokenSerial string     `json:"token_serial"`
	Sequence    uint64     `json:"sequence"`
	Amount      money.Fen  `json:"amount"`
	Status      string     `json:"status"`
	ConfirmedBy string     `json:"confirmed_by,omitempty"`
	Reason      string     `json:"reason,omitempty"`
	Created     time.Time  `json:"created"`
	Expires     *time.Time `json:"allow_expires,omitempty"`
	// Live is the workflow's state while it runs (absent once it ended or
	// when Temporal was not asked).
	Live *workflows.LoadState `json:"live,omitempty"`
}

func viewOf(l store.Load) loadView {
	return loadView{LoadID: l.LoadID, WorkflowID: l.WorkflowID, CustomerID: l.CustomerID, TokenSerial: l.TokenSerial, Sequence: l.Sequence,
		Amount: money.Fen(l.Amount), Status: string(l.Status), ConfirmedBy: l.ConfirmedBy, Reason: l.Reason, Created: l.CreatedAt,
		Expires: l.AllowExpiresAt}
}

func (a *admin) loadsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "loads",
		Short: "Loads of USB key wallets: list, show, and settle those a lost key left open",
		Long: `loads shows the signed load exchanges (圈存) of customers' USB keys as GridPay
recorded them, and lets an operator settle a load that no key can settle any more.

A load whose allow went out is settled by what the key signs: its receipt, or its
wallet's sequence number at its next session. If the key is unbound (lost, destroyed)
before that, nothing will ever come: such a load waits in Temporal with
OperationStatus = "awaiting-contact". Once its allow has expired (the key refuses an
expired allow, so it can no longer be applied) an operator decides on evidence outside
the system: the key read at the desk, the meter card's records.`,
		Args: noArgs,
	}
	cmd.AddCommand(a.loadsListCommand(), a.loadsShowCommand(), a.loadsSettleCommand())
	return cmd
}

func (a *admin) loadsListCommand() *cobra.Command {
	var f store.LoadFilter
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List loads, newest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := a.openDB(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer db.Close()
			ls, err := store.ListLoads(cmd.Context(), db, f)
			if err != nil {
				return err
			}
			views := make([]loadView, 0, len(ls))
			for _, l := range ls {
				views = append(views, viewOf(l))
			}
			return a.out.Print(views, func(w io.Writer) {
				if len(views) == 0 {
					fmt.Fprintln(w, "no loads")
					return
				}
				fmt.Fprintf(w, "%-28s %-10s %12s %-10s %-19s %s\n", "LOAD", "CUSTOMER", "AMOUNT", "STATUS", "CREATED", "NOTE")
				for _, v := range views {
					note := v.Reason
					if v.ConfirmedBy != "" {
						note = "by " + v.ConfirmedBy
					}
					fmt.Fprintf(w, "%-28s %-10s %12s %-10s %-19s %s\n", v.LoadID, v.CustomerID, v.Amount.Display(), v.Status,
						v.Created.In(platform.Shanghai).Format(time.DateTime), note)
				}
			})
		},
	}
	cmd.Flags().StringVar(&f.CustomerID, "customer", "", "only this customer's loads")
	cmd.Flags().StringVar(&f.TokenSerial, "token-serial", "", "only this USB key's loads")
	cmd.Flags().BoolVar(&f.OpenOnly, "open", false, "only loads not settled yet")
	cmd.Flags().IntVar(&f.Limit, "limit", 100, "at most this many")
	return cmd
}

func (a *admin) loadsShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show <load-id>",
		Short: "Show a load: GridPay's record and, while it runs, its workflow's state",
		Args:  oneLoadID,
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.loadView(cmd.Context(), args[0], true)
			if err != nil {
				return err
			}
			return a.out.Print(v, func(w io.Writer) { renderLoad(w, v) })
		},
	}
}

func (a *admin) loadsSettleCommand() *cobra.Command {
	var refund, confirm bool
	var reason string
	cmd := &cobra.Command{
		Use:   "settle <load-id> (--refund | --confirm) --reason TEXT",
		Short: "Settle the open load of an unbound USB key (audited)",
		Long: `settle decides a load that its USB key can no longer settle: the key was unbound
after the load's allow went out, and the allow has expired. The load workflow refuses
anything else (exit code 7): a bound key settles its own loads at its next session.

  --refund   the wallet did not take the load: the amount goes back to the customer's
             prepaid account at the platform (keyed by the load, so never twice);
  --confirm  the wallet took it: the money is on the key (for example the meter card
             shows it passed on).

The reason (what the decision rests on) is kept in the audit log with your name and,
for a refund, shown to the customer.`,
		Args: oneLoadID,
		RunE: func(cmd *cobra.Command, args []string) error {
			if refund == confirm {
				return cli.WithCode(cli.ExitUsage, errors.New("give exactly one of --refund and --confirm"))
			}
			o := workflows.OperatorSettlement{Outcome: workflows.SettleRefund, Operator: actor(), Reason: strings.TrimSpace(reason)}
			if confirm {
				o.Outcome = workflows.SettleConfirm
			}
			if err := o.Validate(); err != nil {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("--reason: %w", err))
			}
			v, err := a.loadView(cmd.Context(), args[0], false)
			if err != nil {
				return err
			}
			if store.LoadStatus(v.Status).Final() {
				return cli.WithCode(cli.ExitConflict, fmt.Errorf("load %s is already %s", v.LoadID, v.Status))
			}
			tc, err := a.dialTemporal(cmd.Context())
			if err != nil {
				return err
			}
			defer tc.Close()
			out, err := a.settleLoad(cmd.Context(), tc, v.WorkflowID, o)
			if err != nil {
				return err
			}
			return a.out.Print(out, func(w io.Writer) {
				fmt.Fprintf(w, "load %s of customer %s (%s): %s\n", out.LoadID, v.CustomerID, out.Amount.Display(), out.Status)
				if out.Reason != "" {
					fmt.Fprintf(w, "  reason: %s\n", out.Reason)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&refund, "refund", false, "the wallet did not take the load: credit the prepaid account back")
	cmd.Flags().BoolVar(&confirm, "confirm", false, "the wallet took the load")
	cmd.Flags().StringVar(&reason, "reason", "", "what the decision rests on (10 to 500 characters; audited)")
	return cmd
}

func oneLoadID(_ *cobra.Command, args []string) error {
	if len(args) != 1 {
		return cli.WithCode(cli.ExitUsage, errors.New("give one load ID (adminctl loads list shows them)"))
	}
	return nil
}

// loadView reads a load's record and, if live, asks its workflow.
func (a *admin) loadView(ctx context.Context, loadID string, live bool) (loadView, error) {
	db, err := a.openDB(ctx, true)
	if err != nil {
		return loadView{}, err
	}
	defer db.Close()
	l, err := store.LoadByLoadID(ctx, db, loadID)
	if errors.Is(err, store.ErrNotFound) {
		return loadView{}, cli.WithCode(cli.ExitNotFound, fmt.Errorf("no load %q", loadID))
	}
	if err != nil {
		return loadView{}, err
	}
	v := viewOf(l)
	if !live || l.Status.Final() {
		return v, nil
	}
	tc, err := a.dialTemporal(ctx)
	if err != nil {
		return loadView{}, err
	}
	defer tc.Close()
	q, err := tc.QueryWorkflow(ctx, l.WorkflowID, "", workflows.QueryStatus)
	var st workflows.LoadState
	if err == nil {
		err = q.Get(&st)
	}
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		// The record is open and the workflow gone: say so, it matters.
		v.Reason = strings.TrimSpace(v.Reason + " (no workflow " + l.WorkflowID + " in Temporal)")
	case err != nil:
		return loadView{}, fmt.Errorf("asking workflow %s: %w", l.WorkflowID, err)
	default:
		v.Live = &st
	}
	return v, nil
}

func (a *admin) settleLoad(ctx context.Context, tc client.Client, workflowID string, o workflows.OperatorSettlement) (workflows.LoadOutcome, error) {
	p := cli.StartProgress("load workflow: settling (audit, then the platform)")
	ctx, cancel := a.waitFor(ctx)
	defer cancel()
	h, err := tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: workflowID, UpdateName: workflows.UpdateOperatorSettle,
		Args: []any{o}, WaitForStage: client.WorkflowUpdateStageCompleted})
	var out workflows.LoadOutcome
	if err == nil {
		err = h.Get(ctx, &out)
	}
	if err != nil {
		p.Done("refused")
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return out, cli.WithCode(cli.ExitConflict, fmt.Errorf("workflow %s is not running", workflowID))
		}
		return out, waited(err, "settling", workflowID)
	}
	p.Done(out.Status)
	return out, nil
}

func renderLoad(w io.Writer, v loadView) {
	fmt.Fprintf(w, "load %s (workflow %s)\n", v.LoadID, v.WorkflowID)
	fmt.Fprintf(w, "  customer %s, USB key %s, sequence %d\n", v.CustomerID, v.TokenSerial, v.Sequence)
	fmt.Fprintf(w, "  amount %s, status %s", v.Amount.Display(), v.Status)
	if v.ConfirmedBy != "" {
		fmt.Fprintf(w, " (by %s)", v.ConfirmedBy)
	}
	fmt.Fprintf(w, "\n  created %s\n", v.Created.In(platform.Shanghai).Format(time.DateTime))
	if v.Expires != nil {
		fmt.Fprintf(w, "  allow expires %s\n", v.Expires.In(platform.Shanghai).Format(time.DateTime))
	}
	if v.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", v.Reason)
	}
	if s := v.Live; s != nil {
		fmt.Fprintf(w, "  workflow: %s", s.Status)
		if s.TokenUnbound {
			fmt.Fprintf(w, "; the key was unbound (%s)", s.UnboundReason)
		}
		fmt.Fprintln(w)
		if s.LastReport != "" {
			fmt.Fprintf(w, "  last word of the key: %s\n", s.LastReport)
		}
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
)

// tokenView names the USB key in login output.
type tokenView struct {
	Serial string `json:"serial"`
	Label  string `json:"label"`
}

// certView describes the certificate presented to the gateway.
type certView struct {
	Serial      string    `json:"serial"`
	CustomerID  string    `json:"customer_id"`
	TokenSerial string    `json:"token_serial"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
}

// loginOutput is what login prints with --json.
type loginOutput struct {
	Customer    platform.Customer `json:"customer"`
	Token       tokenView         `json:"token"`
	Certificate certView          `json:"certificate"`
	Alerts      []api.Alert       `json:"alerts"`
}

// infoOutput is what info prints with --json.
type infoOutput struct {
	Customer       platform.Customer        `json:"customer"`
	MeteringPoints []platform.MeteringPoint `json:"metering_points"`
	Prepaid        *platform.PrepaidAccount `json:"prepaid,omitempty"`
}

func (a *app) loginCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "login",
		Short: "Unlock the USB key, check its certificate and show who you are, with arrears alerts",
		Long: `login unlocks the USB key with its PIN, verifies the certificate on it (chain to
GridPay's root and validity) before connecting, logs in to the gateway and shows
the customer the key belongs to, the certificate's expiry and any arrears alerts.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withSession(cmd.Context(), func(ctx context.Context, s *session) error {
				var me api.Me
				if err := a.fetch(ctx, s, "your profile", api.PathMe, nil, &me); err != nil {
					return err
				}
				out := loginOutput{
					Customer:    me.Customer,
					Token:       tokenView{Serial: s.key.TokenSerial, Label: s.key.TokenLabel},
					Certificate: certOf(s),
					Alerts:      nonNil(me.Alerts),
				}
				return a.out.Print(out, func(w io.Writer) { renderLogin(w, out) })
			})
		},
	}
}

func certOf(s *session) certView {
	l := s.key.Leaf
	return certView{Serial: pki.SerialHex(l.SerialNumber), CustomerID: s.id.CustomerID, TokenSerial: s.id.TokenSerial, NotBefore: l.NotBefore.UTC(), NotAfter: l.NotAfter.UTC()}
}

func (a *app) infoCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show your customer profile and metering points",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withSession(cmd.Context(), func(ctx context.Context, s *session) error {
				var me api.Me
				if err := a.fetch(ctx, s, "your profile", api.PathMe, nil, &me); err != nil {
					return err
				}
				out := infoOutput{Customer: me.Customer, MeteringPoints: nonNil(me.MeteringPoints), Prepaid: me.Prepaid}
				return a.out.Print(out, func(w io.Writer) { renderInfo(w, out) })
			})
		},
	}
}

func (a *app) consumptionCommand() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "consumption",
		Short: "Show monthly consumption: peak, flat, valley and total kWh",
		Long: fmt.Sprintf(`consumption shows the electricity used each month, split by time of use (peak,
flat, valley), summed over your metering points, with a bar chart. Without
--from/--to the gateway picks the recent months; a range covers at most %d months.`, api.MaxMonths),
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := periodRange(from, to)
			if err != nil {
				return err
			}
			return a.withSession(cmd.Context(), func(ctx context.Context, s *session) error {
				var list api.ConsumptionList
				if err := a.fetch(ctx, s, "your consumption", api.PathConsumption, q, &list); err != nil {
					return err
				}
				list.Items = nonNil(list.Items)
				return a.out.Print(list, func(w io.Writer) { renderConsumption(w, list) })
			})
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "first month, YYYY-MM")
	cmd.Flags().StringVar(&to, "to", "", "last month, YYYY-MM")
	return cmd
}

// periodRange checks --from/--to months and turns them into a query.
func periodRange(from, to string) (url.Values, error) {
	q := url.Values{}
	var f, t platform.Period
	var err error
	if from != "" {
		if f, err = platform.ParsePeriod(from); err != nil {
			return nil, cli.WithCode(cli.ExitUsage, fmt.Errorf("--from: %w", err))
		}
		q.Set("from", string(f))
	}
	if to != "" {
		if t, err = platform.ParsePeriod(to); err != nil {
			return nil, cli.WithCode(cli.ExitUsage, fmt.Errorf("--to: %w", err))
		}
		q.Set("to", string(t))
	}
	if f != "" && t != "" {
		if f > t {
			return nil, cli.WithCode(cli.ExitUsage, fmt.Errorf("--from %s is after --to %s", f, t))
		}
		if n := months(f, t); n > api.MaxMonths {
			return nil, cli.WithCode(cli.ExitUsage, fmt.Errorf("%s to %s is %d months; at most %d at a time", f, t, n, api.MaxMonths))
		}
	}
	return q, nil
}

// months counts the months from f to t inclusive.
func months(f, t platform.Period) int {
	ft, _ := time.Parse("2006-01", string(f))
	tt, _ := time.Parse("2006-01", string(t))
	return (tt.Year()-ft.Year())*12 + int(tt.Month()-ft.Month()) + 1
}

func (a *app) billsCommand() *cobra.Command {
	var all bool
	var from, to, id string
	cmd := &cobra.Command{
		Use:   "bills",
		Short: "List your unpaid bills (--all for every bill), or show one bill with --id",
		Long: `bills lists the bills still to pay (open and overdue). --all lists every bill,
settled ones too; --from/--to (YYYY-MM) limit the billing months. --id shows one
bill in detail: energy and basic charges, late fee, amount paid and amount due.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if id != "" {
				if all || from != "" || to != "" {
					return cli.WithCode(cli.ExitUsage, fmt.Errorf("--id shows one bill; it does not combine with --all, --from or --to"))
				}
				return a.withSession(cmd.Context(), func(ctx context.Context, s *session) error {
					var b platform.Bill
					if err := a.fetch(ctx, s, "bill "+id, api.PathBill+url.PathEscape(id), nil, &b); err != nil {
						return err
					}
					return a.out.Print(b, func(w io.Writer) { renderBill(w, b) })
				})
			}
			q, err := periodRange(from, to)
			if err != nil {
				return err
			}
			status := "unpaid"
			if all {
				status = "all"
			}
			q.Set("status", status)
			return a.withSession(cmd.Context(), func(ctx context.Context, s *session) error {
				var list api.BillList
				if err := a.fetch(ctx, s, "your bills", api.PathBills, q, &list); err != nil {
					return err
				}
				list.Items = nonNil(list.Items)
				return a.out.Print(list, func(w io.Writer) { renderBills(w, list, all) })
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&all, "all", false, "list every bill, settled ones included")
	f.StringVar(&from, "from", "", "first billing month, YYYY-MM")
	f.StringVar(&to, "to", "", "last billing month, YYYY-MM")
	f.StringVar(&id, "id", "", "show this bill in detail")
	return cmd
}

func (a *app) arrearsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "arrears",
		Short: "Show what is overdue, late fees included, with alerts",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withSession(cmd.Context(), func(ctx context.Context, s *session) error {
				var sum api.ArrearsSummary
				if err := a.fetch(ctx, s, "your arrears", api.PathArrears, nil, &sum); err != nil {
					return err
				}
				sum.Bills, sum.Alerts = nonNil(sum.Bills), nonNil(sum.Alerts)
				return a.out.Print(sum, func(w io.Writer) { renderArrears(w, sum) })
			})
		},
	}
}

// history is what client history shows: the payments (as the gateway
// lists them) and the loads.
type history struct {
	api.PaymentList
	Loads []api.LoadRecord `json:"loads"`
}

func (a *app) historyCommand() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Show the payments received and the loads onto USB keys, newest first",
		Long: `history lists the payments the power company received from you, newest first,
with the bills each one paid, GridPay's online payments with their outcome, and the
loads onto your USB keys' wallets as GridPay recorded them. --from/--to
(YYYY-MM-DD, Asia/Shanghai dates, inclusive) limit the range.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			var f, t platform.Date
			var err error
			if from != "" {
				if f, err = platform.ParseDate(from); err != nil {
					return cli.WithCode(cli.ExitUsage, fmt.Errorf("--from: %w", err))
				}
				q.Set("from", string(f))
			}
			if to != "" {
				if t, err = platform.ParseDate(to); err != nil {
					return cli.WithCode(cli.ExitUsage, fmt.Errorf("--to: %w", err))
				}
				q.Set("to", string(t))
			}
			if f != "" && t != "" && f > t {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("--from %s is after --to %s", f, t))
			}
			return a.withSession(cmd.Context(), func(ctx context.Context, s *session) error {
				var h history
				if err := a.fetch(ctx, s, "your payment history", api.PathPayments, q, &h.PaymentList); err != nil {
					return err
				}
				var loads api.LoadList
				if err := a.fetch(ctx, s, "your loads", api.PathLoads, nil, &loads); err != nil {
					return err
				}
				h.Items = nonNil(h.Items)
				h.Loads = []api.LoadRecord{}
				for _, l := range loads.Items {
					if d := platform.DateOf(l.Created); (f == "" || d >= f) && (t == "" || d <= t) {
						h.Loads = append(h.Loads, l)
					}
				}
				return a.out.Print(h, func(w io.Writer) { renderHistory(w, h) })
			})
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "first date, YYYY-MM-DD")
	cmd.Flags().StringVar(&to, "to", "", "last date, YYYY-MM-DD")
	return cmd
}

// nonNil makes empty lists print as [] in JSON, never null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

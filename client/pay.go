package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/protocol"
)

func (a *app) payCommand() *cobra.Command {
	var bills []string
	var prepay, status string
	var open, noWait bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "pay",
		Short: "Pay bills (or top up the prepaid account) through UnionPay, and follow the payment",
		Long: `pay pays one or more of your unpaid bills in full (--bill B1,B2), or tops up your
prepaid account (--prepay 500.00), through UnionPay's online payment page.

The USB key signs the payment instruction; the gateway answers with a link to
UnionPay's pay page (--open opens it in your browser). pay then follows the
payment until the power company has posted it (or refunded it, or the order
expired unpaid). Running pay again for the same bills continues the same
payment: you are never charged twice. Ctrl-C stops following, not the payment;
"pay --status KEY" shows it later.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case status != "":
				if len(bills) > 0 || prepay != "" {
					return cli.WithCode(cli.ExitUsage, errors.New("--status takes no --bill or --prepay"))
				}
			case len(bills) > 0 && prepay != "", len(bills) == 0 && prepay == "":
				return cli.WithCode(cli.ExitUsage, errors.New("give either --bill or --prepay"))
			}
			return a.withSession(cmd.Context(), func(ctx context.Context, s *session) error {
				if status != "" {
					// One look, unless asked to wait for the outcome.
					return a.followPayment(ctx, s, status, wait, !cmd.Flags().Changed("wait"))
				}
				order, err := a.startPayment(ctx, s, bills, prepay)
				if err != nil {
					return err
				}
				if err := a.out.Print(order, func(w io.Writer) {
					fmt.Fprintf(w, "Pay %s at UnionPay (order %s) before %s:\n  %s\n", order.Amount.Display(), order.OrderID,
						order.Deadline.In(platform.Shanghai).Format("2006-01-02 15:04 MST"), order.PayURL)
				}); err != nil {
					return err
				}
				if open {
					if _, err := browserCommand(order.PayURL).Output(); err != nil {
						a.warn("could not open a browser (%v); open the link above", err)
					}
				}
				if noWait {
					return nil
				}
				return a.followPayment(ctx, s, order.Key, wait, false)
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&bills, "bill", nil, "bill IDs to pay in full (comma-separated or repeated)")
	f.StringVar(&prepay, "prepay", "", "top up the prepaid account by this amount of yuan, e.g. 500.00")
	f.StringVar(&status, "status", "", "show the payment with this key (as printed by pay)")
	f.BoolVar(&open, "open", false, "open UnionPay's pay page in the default browser")
	f.BoolVar(&noWait, "no-wait", false, "print the pay link and return")
	f.DurationVar(&wait, "wait", 30*time.Minute, "how long to follow the payment before returning (it goes on); with --status, wait for the outcome this long")
	return cmd
}

// startPayment builds, signs and sends the payment instruction.
func (a *app) startPayment(ctx context.Context, s *session, billIDs []string, prepay string) (api.PaymentOrder, error) {
	ins := protocol.PaymentInstruction{
		Version: protocol.PaymentInstructionVersion, CustomerID: s.id.CustomerID, TokenSerial: s.id.TokenSerial,
		CertSerial: pki.SerialHex(s.key.Leaf.SerialNumber), Currency: "CNY",
	}
	if prepay != "" {
		amount, err := money.ParseYuan(prepay)
		if err != nil {
			return api.PaymentOrder{}, cli.WithCode(cli.ExitUsage, fmt.Errorf("--prepay: %w", err))
		}
		ins.Kind, ins.Amount = protocol.PayPrepay, amount
	} else {
		var unpaid api.BillList
		q := map[string][]string{"status": {"unpaid"}}
		if err := a.fetch(ctx, s, "your unpaid bills", api.PathBills, q, &unpaid); err != nil {
			return api.PaymentOrder{}, err
		}
		ins.Kind, ins.BillIDs = protocol.PayBills, protocol.SortBillIDs(billIDs)
		for _, id := range ins.BillIDs {
			i := slices.IndexFunc(unpaid.Items, func(b platform.Bill) bool { return b.ID == id })
			if i < 0 {
				return api.PaymentOrder{}, cli.WithCode(cli.ExitNotFound, fmt.Errorf("bill %s is not one of your unpaid bills (see: client bills)", id))
			}
			ins.Amount += unpaid.Items[i].AmountDue
		}
	}
	key, err := a.paymentKey(ins)
	if err != nil {
		return api.PaymentOrder{}, err
	}
	ins.IdempotencyKey = key
	ins.Nonce = make([]byte, protocol.MinNonceSize)
	if _, err := rand.Read(ins.Nonce); err != nil {
		return api.PaymentOrder{}, err
	}
	ins.Timestamp = a.now().UTC().Truncate(time.Second)
	enc, err := protocol.EncodePaymentInstruction(ins)
	if err != nil {
		return api.PaymentOrder{}, err
	}
	sig, err := s.key.Signer.Sign(rand.Reader, protocol.PaymentInstructionDigest(enc), crypto.SHA256)
	if err != nil {
		return api.PaymentOrder{}, fmt.Errorf("the USB key could not sign the payment: %w", err)
	}
	p := a.progress("sending the payment to the gateway")
	var order api.PaymentOrder
	if err := s.gw.post(ctx, api.PathPayments, api.PaymentRequest{Instruction: enc, Signature: sig}, &order); err != nil {
		p.Done("refused")
		return api.PaymentOrder{}, err
	}
	p.Done("order " + order.OrderID)
	return order, nil
}

// followPayment polls the payment until it is final or wait runs out.
func (a *app) followPayment(ctx context.Context, s *session, key string, wait time.Duration, once bool) error {
	var st api.PaymentStatus
	deadline := a.now().Add(wait)
	p := a.progress("waiting for the payment (pay in the browser; Ctrl-C stops waiting, not the payment)")
	for {
		err := s.gw.get(ctx, api.PathPayment+key, nil, &st)
		if err != nil {
			p.Done("failed")
			return err
		}
		if st.Final || once || !a.now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			p.Done("stopped waiting")
			fmt.Fprintf(a.stderr, "The payment goes on; see it with: client pay --status %s\n", key)
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	p.Done(strings.ReplaceAll(st.Status, "_", " "))
	if st.Final {
		a.forgetPayment(key)
	}
	if err := a.out.Print(st, func(w io.Writer) { renderPayment(w, st) }); err != nil {
		return err
	}
	switch st.Status {
	case "refunded", "expired", "rejected":
		return fmt.Errorf("payment %s %s: %s", key, st.Status, st.Reason)
	}
	return nil
}

func renderPayment(w io.Writer, st api.PaymentStatus) {
	fmt.Fprintf(w, "Payment %s: %s\n", st.Key, strings.ReplaceAll(st.Status, "_", " "))
	fmt.Fprintf(w, "  amount     %s (%s)\n", st.Amount.Display(), st.Kind)
	if len(st.BillIDs) > 0 {
		fmt.Fprintf(w, "  bills      %s\n", strings.Join(st.BillIDs, ", "))
	}
	if st.OrderID != "" {
		fmt.Fprintf(w, "  order      %s (UnionPay)\n", st.OrderID)
	}
	if st.QueryID != "" {
		fmt.Fprintf(w, "  UnionPay   transaction %s\n", st.QueryID)
	}
	if st.PaidAt != nil {
		fmt.Fprintf(w, "  paid       %s\n", st.PaidAt.In(platform.Shanghai).Format("2006-01-02 15:04:05"))
	}
	if st.PostedAt != nil {
		fmt.Fprintf(w, "  posted     %s (the power company has it)\n", st.PostedAt.In(platform.Shanghai).Format("2006-01-02 15:04:05"))
	}
	if st.RefundedAt != nil {
		fmt.Fprintf(w, "  refunded   %s\n", st.RefundedAt.In(platform.Shanghai).Format("2006-01-02 15:04:05"))
	}
	if st.Reason != "" {
		fmt.Fprintf(w, "  why        %s\n", st.Reason)
	}
}

// pendingPayments maps what is being paid to the idempotency key of the
// payment in progress, so that paying the same bills again continues that
// payment instead of starting another.
type pendingPayments map[string]pendingPayment

type pendingPayment struct {
	Key     string    `json:"key"`
	Started time.Time `json:"started"`
}

func (a *app) pendingFile() string { return filepath.Join(a.local.Dir(), "payments-pending.json") }

func intentOf(ins protocol.PaymentInstruction) string {
	return fmt.Sprintf("%s|%s|%s|%s|%d", ins.CustomerID, ins.TokenSerial, ins.Kind, strings.Join(ins.BillIDs, ","), int64(ins.Amount))
}

func (a *app) loadPending() pendingPayments {
	m := pendingPayments{}
	if b, err := os.ReadFile(a.pendingFile()); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	return m
}

func (a *app) savePending(m pendingPayments) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := a.pendingFile() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, a.pendingFile())
}

// paymentKey returns the key of the unfinished payment for the same
// intent, or a new random one, recorded before it is used.
func (a *app) paymentKey(ins protocol.PaymentInstruction) (string, error) {
	m := a.loadPending()
	intent := intentOf(ins)
	if p, ok := m[intent]; ok {
		return p.Key, nil
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	key := "p-" + hex.EncodeToString(b)
	m[intent] = pendingPayment{Key: key, Started: a.now()}
	if err := a.savePending(m); err != nil {
		return "", fmt.Errorf("recording the payment key in %s: %w", a.pendingFile(), err)
	}
	return key, nil
}

// forgetPayment drops a finished payment's key.
func (a *app) forgetPayment(key string) {
	m := a.loadPending()
	for intent, p := range m {
		if p.Key == key {
			delete(m, intent)
		}
	}
	if err := a.savePending(m); err != nil {
		a.log.Sugar().Warnf("updating %s: %v", a.pendingFile(), err)
	}
}

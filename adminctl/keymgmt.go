package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/client/pinlock"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/app"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/internal/provision"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/workflows"
)

// tokenInitCommand initialises a blank USB key (on SoftHSM2 it creates the
// token in a free slot).
func (a *admin) tokenInitCommand() *cobra.Command {
	var key usbKeyFlags
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Initialise a blank USB key with a label, an SO PIN and a user PIN",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if key.label == "" {
				return cli.WithCode(cli.ExitUsage, errors.New("--token-label is required"))
			}
			module := a.moduleOf(&key)
			m, err := hsm.OpenModule(module)
			if err != nil {
				return err
			}
			defer m.Close()
			if ti, err := m.FindToken(hsm.Selector{Label: key.label}); err == nil {
				return cli.WithCode(cli.ExitConflict, fmt.Errorf("a token labelled %q (serial %s) is already initialised", key.label, ti.Serial))
			}
			so, err := readPIN(key.soPINFile, "new SO PIN")
			if err != nil {
				return err
			}
			defer hsm.Zero(so)
			pin, err := readPIN(key.pinFile, "new user PIN")
			if err != nil {
				return err
			}
			defer hsm.Zero(pin)
			serial, err := provision.InitToken(module, key.label, so, pin)
			if err != nil {
				return err
			}
			a.auditDesk(cmd, "token.init", serial, map[string]any{"label": key.label})
			return a.out.Print(map[string]any{"label": key.label, "serial": serial}, func(w io.Writer) {
				fmt.Fprintf(w, "USB key %q initialised, serial %s\n", key.label, serial)
			})
		},
	}
	key.add(cmd, true, true)
	return cmd
}

// auditDesk records an act at the admin desk; a database that cannot be
// reached is reported but does not undo what was done to the key.
func (a *admin) auditDesk(cmd *cobra.Command, action, subject string, detail map[string]any) {
	db, err := a.openDB(cmd.Context(), true)
	if err == nil {
		defer db.Close()
		_, err = store.AppendAudit(cmd.Context(), db, store.AuditRecord{
			Actor: actor(), Action: action, Subject: subject, Outcome: store.OutcomeOK, Detail: detail,
		})
	}
	if err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "adminctl: warning: %s on %s not audited: %v\n", action, subject, err)
	}
}

func (a *admin) pinResetCommand() *cobra.Command {
	var key usbKeyFlags
	var newPINFile string
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Set a new user PIN with the SO PIN and clear GridPay's lockout of the key",
		Long: `reset needs the key on the desk and its SO PIN. It sets the new user PIN (C_InitPIN)
and resets GridPay's PIN-failure record on the key, which clears the lockout on every
computer the key is used on from its next use (client/pinlock).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sel, err := key.selector()
			if err != nil {
				return err
			}
			m, err := hsm.OpenModule(a.moduleOf(&key))
			if err != nil {
				return err
			}
			defer m.Close()
			ti, err := m.FindToken(sel)
			if err != nil {
				return err
			}
			so, err := readPIN(key.soPINFile, "SO PIN")
			if err != nil {
				return err
			}
			defer hsm.Zero(so)
			pin, err := readPIN(newPINFile, "new user PIN")
			if err != nil {
				return err
			}
			defer hsm.Zero(pin)
			if err := m.InitUserPIN(sel, so, pin); errors.Is(err, hsm.ErrWrongPIN) {
				return cli.WithCode(cli.ExitAuth, fmt.Errorf("wrong SO PIN for USB key %s", ti.Serial))
			} else if err != nil {
				return err
			}
			tok, err := m.OpenToken(sel, pin, hsm.Options{PoolSize: 1})
			if err != nil {
				return err
			}
			defer tok.Close()
			rec, err := pinlock.ResetToken(cmd.Context(), tok, time.Now())
			if err != nil {
				return err
			}
			a.auditDesk(cmd, "token.pin_reset", ti.Serial, map[string]any{"reset_generation": rec.ResetGeneration})
			return a.out.Print(map[string]any{"serial": ti.Serial, "reset_generation": rec.ResetGeneration}, func(w io.Writer) {
				fmt.Fprintf(w, "USB key %s: new user PIN set, lockout cleared\n", ti.Serial)
			})
		},
	}
	key.add(cmd, true, false)
	cmd.Flags().StringVar(&newPINFile, "new-pin-file", "", "file holding the new user PIN (default: prompt)")
	return cmd
}

func (a *admin) bindingsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "bindings", Short: "Bindings of USB keys to customers", Args: noArgs}
	cmd.AddCommand(&cobra.Command{
		Use:   "show <customer-id|token-serial>",
		Short: "Show the bindings of a customer or of a USB key, newest first",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return cli.WithCode(cli.ExitUsage, errors.New("give one customer ID or token serial"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := a.openDB(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer db.Close()
			bs, err := store.BindingsForCustomer(cmd.Context(), db, args[0])
			if err != nil {
				return err
			}
			byToken, err := store.BindingsForToken(cmd.Context(), db, args[0])
			if err != nil {
				return err
			}
			bs = append(bs, byToken...)
			if len(bs) == 0 {
				return cli.WithCode(cli.ExitNotFound, fmt.Errorf("no binding of customer or USB key %q", args[0]))
			}
			return a.out.Print(bs, func(w io.Writer) {
				fmt.Fprintf(w, "%-6s %-10s %-18s %-34s %-9s %s\n", "ID", "CUSTOMER", "TOKEN", "CERTIFICATE", "STATUS", "SINCE / ENDED")
				for _, b := range bs {
					when := b.CreatedAt.Format(time.DateTime)
					if b.DeactivatedAt != nil {
						when = b.DeactivatedAt.Format(time.DateTime) + " (" + b.EndReason + ")"
					} else if b.ActivatedAt != nil {
						when = b.ActivatedAt.Format(time.DateTime)
					}
					fmt.Fprintf(w, "%-6d %-10s %-18s %-34s %-9s %s\n", b.ID, b.CustomerID, b.TokenSerial, b.CertSerial, b.Status, when)
				}
			})
		},
	})
	return cmd
}

func (a *admin) temporalCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "temporal", Short: "Temporal set-up for GridPay", Args: noArgs}
	cmd.AddCommand(&cobra.Command{
		Use:   "setup",
		Short: "Register GridPay's search attributes (CustomerID, TokenSerial, OperationKind, OperationStatus) and ensure the payload key",
		Long: `setup registers GridPay's search attributes in the namespace, and makes sure the
HSM holds the key that encrypts Temporal payloads (temporal.codec.key_label), creating
it as adminctl ca init does. Running it again changes nothing.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := a.ensurePayloadKeyAtDesk(cmd)
			if err != nil {
				return err
			}
			tc, err := a.dialTemporal(cmd.Context())
			if err != nil {
				return err
			}
			defer tc.Close()
			added, err := app.RegisterSearchAttributes(cmd.Context(), tc, a.cfg.Temporal.Namespace, workflows.SearchAttributes())
			if err != nil {
				return err
			}
			return a.out.Print(map[string]any{"namespace": a.cfg.Temporal.Namespace, "added": added, "payload_key": key}, func(w io.Writer) {
				if len(added) == 0 {
					fmt.Fprintf(w, "search attributes already registered in namespace %s\n", a.cfg.Temporal.Namespace)
				}
				for _, n := range added {
					fmt.Fprintf(w, "registered search attribute %s\n", n)
				}
				key.print(w)
			})
		},
	})
	return cmd
}

// ensurePayloadKeyAtDesk is ensurePayloadKey for commands that do not
// otherwise open the database: the audit is best effort (auditDesk).
func (a *admin) ensurePayloadKeyAtDesk(cmd *cobra.Command) (payloadKeyStep, error) {
	if a.cfg.Temporal.Codec.Disabled {
		return payloadKeyStep{Key: "disabled"}, nil
	}
	tok, err := a.openHSM()
	if err != nil {
		return payloadKeyStep{}, err
	}
	defer tok.Close()
	return a.ensurePayloadKey(cmd.Context(), tok, func(detail map[string]any) error {
		a.auditDesk(cmd, payloadKeyAudit, a.cfg.Temporal.Codec.KeyLabel, detail)
		return nil
	})
}

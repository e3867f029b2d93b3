package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/internal/provision"
	"github.com/gridpay/gridpay/store"
)

// devCommand holds development fixtures. provision-key makes a customer's
// USB key directly, as the binding workflow will with its extra checks.
func (a *admin) devCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "dev", Short: "Development fixtures (not for production)", Args: noArgs, Hidden: true}
	var customer, tokenLabel, module, soPINFile, pinFile string
	p := &cobra.Command{
		Use:   "provision-key",
		Short: "Initialise a SoftHSM2 token as a customer's USB key: key, certificate, active binding",
		Long: `provision-key initialises a new token labelled --token-label on --module (unless a
token with that label exists), generates the key pair on it, has the token sign a
CSR, issues the certificate from the customer CA, writes it and the CA certificate
onto the token and records an active binding. The PINs come from files.

This is the development fixture of key binding; production uses the binding
workflow (adminctl bind), which also checks the customer with the platform and
requires the token's proof of possession.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if customer == "" || tokenLabel == "" || soPINFile == "" || pinFile == "" {
				return cli.WithCode(cli.ExitUsage, errors.New("--customer, --token-label, --so-pin-file and --pin-file are required"))
			}
			if module == "" {
				module = a.cfg.HSM.Module
			}
			soPIN, err := config.Secret{File: soPINFile}.Read("--so-pin-file")
			if err != nil {
				return cli.WithCode(cli.ExitConfig, err)
			}
			defer hsm.Zero(soPIN)
			pin, err := config.Secret{File: pinFile}.Read("--pin-file")
			if err != nil {
				return cli.WithCode(cli.ExitConfig, err)
			}
			defer hsm.Zero(pin)
			m, err := hsm.OpenModule(module)
			if err != nil {
				return err
			}
			defer m.Close()
			if _, err := m.FindToken(hsm.Selector{Label: tokenLabel}); errors.Is(err, hsm.ErrTokenAbsent) {
				if _, err := provision.InitToken(module, tokenLabel, soPIN, pin); err != nil {
					return err
				}
			} else if err != nil {
				return err
			}
			return a.withCA(cmd.Context(), func(ca *authority.Authority, db *store.DB) error {
				tok, err := m.OpenToken(hsm.Selector{Label: tokenLabel}, pin, hsm.Options{})
				if err != nil {
					return err
				}
				defer tok.Close()
				cert, b, err := provision.CustomerKey(cmd.Context(), ca, db, tok, customer, actor())
				if err != nil {
					return err
				}
				out := map[string]any{"customer_id": customer, "token_serial": b.TokenSerial, "token_label": tokenLabel,
					"cert_serial": b.CertSerial, "not_after": cert.NotAfter.UTC(), "binding_id": b.ID}
				return a.out.Print(out, func(w io.Writer) {
					fmt.Fprintf(w, "USB key %q (serial %s) bound to customer %s; certificate %s valid until %s\n",
						tokenLabel, b.TokenSerial, customer, b.CertSerial, cert.NotAfter.UTC().Format("2006-01-02"))
				})
			})
		},
	}
	f := p.Flags()
	f.StringVar(&customer, "customer", "", "customer ID")
	f.StringVar(&tokenLabel, "token-label", "", "label of the USB key token (created if missing)")
	f.StringVar(&module, "module", "", "PKCS#11 module of the USB key (default: hsm.module)")
	f.StringVar(&soPINFile, "so-pin-file", "", "file holding the token's SO PIN")
	f.StringVar(&pinFile, "pin-file", "", "file holding the token's user PIN")
	cmd.AddCommand(p)
	return cmd
}

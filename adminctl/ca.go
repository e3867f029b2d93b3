package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/codec"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/store"
)

func (a *admin) caCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "Certificate authority in the HSM: init, show, crl", Args: noArgs}
	cmd.AddCommand(&cobra.Command{
		Use:   "init",
		Short: "Create the root, customer and services CAs in the HSM (reuses what exists) and export their files",
		Long: `init is the CA set-up ceremony. For each of the root CA, the customer CA and the
services CA it generates the key pair inside the HSM (sensitive, never extractable)
unless a key with the configured label exists, creates and stores the CA certificate
unless present, records it and audits it. It then publishes a first CRL for each CA
and exports root.pem, issuing.pem, chain.pem, customer-ca.pem, services-ca.pem and
the CRLs into pki.dir. It also creates the AES-256 key that encrypts Temporal
payloads (temporal.codec.key_label) unless present. Running it again changes
nothing but the exported files.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			return a.withHSM(ctx, func(db *store.DB, tok *hsm.Token) error {
				p := cli.StartProgress("setting up the CA in the HSM")
				_, rep, err := authority.Init(ctx, authority.HSMKeys{Token: tok}, db, a.authorityOptions(), actor())
				if err != nil {
					p.Done("failed")
					return err
				}
				out := caInitReport{InitReport: rep}
				if out.PayloadKey, err = a.ensurePayloadKey(ctx, tok, func(detail map[string]any) error {
					_, err := store.AppendAudit(ctx, db, store.AuditRecord{Actor: actor(), Action: payloadKeyAudit,
						Subject: a.cfg.Temporal.Codec.KeyLabel, Outcome: store.OutcomeOK, Detail: detail})
					return err
				}); err != nil {
					p.Done("failed")
					return err
				}
				p.Done("done")
				return a.out.Print(out, func(w io.Writer) {
					for _, s := range rep.Steps {
						fmt.Fprintf(w, "%-9s key %-7s certificate %-7s %s (serial %s, until %s)\n", s.CA, s.Key, s.Cert, s.Subject, s.Serial, s.NotAfter)
					}
					printCRLs(w, rep.CRLs)
					fmt.Fprintf(w, "files in %s: root.pem issuing.pem chain.pem customer-ca.pem services-ca.pem root.crl customer.crl services.crl\n", rep.Files.Dir)
					out.PayloadKey.print(w)
				})
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "show",
		Short: "Show the CA certificates and their latest CRLs",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withCA(cmd.Context(), func(ca *authority.Authority, _ *store.DB) error {
				crls, err := ca.CRLs(cmd.Context())
				if err != nil {
					return err
				}
				type caInfo struct {
					Name      string    `json:"name"`
					Subject   string    `json:"subject"`
					Serial    string    `json:"serial"`
					KeyID     string    `json:"key_id"`
					NotBefore time.Time `json:"not_before"`
					NotAfter  time.Time `json:"not_after"`
				}
				var cas []caInfo
				for i, c := range ca.CAs() {
					cas = append(cas, caInfo{Name: []string{"root", "customer", "services"}[i], Subject: c.Cert.Subject.String(),
						Serial: authority.SerialHex(c.Cert), KeyID: authority.IssuerID(c.Cert), NotBefore: c.Cert.NotBefore, NotAfter: c.Cert.NotAfter})
				}
				return a.out.Print(map[string]any{"cas": cas, "crls": crls}, func(w io.Writer) {
					for _, c := range cas {
						fmt.Fprintf(w, "%-9s %s\n          serial %s, key id %s, valid %s to %s\n", c.Name, c.Subject, c.Serial, c.KeyID,
							c.NotBefore.Format(time.DateOnly), c.NotAfter.Format(time.DateOnly))
					}
					printCRLs(w, crls)
				})
			})
		},
	})
	cmd.AddCommand(a.issueCommand())
	cmd.AddCommand(&cobra.Command{
		Use:   "crl",
		Short: "Sign and publish a fresh CRL for each CA (run at least once per pki.crl_validity)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withCA(cmd.Context(), func(ca *authority.Authority, _ *store.DB) error {
				crls, err := ca.PublishCRLs(cmd.Context(), actor())
				if err != nil {
					return err
				}
				return a.out.Print(crls, func(w io.Writer) { printCRLs(w, crls) })
			})
		},
	})
	return cmd
}

func printCRLs(w io.Writer, crls []authority.CRLInfo) {
	for _, c := range crls {
		fmt.Fprintf(w, "%-9s CRL #%d, %d revoked, next update %s\n", c.CA, c.Number, c.Revoked, c.NextUpdate.Format(time.RFC3339))
	}
}

// caInitReport is what ca init prints: the CA's report and the payload key.
type caInitReport struct {
	authority.InitReport
	PayloadKey payloadKeyStep `json:"payload_key"`
}

// payloadKeyStep says what became of the key that encrypts Temporal
// payloads.
type payloadKeyStep struct {
	Label string `json:"label,omitempty"`
	KeyID string `json:"key_id,omitempty"`
	// Key is created, reused, or disabled (temporal.codec.disabled).
	Key string `json:"key"`
}

func (s payloadKeyStep) print(w io.Writer) {
	if s.Key == "disabled" {
		fmt.Fprintln(w, "payload   key disabled (temporal.codec.disabled: Temporal payloads are not encrypted)")
		return
	}
	fmt.Fprintf(w, "payload   key %-7s AES-256 %s (encrypts Temporal payloads)\n", s.Key, s.KeyID)
}

const payloadKeyAudit = "payload_key.create"

// ensurePayloadKey creates the Temporal payload key in the HSM unless it
// is there, and has its creation audited.
func (a *admin) ensurePayloadKey(ctx context.Context, tok *hsm.Token, audit func(detail map[string]any) error) (payloadKeyStep, error) {
	cfg := a.cfg.Temporal.Codec
	if cfg.Disabled {
		return payloadKeyStep{Key: "disabled"}, nil
	}
	id, created, err := codec.EnsureHSMKey(ctx, tok, cfg.KeyLabel)
	if err != nil {
		return payloadKeyStep{}, err
	}
	step := payloadKeyStep{Label: cfg.KeyLabel, KeyID: id, Key: "reused"}
	if created {
		step.Key = "created"
		if err := audit(map[string]any{"key_id": id, "algorithm": "AES-256-GCM"}); err != nil {
			return step, fmt.Errorf("payload key %s created but not audited: %w", id, err)
		}
	}
	return step, nil
}

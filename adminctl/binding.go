package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/app"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/internal/provision"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/workflows"
)

func init() {
	// Failures of the key-management workflows, as adminctl reports them.
	cli.RegisterClassifier(func(err error) (int, bool) {
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) {
			return 0, false
		}
		switch appErr.Type() {
		case activities.ErrTypeUnknownCustomer, activities.ErrTypeNotBound:
			return cli.ExitNotFound, true
		case activities.ErrTypeAlreadyBound:
			return cli.ExitConflict, true
		case activities.ErrTypeBadProof, activities.ErrTypeRevoked:
			return cli.ExitAuth, true
		}
		return 0, false
	})
}

// dialTemporal connects to Temporal with the payload codec, whose keys are
// in the HSM: the HSM stays open until the client is closed.
func (a *admin) dialTemporal(ctx context.Context) (client.Client, error) {
	if a.cfg.Temporal.Codec.Disabled {
		return app.DialTemporal(ctx, a.cfg.Temporal, nil, a.log)
	}
	tok, err := a.openHSM()
	if err != nil {
		return nil, err
	}
	pc, err := app.PayloadCodec(ctx, a.cfg.Temporal, tok, a.log)
	if err == nil {
		var tc client.Client
		if tc, err = app.DialTemporal(ctx, a.cfg.Temporal, pc, a.log); err == nil {
			return hsmClient{Client: tc, tok: tok}, nil
		}
	}
	tok.Close()
	return nil, err
}

// hsmClient is a Temporal client whose codec holds the HSM open. (Not for
// worker.New, which takes the SDK's own client type only; adminctl runs no
// worker.)
type hsmClient struct {
	client.Client
	tok *hsm.Token
}

func (c hsmClient) Close() {
	c.Client.Close()
	c.tok.Close()
}

// waitFor bounds a wait on a workflow; the hint says what to check when it
// runs out (the workflow itself carries on and can be resumed).
func (a *admin) waitFor(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.wait)
}

// waited turns a deadline into an answer a person can act on.
func waited(err error, what, workflowID string) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return cli.WithCode(cli.ExitUnavailable, fmt.Errorf("no answer from workflow %s while %s: is a worker running on the task queue? "+
			"The workflow goes on; run the command again to resume it", workflowID, what))
	}
	return err
}

var oidSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}

// bindResult is what bind prints.
type bindResult struct {
	WorkflowID  string    `json:"workflow_id"`
	CustomerID  string    `json:"customer_id"`
	Customer    string    `json:"customer_name"`
	TokenSerial string    `json:"token_serial"`
	CertSerial  string    `json:"cert_serial"`
	NotAfter    time.Time `json:"not_after"`
	Status      string    `json:"status"`
	WebUI       string    `json:"web_ui"`
}

func (a *admin) bindCommand() *cobra.Command {
	var key usbKeyFlags
	var customer string
	var proofTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "bind",
		Short: "Bind the USB key on the desk to a customer (binding workflow)",
		Long: `bind turns the USB key on the desk into a customer's key: it generates the key pair on
the key (never extractable), has the key sign a certificate request, and starts the
binding workflow, which checks the customer with the platform, refuses a key or a
customer already bound, issues the certificate with the CA key in the HSM and records
a pending binding. bind then writes the certificate and the CA chain onto the key and
proves possession by signing the workflow's challenge with the key; the workflow
activates the binding. Without the proof within --proof-timeout the workflow revokes
the certificate and drops the binding.

Running bind again for the same key and customer resumes the same workflow.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if customer == "" {
				return cli.WithCode(cli.ExitUsage, errors.New("--customer is required"))
			}
			ctx := cmd.Context()
			m, tok, err := a.openUSBKey(&key)
			if err != nil {
				return err
			}
			defer m.Close()
			defer tok.Close()
			tc, err := a.dialTemporal(ctx)
			if err != nil {
				return err
			}
			defer tc.Close()
			res, err := a.bind(ctx, tc, tok, customer, proofTimeout)
			if err != nil {
				return err
			}
			return a.out.Print(res, func(w io.Writer) {
				fmt.Fprintf(w, "USB key %s is bound to customer %s (%s)\ncertificate %s valid until %s\nworkflow %s: %s\n",
					res.TokenSerial, res.CustomerID, res.Customer, res.CertSerial, res.NotAfter.Format(time.DateOnly), res.WorkflowID, res.WebUI)
			})
		},
	}
	key.add(cmd, false, true)
	cmd.Flags().StringVar(&customer, "customer", "", "customer ID at the platform")
	cmd.Flags().DurationVar(&proofTimeout, "proof-timeout", workflows.DefaultProofTimeout, "how long the workflow waits for the key's proof")
	return cmd
}

// bind runs the binding of the logged-in USB key tok to customer.
func (a *admin) bind(ctx context.Context, tc client.Client, tok *hsm.Token, customer string, proofTimeout time.Duration) (bindResult, error) {
	serial := tok.Info().Serial
	signer, err := tok.Signer(ctx, hsm.KeyRef{Label: provision.KeyLabel})
	if errors.Is(err, hsm.ErrKeyNotFound) {
		signer, err = tok.GenerateECDSAKey(ctx, provision.KeyLabel, nil)
	}
	if err != nil {
		return bindResult{}, fmt.Errorf("USB key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{
		CommonName: customer, ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidSerialNumber, Value: serial}},
	}}, signer)
	if err != nil {
		return bindResult{}, fmt.Errorf("the USB key could not sign the certificate request: %w", err)
	}
	wfID := workflows.BindingID(serial)
	res := bindResult{WorkflowID: wfID, CustomerID: customer, TokenSerial: serial, WebUI: a.webUI(wfID)}

	p := cli.StartProgress("binding workflow: checking the customer and issuing the certificate")
	start := tc.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID:                       wfID,
		TaskQueue:                a.cfg.Temporal.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}, workflows.Bind, workflows.BindInput{
		TokenSerial: serial, CustomerID: customer, CSR: csr, RequestedBy: actor(), ProofTimeout: proofTimeout,
	})
	wctx, cancel := a.waitFor(ctx)
	defer cancel()
	h, err := tc.UpdateWithStartWorkflow(wctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateName: workflows.UpdateCertificate, Args: []any{workflows.CertificateRequest{CustomerID: customer}},
			WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	var cert workflows.Certificate
	if err == nil {
		err = h.Get(wctx, &cert)
	}
	if err != nil {
		p.Done("failed")
		return res, waited(err, "issuing the certificate", wfID)
	}
	p.Done("certificate " + cert.CertSerial)

	leaf, err := x509.ParseCertificate(cert.CertDER)
	if err != nil {
		return res, fmt.Errorf("the workflow returned a certificate that does not parse: %w", err)
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(signer.Public()) {
		return res, fmt.Errorf("the certificate of binding %s is for another key than the one on this USB key; unbind it first", wfID)
	}
	if err := writeCertificates(ctx, tok, signer.ID(), leaf, cert.Chain); err != nil {
		return res, err
	}

	p = cli.StartProgress("proving possession of the key")
	digest := protocol.BindingProofDigest(wfID, cert.CertSerial, cert.Challenge)
	sig, err := signer.SignContext(ctx, digest, crypto.SHA256)
	if err != nil {
		p.Done("failed")
		return res, fmt.Errorf("the USB key could not sign the challenge: %w", err)
	}
	uh, err := tc.UpdateWorkflow(wctx, client.UpdateWorkflowOptions{
		WorkflowID: wfID, UpdateName: workflows.UpdateProve, Args: []any{workflows.ProveInput{Signature: sig}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var st workflows.BindState
	if err == nil {
		err = uh.Get(wctx, &st)
	}
	if err != nil {
		p.Done("refused")
		return res, waited(err, "checking the proof", wfID)
	}
	p.Done("binding active")
	res.Customer, res.CertSerial, res.NotAfter, res.Status = st.Customer, cert.CertSerial, leaf.NotAfter.UTC(), "active"
	return res, nil
}

// writeCertificates puts the key's certificate next to its key and the CA
// chain (customer CA, root) beside it, replacing older ones.
func writeCertificates(ctx context.Context, tok *hsm.Token, keyID []byte, leaf *x509.Certificate, chain [][]byte) error {
	if err := tok.ReplaceCertificate(ctx, provision.KeyLabel, keyID, leaf); err != nil {
		return fmt.Errorf("writing the certificate onto the USB key: %w", err)
	}
	labels := []string{provision.CALabel, "gridpay-root-ca"}
	for i, der := range chain {
		if i >= len(labels) {
			break
		}
		ca, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("CA certificate %d of the chain does not parse: %w", i, err)
		}
		id := sha256.Sum256(ca.RawSubjectPublicKeyInfo)
		if err := tok.ReplaceCertificate(ctx, labels[i], id[:8], ca); err != nil {
			return fmt.Errorf("writing CA certificate %q onto the USB key: %w", labels[i], err)
		}
	}
	return nil
}

func (a *admin) webUI(workflowID string) string {
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s", a.cfg.Temporal.UIAddress, a.cfg.Temporal.Namespace, workflowID)
}

func (a *admin) unbindCommand() *cobra.Command {
	var serial, reasonName string
	cmd := &cobra.Command{
		Use:   "unbind",
		Short: "Unbind a USB key (lost, returned, replaced): revoke, republish the CRL, stop its workflows",
		Long: `unbind runs the unbinding workflow for the key with --token-serial (the key itself need
not be present): its certificate is revoked and the binding deactivated together, the
CRL republished, a pending binding workflow stopped, and the key's other workflows in
flight told to stop. The gateway refuses the key from its next request on.

Reasons: lost (keyCompromise), returned (cessationOfOperation), replaced (superseded).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if serial == "" {
				return cli.WithCode(cli.ExitUsage, errors.New("--token-serial is required"))
			}
			reason, err := pki.ParseReason(reasonName)
			if err != nil {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("--reason: %w", err))
			}
			tc, err := a.dialTemporal(cmd.Context())
			if err != nil {
				return err
			}
			defer tc.Close()
			res, err := a.unbind(cmd.Context(), tc, serial, reason)
			if err != nil {
				return err
			}
			return a.out.Print(res, func(w io.Writer) {
				fmt.Fprintf(w, "USB key %s of customer %s unbound (%s): certificate %s revoked at %s, CRL #%d; %d workflow(s) told to stop\n",
					res.TokenSerial, res.CustomerID, reason, res.CertSerial, res.RevokedAt.Format(time.RFC3339), res.CRLNumber, res.Stopped)
			})
		},
	}
	cmd.Flags().StringVar(&serial, "token-serial", "", "serial number of the USB key")
	cmd.Flags().StringVar(&reasonName, "reason", "", "lost, returned or replaced")
	return cmd
}

func (a *admin) unbind(ctx context.Context, tc client.Client, serial string, reason pki.Reason) (workflows.UnbindResult, error) {
	p := cli.StartProgress("unbinding workflow: revoking and deactivating")
	ctx, cancel := a.waitFor(ctx)
	defer cancel()
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       workflows.UnbindingID(serial),
		TaskQueue:                a.cfg.Temporal.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}, workflows.Unbind, workflows.UnbindInput{TokenSerial: serial, Reason: reason, RequestedBy: actor()})
	var res workflows.UnbindResult
	if err == nil {
		err = run.Get(ctx, &res)
	}
	if err != nil {
		p.Done("failed")
		return res, waited(err, "unbinding", workflows.UnbindingID(serial))
	}
	p.Done("done")
	return res, nil
}

func (a *admin) reissueCommand() *cobra.Command {
	var key usbKeyFlags
	var oldSerial, customer, reasonName string
	var proofTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "reissue",
		Short: "Replace a customer's key: unbind the old one (lost by default) and bind the new one on the desk",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if oldSerial == "" || customer == "" {
				return cli.WithCode(cli.ExitUsage, errors.New("--old-token-serial and --customer are required"))
			}
			reason, err := pki.ParseReason(reasonName)
			if err != nil {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("--reason: %w", err))
			}
			ctx := cmd.Context()
			m, tok, err := a.openUSBKey(&key)
			if err != nil {
				return err
			}
			defer m.Close()
			defer tok.Close()
			if tok.Info().Serial == oldSerial {
				return cli.WithCode(cli.ExitUsage, errors.New("the key on the desk is the old key; insert the new one"))
			}
			tc, err := a.dialTemporal(ctx)
			if err != nil {
				return err
			}
			defer tc.Close()
			old, err := a.unbind(ctx, tc, oldSerial, reason)
			if err != nil {
				return err
			}
			if old.CustomerID != customer {
				return fmt.Errorf("the old key %s belonged to customer %s, not %s: it is unbound, the new key was not bound", oldSerial, old.CustomerID, customer)
			}
			res, err := a.bind(ctx, tc, tok, customer, proofTimeout)
			if err != nil {
				return err
			}
			return a.out.Print(map[string]any{"unbound": old, "bound": res}, func(w io.Writer) {
				fmt.Fprintf(w, "old key %s unbound (certificate %s revoked); new key %s bound to %s (certificate %s)\n",
					old.TokenSerial, old.CertSerial, res.TokenSerial, res.CustomerID, res.CertSerial)
			})
		},
	}
	key.add(cmd, false, true)
	cmd.Flags().StringVar(&oldSerial, "old-token-serial", "", "serial number of the key being replaced")
	cmd.Flags().StringVar(&customer, "customer", "", "customer ID")
	cmd.Flags().StringVar(&reasonName, "reason", "lost", "why the old key goes: lost, returned or replaced")
	cmd.Flags().DurationVar(&proofTimeout, "proof-timeout", workflows.DefaultProofTimeout, "how long the workflow waits for the key's proof")
	return cmd
}

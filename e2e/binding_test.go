//go:build integration

package e2e

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/internal/provision"
	"github.com/gridpay/gridpay/internal/testenv"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/workflows"
)

// deskKey initialises a blank USB key with adminctl token init and returns
// its serial and a client for it (PIN in a file).
func (s *stack) deskKey(label string) (serial string, k *usbKey) {
	s.t.Helper()
	k = &usbKey{s: s, label: label, pinFile: s.secret(label+".pin", "pin-"+label), config: s.dir + "/" + label + ".client.yaml"}
	so := s.secret(label+".so-pin", "so-pin-"+label)
	r := s.admin("token", "init", "--token-label", label, "--so-pin-file", so, "--pin-file", k.pinFile, "--json")
	var out struct{ Serial string }
	if err := json.Unmarshal([]byte(r.out), &out); err != nil || out.Serial == "" {
		s.t.Fatalf("token init: %v\n%s", err, r)
	}
	k.writeConfig(k.pinFile)
	return out.Serial, k
}

// An administrator binds a blank key with one command; the customer logs
// in; the key is reported lost and unbound; the gateway refuses it at the
// next login. The token's objects are checked with OpenSC's pkcs11-tool.
func TestBindLoginUnbind(t *testing.T) {
	s := newStack(t)
	s.startSimulator()
	s.startWorker()
	s.startGateway()
	customer := s.customer("--open")
	serial, k := s.deskKey("desk-1")
	k.customerID = customer

	// An unknown customer is refused by the workflow, clearly.
	r := s.exec(nil, "adminctl", "--config", s.config, "bind", "--customer", "C99999999", "--token-label", "desk-1", "--pin-file", k.pinFile)
	if r.code != cli.ExitNotFound || !strings.Contains(r.err, "does not know customer C99999999") {
		t.Fatalf("bind to an unknown customer: %s", r)
	}

	out := s.admin("bind", "--customer", customer, "--token-label", "desk-1", "--pin-file", k.pinFile, "--json")
	var res map[string]any
	if err := json.Unmarshal([]byte(out.out), &res); err != nil || res["status"] != "active" || res["workflow_id"] != "binding/"+serial {
		t.Fatalf("bind: %v\n%s", err, out)
	}
	var me struct {
		Customer struct{ ID string } `json:"customer"`
	}
	k.clientJSON(&me, "login")
	if me.Customer.ID != customer {
		t.Fatalf("logged in as %q, want %q", me.Customer.ID, customer)
	}

	// The key as a real PKCS#11 tool sees it.
	lst, err := exec.Command("pkcs11-tool", "--module", s.module, "--token-label", "desk-1", "--login", "--pin", "pin-desk-1", "--list-objects").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool: %v\n%s", err, lst)
	}
	checkTokenObjects(t, string(lst))

	// A second key for the same customer is refused (already bound).
	_, k2 := s.deskKey("desk-2")
	r = s.exec(nil, "adminctl", "--config", s.config, "bind", "--customer", customer, "--token-label", "desk-2", "--pin-file", k2.pinFile)
	if r.code != cli.ExitConflict || !strings.Contains(r.err, "already bound") {
		t.Fatalf("binding a second key to the customer: %s", r)
	}

	// Lost: unbind; the next login is refused with the reason.
	s.admin("unbind", "--token-serial", serial, "--reason", "lost")
	time.Sleep(1500 * time.Millisecond) // the gateway reloads CRLs every second (crl_refresh)
	r = k.client("login")
	if r.code != cli.ExitAuth || !(strings.Contains(r.err, "revoked") || strings.Contains(r.err, "not bound")) {
		t.Fatalf("login with an unbound key: %s", r)
	}
	show := s.admin("bindings", "show", serial, "--json")
	var bs []store.Binding
	if err := json.Unmarshal([]byte(show.out), &bs); err != nil || len(bs) != 1 || bs[0].Status != store.BindingInactive {
		t.Fatalf("bindings show: %v\n%s", err, show)
	}
	// Unbinding again: nothing left to unbind.
	if r := s.exec(nil, "adminctl", "--config", s.config, "unbind", "--token-serial", serial, "--reason", "lost"); r.code != cli.ExitNotFound {
		t.Fatalf("second unbind: %s", r)
	}
	s.admin("audit", "verify")
	s.recordHistory(workflows.BindingID(serial), "bind")
	s.recordHistory(workflows.UnbindingID(serial), "unbind")
}

// checkTokenObjects: private key sensitive and never extractable, and a
// certificate with the key's ID.
func checkTokenObjects(t *testing.T, list string) {
	t.Helper()
	var keyID, certID, keyAccess string
	for _, obj := range tokenObjects(list) {
		if obj["label"] != provision.KeyLabel {
			continue
		}
		switch {
		case strings.HasPrefix(obj["header"], "Private Key Object"):
			keyID, keyAccess = obj["ID"], obj["Access"]
		case strings.HasPrefix(obj["header"], "Certificate Object"):
			certID = obj["ID"]
		}
	}
	if !strings.Contains(keyAccess, "sensitive") || !strings.Contains(keyAccess, "never extractable") {
		t.Fatalf("private key access %q\n%s", keyAccess, list)
	}
	if keyID == "" || certID != keyID {
		t.Fatalf("certificate ID %q does not match key ID %q\n%s", certID, keyID, list)
	}
}

// tokenObjects parses pkcs11-tool --list-objects: an unindented header line
// per object, then indented "name: value" lines.
func tokenObjects(list string) []map[string]string {
	var objs []map[string]string
	for _, line := range strings.Split(list, "\n") {
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, " ") {
			objs = append(objs, map[string]string{"header": line})
			continue
		}
		if len(objs) == 0 {
			continue
		}
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			objs[len(objs)-1][k] = strings.TrimSpace(v)
		}
	}
	return objs
}

func (s *stack) recordHistory(workflowID, name string) {
	s.t.Helper()
	if err := testenv.RecordHistory(context.Background(), s.temporal.Client(), workflowID, "", name); err != nil {
		s.t.Fatal(err)
	}
}

// The worker is killed between the certificate's issuance and the binding's
// activation. After a restart the workflow either completes (the proof
// arrives) or compensates (no proof in time); never an active binding with
// a revoked certificate, nor an unrevoked certificate without a live binding.
func TestWorkerKilledBetweenIssuanceAndActivation(t *testing.T) {
	s := newStack(t)
	s.startSimulator()
	s.startWorker()
	ctx := context.Background()
	tc := s.temporal.Client()

	for _, prove := range []bool{true, false} {
		t.Run(fmt.Sprintf("proof=%v", prove), func(t *testing.T) {
			customer := s.customer("--open")
			if !prove {
				customer = s.customer("--settled")
			}
			label := fmt.Sprintf("kill-%v", prove)
			serial, k := s.deskKey(label)
			tok, signer := s.openKey(serial, k)
			defer tok.Close()
			csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: customer}}, signer)
			if err != nil {
				t.Fatal(err)
			}
			wfID := workflows.BindingID(serial)
			timeout := 10 * time.Minute
			if !prove {
				timeout = 8 * time.Second
			}
			start := tc.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
				ID: wfID, TaskQueue: "e2e", WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
			}, workflows.Bind, workflows.BindInput{TokenSerial: serial, CustomerID: customer, CSR: csr, RequestedBy: "e2e", ProofTimeout: timeout})
			h, err := tc.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{StartWorkflowOperation: start,
				UpdateOptions: client.UpdateWorkflowOptions{UpdateName: workflows.UpdateCertificate,
					Args: []any{workflows.CertificateRequest{CustomerID: customer}}, WaitForStage: client.WorkflowUpdateStageCompleted}})
			if err != nil {
				t.Fatal(err)
			}
			var cert workflows.Certificate
			if err := h.Get(ctx, &cert); err != nil {
				t.Fatal(err)
			}

			// The certificate exists, the binding is pending: crash.
			s.kill("worker")
			s.checkBindingInvariants()
			s.startWorker()

			run := tc.GetWorkflow(ctx, wfID, "")
			if prove {
				sig, err := signer.Sign(rand.Reader, protocol.BindingProofDigest(wfID, cert.CertSerial, cert.Challenge), crypto.SHA256)
				if err != nil {
					t.Fatal(err)
				}
				uh, err := tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: wfID, UpdateName: workflows.UpdateProve,
					Args: []any{workflows.ProveInput{Signature: sig}}, WaitForStage: client.WorkflowUpdateStageCompleted})
				if err != nil {
					t.Fatal(err)
				}
				if err := uh.Get(ctx, nil); err != nil {
					t.Fatalf("proof after the restart: %v", err)
				}
				if err := run.Get(ctx, nil); err != nil {
					t.Fatalf("binding did not complete: %v", err)
				}
			} else if err := run.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "not confirmed") {
				t.Fatalf("binding without a proof should compensate, got %v", err)
			}
			st := s.bindingStatus(serial)
			if prove && st != "active" || !prove && st != "inactive" {
				t.Fatalf("binding of %s is %q", serial, st)
			}
			s.checkBindingInvariants()
		})
	}
}

func (s *stack) openKey(serial string, k *usbKey) (*hsm.Token, crypto.Signer) {
	s.t.Helper()
	tok, err := hsm.OpenToken(s.module, hsm.Selector{Serial: serial}, []byte("pin-"+k.label), hsm.Options{})
	if err != nil {
		s.t.Fatal(err)
	}
	signer, err := tok.GenerateECDSAKey(context.Background(), provision.KeyLabel, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok, signer
}

func (s *stack) db() *store.DB {
	s.t.Helper()
	var dsn string
	for _, line := range strings.Split(readFile(s.t, s.config), "\n") {
		if rest, ok := strings.CutPrefix(line, "database: {dsn: "); ok {
			dsn = strings.Trim(strings.TrimSuffix(rest, "}"), `"`)
		}
	}
	db, err := store.Open(context.Background(), dsn, store.Options{})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(db.Close)
	return db
}

func (s *stack) bindingStatus(serial string) string {
	bs, err := store.BindingsForToken(context.Background(), s.db(), serial)
	if err != nil || len(bs) == 0 {
		s.t.Fatalf("bindings of %s: %v", serial, err)
	}
	return string(bs[0].Status)
}

// checkBindingInvariants: no active binding has a revoked certificate, and
// every customer certificate is either revoked or has a live binding.
func (s *stack) checkBindingInvariants() {
	s.t.Helper()
	var bad int
	err := s.db().QueryRow(context.Background(), `
		SELECT
		  (SELECT count(*) FROM bindings b JOIN revocations r ON r.serial = b.cert_serial WHERE b.status = 'active')
		+ (SELECT count(*) FROM certificates c
		     WHERE c.kind = 'customer'
		       AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.serial = c.serial)
		       AND NOT EXISTS (SELECT 1 FROM bindings b WHERE b.cert_serial = c.serial AND b.status IN ('pending', 'active')))`).Scan(&bad)
	if err != nil {
		s.t.Fatal(err)
	}
	if bad != 0 {
		s.t.Fatalf("%d binding/certificate invariant violations", bad)
	}
}

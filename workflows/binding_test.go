package workflows

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/store"
)

// updater records an update's outcome in the test environment.
type updater struct {
	result   any
	err      error
	rejected error
	done     bool
}

func (u *updater) Accept()                   {}
func (u *updater) Reject(err error)          { u.rejected, u.done = err, true }
func (u *updater) Complete(r any, err error) { u.result, u.err, u.done = r, err, true }

type bindEnv struct {
	*testsuite.TestWorkflowEnvironment
	ends []activities.EndRequest
}

func newBindEnv(t *testing.T) *bindEnv {
	var s testsuite.WorkflowTestSuite
	env := &bindEnv{TestWorkflowEnvironment: s.NewTestWorkflowEnvironment()}
	env.RegisterActivity(&activities.Binding{})
	env.RegisterActivity(&activities.Tokens{})
	env.OnActivity(binding.CheckCustomer, mock.Anything, "C1").Return(activities.CustomerInfo{ID: "C1", Name: "Beijing Steel"}, nil)
	env.OnActivity(binding.IssueCertificate, mock.Anything, mock.Anything).Return(
		activities.Issued{CertDER: []byte("cert"), CertSerial: "ab01", Chain: [][]byte{[]byte("ca")}, BindingID: 7}, nil)
	env.OnActivity(binding.EndBinding, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.EndRequest) (authority.EndResult, error) {
			env.ends = append(env.ends, req)
			return authority.EndResult{}, nil
		})
	return env
}

var bindIn = BindInput{TokenSerial: "T1", CustomerID: "C1", CSR: []byte("csr"), RequestedBy: "admin", ProofTimeout: 10 * time.Minute}

func (e *bindEnv) update(at time.Duration, name string, u *updater, args ...any) {
	e.RegisterDelayedCallback(func() { e.UpdateWorkflow(name, name+at.String(), u, args...) }, at)
}

func TestBindHappyPath(t *testing.T) {
	env := newBindEnv(t)
	env.OnActivity(binding.ConfirmBinding, mock.Anything, mock.MatchedBy(func(p activities.Proof) bool {
		return p.BindingID == 7 && string(p.Signature) == "sig" && len(p.Challenge) == 32
	})).Return(store.Binding{ID: 7, Status: store.BindingActive}, nil)
	var cert, proof updater
	env.update(time.Second, UpdateCertificate, &cert, CertificateRequest{CustomerID: "C1"})
	env.update(time.Minute, UpdateProve, &proof, ProveInput{Signature: []byte("sig")})
	env.ExecuteWorkflow(Bind, bindIn)

	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var st BindState
	_ = env.GetWorkflowResult(&st)
	if st.Status != "active" || st.CertSerial != "ab01" || st.Customer != "Beijing Steel" {
		t.Fatalf("state %+v", st)
	}
	c, ok := cert.result.(Certificate)
	if !ok || cert.err != nil || c.BindingID != 7 || len(c.Challenge) != 32 || string(c.Chain[0]) != "ca" {
		t.Fatalf("certificate update: %+v %v", cert.result, cert.err)
	}
	if proof.err != nil || proof.rejected != nil {
		t.Fatalf("proof update: %v %v", proof.err, proof.rejected)
	}
	if len(env.ends) != 0 {
		t.Fatalf("a confirmed binding was compensated: %+v", env.ends)
	}
}

func TestBindPlatformRejectsCustomer(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Binding{})
	env.OnActivity(binding.CheckCustomer, mock.Anything, "C404").Return(activities.CustomerInfo{},
		temporal.NewNonRetryableApplicationError("the platform does not know customer C404", activities.ErrTypeUnknownCustomer, nil))
	var cert updater
	env.RegisterDelayedCallback(func() { env.UpdateWorkflow(UpdateCertificate, "u1", &cert, CertificateRequest{CustomerID: "C404"}) }, 0)
	in := bindIn
	in.CustomerID = "C404"
	env.ExecuteWorkflow(Bind, in)

	var app *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &app) || app.Type() != activities.ErrTypeUnknownCustomer {
		t.Fatalf("want UnknownCustomer, got %v", err)
	}
	if cert.err == nil && cert.rejected == nil {
		t.Fatal("the certificate update succeeded for an unknown customer")
	}
}

func TestBindRefusesDoubleBinding(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Binding{})
	env.OnActivity(binding.CheckCustomer, mock.Anything, "C1").Return(activities.CustomerInfo{ID: "C1"}, nil)
	env.OnActivity(binding.IssueCertificate, mock.Anything, mock.Anything).Return(activities.Issued{},
		temporal.NewNonRetryableApplicationError("already bound: token T1 has a pending or active binding", activities.ErrTypeAlreadyBound, nil))
	env.ExecuteWorkflow(Bind, bindIn)
	var app *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &app) || app.Type() != activities.ErrTypeAlreadyBound {
		t.Fatalf("want AlreadyBound, got %v", err)
	}
}

func TestBindProofTimeoutRevokes(t *testing.T) {
	env := newBindEnv(t)
	var cert updater
	env.update(time.Second, UpdateCertificate, &cert, CertificateRequest{CustomerID: "C1"})
	env.ExecuteWorkflow(Bind, bindIn)

	var app *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &app) || app.Type() != "NotConfirmed" {
		t.Fatalf("want NotConfirmed, got %v", err)
	}
	if len(env.ends) != 1 || env.ends[0].BindingID != 7 || env.ends[0].Reason != pki.ReasonCessationOfOperation {
		t.Fatalf("compensation: %+v", env.ends)
	}
}

// A bad proof is refused, the binding keeps waiting, and a good one before
// the deadline activates it.
func TestBindBadProofThenGoodProof(t *testing.T) {
	env := newBindEnv(t)
	env.OnActivity(binding.ConfirmBinding, mock.Anything, mock.MatchedBy(func(p activities.Proof) bool { return string(p.Signature) == "bad" })).
		Return(store.Binding{}, temporal.NewNonRetryableApplicationError("does not verify", activities.ErrTypeBadProof, nil))
	env.OnActivity(binding.ConfirmBinding, mock.Anything, mock.MatchedBy(func(p activities.Proof) bool { return string(p.Signature) == "good" })).
		Return(store.Binding{ID: 7, Status: store.BindingActive}, nil)
	var cert, bad, empty, good updater
	env.update(time.Second, UpdateCertificate, &cert, CertificateRequest{CustomerID: "C1"})
	env.update(time.Minute, UpdateProve, &bad, ProveInput{Signature: []byte("bad")})
	env.update(2*time.Minute, UpdateProve, &empty, ProveInput{})
	env.update(3*time.Minute, UpdateProve, &good, ProveInput{Signature: []byte("good")})
	env.ExecuteWorkflow(Bind, bindIn)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if bad.err == nil {
		t.Fatal("a bad proof was accepted")
	}
	if empty.rejected == nil {
		t.Fatal("an empty signature passed the validator")
	}
	if good.err != nil || len(env.ends) != 0 {
		t.Fatalf("good proof: %v, ends %+v", good.err, env.ends)
	}
}

func TestUnbindWhileBindingPending(t *testing.T) {
	env := newBindEnv(t)
	var cert updater
	env.update(time.Second, UpdateCertificate, &cert, CertificateRequest{CustomerID: "C1"})
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalCancel, "unbound (keyCompromise) by admin") }, 2*time.Minute)
	env.ExecuteWorkflow(Bind, bindIn)
	err := env.GetWorkflowError()
	if err == nil || !strings.Contains(err.Error(), "cancelled by an unbinding") {
		t.Fatalf("want the binding to end as cancelled, got %v", err)
	}
	if len(env.ends) != 1 || env.ends[0].BindingID != 7 {
		t.Fatalf("compensation: %+v", env.ends)
	}
}

func TestUnbind(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Binding{})
	env.RegisterActivity(&activities.Tokens{})
	env.OnActivity(binding.CurrentBinding, mock.Anything, "T1").Return(store.Binding{ID: 7, TokenSerial: "T1", CustomerID: "C1", CertSerial: "ab01", Status: store.BindingActive}, nil)
	var end activities.EndRequest
	env.OnActivity(binding.EndBinding, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.EndRequest) (authority.EndResult, error) {
		end = req
		return authority.EndResult{CRL: authority.CRLInfo{Number: 9}}, nil
	})
	env.OnActivity(tokens.StopTokenWorkflows, mock.Anything, mock.Anything).Return(2, nil)
	env.ExecuteWorkflow(Unbind, UnbindInput{TokenSerial: "T1", Reason: pki.ReasonKeyCompromise, RequestedBy: "admin"})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res UnbindResult
	_ = env.GetWorkflowResult(&res)
	if end.BindingID != 7 || end.Reason != pki.ReasonKeyCompromise || res.CRLNumber != 9 || res.Stopped != 2 || res.CustomerID != "C1" {
		t.Fatalf("end %+v, result %+v", end, res)
	}
}

func TestUnbindUnknownToken(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterActivity(&activities.Binding{})
	env.RegisterActivity(&activities.Tokens{})
	env.OnActivity(binding.CurrentBinding, mock.Anything, "T9").Return(store.Binding{},
		temporal.NewNonRetryableApplicationError("token T9 has no pending or active binding", activities.ErrTypeNotBound, nil))
	env.ExecuteWorkflow(Unbind, UnbindInput{TokenSerial: "T9", Reason: pki.ReasonKeyCompromise})
	var app *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &app) || app.Type() != activities.ErrTypeNotBound {
		t.Fatalf("want NotBound, got %v", err)
	}
}

// A second bind of the token for another customer is refused by the
// validator instead of receiving the first customer's certificate.
func TestBindCertificateForAnotherCustomerRejected(t *testing.T) {
	env := newBindEnv(t)
	env.OnActivity(binding.ConfirmBinding, mock.Anything, mock.Anything).Return(store.Binding{ID: 7, Status: store.BindingActive}, nil)
	var mine, theirs, proof updater
	env.update(time.Second, UpdateCertificate, &mine, CertificateRequest{CustomerID: "C1"})
	env.update(2*time.Second, UpdateCertificate, &theirs, CertificateRequest{CustomerID: "C2"})
	env.update(time.Minute, UpdateProve, &proof, ProveInput{Signature: []byte("sig")})
	env.ExecuteWorkflow(Bind, bindIn)
	if mine.err != nil || theirs.rejected == nil || !strings.Contains(theirs.rejected.Error(), "not C2") {
		t.Fatalf("mine %v, theirs rejected %v", mine.err, theirs.rejected)
	}
}

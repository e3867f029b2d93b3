package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/protocol"
)

var binding *activities.Binding

// Names of the binding workflow's messages.
const (
	// UpdateCertificate waits for the certificate (used with update-with-start).
	UpdateCertificate = "certificate"
	// UpdateProve delivers the token's signature over the challenge.
	UpdateProve = "prove"
	// SignalCancel stops a pending binding: the unbinding saga sends it to
	// every workflow of the token.
	SignalCancel = activities.SignalTokenUnbound
	// QueryState reads the binding's state.
	QueryState = "state"
)

// DefaultProofTimeout is how long the binding waits for the token's proof.
const DefaultProofTimeout = 10 * time.Minute

// BindingID is the workflow ID of the binding of a token.
func BindingID(tokenSerial string) string { return "binding/" + tokenSerial }

// BindInput starts a binding.
type BindInput struct {
	TokenSerial  string        `json:"token_serial"`
	CustomerID   string        `json:"customer_id"`
	CSR          []byte        `json:"csr"`
	RequestedBy  string        `json:"requested_by"`
	ProofTimeout time.Duration `json:"proof_timeout"`
}

// Certificate is the answer of UpdateCertificate: what adminctl writes onto
// the token, and the challenge it must sign.
type Certificate struct {
	CertDER    []byte    `json:"cert_der"`
	CertSerial string    `json:"cert_serial"`
	Chain      [][]byte  `json:"chain"`
	Challenge  []byte    `json:"challenge"`
	BindingID  int64     `json:"binding_id"`
	Deadline   time.Time `json:"deadline"`
}

// CertificateRequest is the argument of UpdateCertificate: the caller says
// which customer it binds, so that a second bind of the same token for
// another customer is refused instead of handed the first one's certificate.
type CertificateRequest struct {
	CustomerID string `json:"customer_id"`
}

// ProveInput is the token's signature over protocol.BindingProofDigest.
type ProveInput struct {
	Signature []byte `json:"signature"`
}

// BindState is the binding's state, for QueryState and the result.
type BindState struct {
	Status     string `json:"status"` // checking, issuing, awaiting-proof, active, refused, compensated
	CustomerID string `json:"customer_id"`
	Customer   string `json:"customer_name,omitempty"`
	CertSerial string `json:"cert_serial,omitempty"`
	BindingID  int64  `json:"binding_id,omitempty"`
	Reason     string `json:"reason,omitempty"` // why it was refused or compensated
}

// Bind is the binding saga: check the customer with the platform, issue the
// certificate with the CA key in the HSM and record a pending binding,
// hand the certificate to the administrator's desk (UpdateCertificate),
// wait for the token's signature over a fresh challenge (UpdateProve) and
// activate the binding. No valid proof within the deadline, or a cancel
// signal, revokes the certificate and drops the binding (compensation).
func Bind(ctx workflow.Context, in BindInput) (BindState, error) {
	b := &bindImpl{in: in, state: BindState{Status: "checking", CustomerID: in.CustomerID}}
	if err := b.setup(ctx); err != nil {
		return b.state, err
	}
	return b.run(ctx)
}

type bindImpl struct {
	in    BindInput
	state BindState

	issued    *Certificate
	failed    error
	proving   bool
	confirmed bool
	cancelled bool
}

func (b *bindImpl) setup(ctx workflow.Context) error {
	if b.in.ProofTimeout <= 0 {
		b.in.ProofTimeout = DefaultProofTimeout
	}
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (BindState, error) { return b.state, nil }); err != nil {
		return err
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateCertificate, b.certificate, workflow.UpdateHandlerOptions{
		Validator: func(ctx workflow.Context, req CertificateRequest) error {
			if req.CustomerID != b.in.CustomerID {
				return fmt.Errorf("token %s is being bound to customer %s, not %s", b.in.TokenSerial, b.in.CustomerID, req.CustomerID)
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, UpdateProve, b.prove, workflow.UpdateHandlerOptions{
		Validator: func(ctx workflow.Context, in ProveInput) error {
			switch {
			case b.state.Status != "awaiting-proof":
				return fmt.Errorf("binding is %s, not awaiting a proof", b.state.Status)
			case len(in.Signature) == 0 || len(in.Signature) > 1024:
				return errors.New("the signature must be 1 to 1024 bytes")
			case b.proving:
				return errors.New("a proof is being checked")
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	workflow.Go(ctx, func(ctx workflow.Context) {
		workflow.GetSignalChannel(ctx, SignalCancel).Receive(ctx, nil)
		b.cancelled = true
	})
	return workflow.UpsertTypedSearchAttributes(ctx,
		AttrKind.ValueSet("binding"), AttrCustomerID.ValueSet(b.in.CustomerID), AttrToken.ValueSet(b.in.TokenSerial),
		AttrStatus.ValueSet(b.state.Status))
}

// certificate answers once the certificate is issued (or the saga failed).
func (b *bindImpl) certificate(ctx workflow.Context, _ CertificateRequest) (Certificate, error) {
	if err := workflow.Await(ctx, func() bool { return b.issued != nil || b.failed != nil }); err != nil {
		return Certificate{}, err
	}
	if b.failed != nil {
		return Certificate{}, b.failed
	}
	return *b.issued, nil
}

// prove checks the signature and activates the binding.
func (b *bindImpl) prove(ctx workflow.Context, in ProveInput) (BindState, error) {
	b.proving = true
	defer func() { b.proving = false }()
	ctx = workflow.WithActivityOptions(ctx, activityOptions(time.Minute, 5*time.Minute))
	err := workflow.ExecuteActivity(ctx, binding.ConfirmBinding, activities.Proof{
		BindingID: b.issued.BindingID, CertDER: b.issued.CertDER, Challenge: b.issued.Challenge, Signature: in.Signature,
	}).Get(ctx, nil)
	if err != nil {
		return b.state, err
	}
	b.confirmed = true
	return b.state, nil
}

func (b *bindImpl) run(ctx workflow.Context) (BindState, error) {
	actx := workflow.WithActivityOptions(ctx, activityOptions(time.Minute, time.Hour))

	var cust activities.CustomerInfo
	if err := workflow.ExecuteActivity(actx, binding.CheckCustomer, b.in.CustomerID).Get(ctx, &cust); err != nil {
		return b.refuse(ctx, err)
	}
	b.state.Customer = cust.Name

	b.status(ctx, "issuing")
	var iss activities.Issued
	err := workflow.ExecuteActivity(actx, binding.IssueCertificate, activities.IssueRequest{
		RequestKey: workflow.GetInfo(ctx).WorkflowExecution.ID + "/" + workflow.GetInfo(ctx).WorkflowExecution.RunID,
		CSR:        b.in.CSR, CustomerID: b.in.CustomerID, TokenSerial: b.in.TokenSerial,
	}).Get(ctx, &iss)
	if err != nil {
		return b.refuse(ctx, err)
	}
	b.state.CertSerial, b.state.BindingID = iss.CertSerial, iss.BindingID

	var challenge []byte
	if err := workflow.SideEffect(ctx, func(workflow.Context) any { return newChallenge() }).Get(&challenge); err != nil {
		return b.state, err
	}
	b.issued = &Certificate{CertDER: iss.CertDER, CertSerial: iss.CertSerial, Chain: iss.Chain, Challenge: challenge,
		BindingID: iss.BindingID, Deadline: workflow.Now(ctx).Add(b.in.ProofTimeout)}
	b.status(ctx, "awaiting-proof")

	if _, err := workflow.AwaitWithTimeout(ctx, b.in.ProofTimeout, func() bool { return b.confirmed || b.cancelled }); err != nil {
		return b.state, err
	}
	// A proof being checked when the deadline passed is let finish.
	if err := workflow.Await(ctx, func() bool { return !b.proving }); err != nil {
		return b.state, err
	}
	if b.confirmed {
		b.status(ctx, "active")
		return b.state, b.finish(ctx)
	}
	why := "not confirmed by the token within " + b.in.ProofTimeout.String()
	if b.cancelled {
		why = "cancelled by an unbinding"
	}
	return b.compensate(ctx, why)
}

// refuse ends the saga before anything was recorded (or with nothing to
// undo): the customer is unknown, the token or customer already bound, the
// CSR bad.
func (b *bindImpl) refuse(ctx workflow.Context, err error) (BindState, error) {
	b.failed = err
	b.state.Reason = reason(err)
	b.status(ctx, "refused")
	return b.state, b.finishWith(ctx, err)
}

// compensate revokes the certificate and drops the pending binding. It runs
// on a disconnected context so that cancelling the workflow cannot stop the
// clean-up, and retries until the HSM and the database answer.
func (b *bindImpl) compensate(ctx workflow.Context, why string) (BindState, error) {
	b.status(ctx, "compensating")
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	dctx = workflow.WithActivityOptions(dctx, activityOptions(time.Minute, 0))
	err := workflow.ExecuteActivity(dctx, binding.EndBinding, activities.EndRequest{
		BindingID: b.state.BindingID, Reason: pki.ReasonCessationOfOperation, Why: why,
	}).Get(dctx, nil)
	if err != nil {
		return b.state, err
	}
	b.state.Reason = why
	b.status(ctx, "compensated")
	return b.state, b.finishWith(ctx, temporal.NewNonRetryableApplicationError("binding "+why, "NotConfirmed", nil))
}

func (b *bindImpl) status(ctx workflow.Context, s string) {
	b.state.Status = s
	setStatus(ctx, s)
}

// finish waits for update handlers in flight before the workflow closes.
func (b *bindImpl) finish(ctx workflow.Context) error { return b.finishWith(ctx, nil) }

func (b *bindImpl) finishWith(ctx workflow.Context, err error) error {
	if werr := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); werr != nil {
		return werr
	}
	return err
}

// reason turns an activity failure into a sentence for people.
func reason(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Message()
	}
	return err.Error()
}

// activityOptions retries with backoff for up to total (0: without limit).
func activityOptions(attempt, total time.Duration) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout:    attempt,
		ScheduleToCloseTimeout: total,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
			NonRetryableErrorTypes: []string{
				activities.ErrTypeUnknownCustomer, activities.ErrTypeAlreadyBound, activities.ErrTypeBadCSR,
				activities.ErrTypeBadProof, activities.ErrTypeNotBound, activities.ErrTypeRevoked,
			},
		},
	}
}

// newChallenge draws the random challenge (inside a side effect, so replays
// see the recorded value).
func newChallenge() []byte {
	return protocol.NewChallenge()
}

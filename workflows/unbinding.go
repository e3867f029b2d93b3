package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/store"
)

var tokens *activities.Tokens

// UnbindingID is the workflow ID of the unbinding of a token's binding.
func UnbindingID(tokenSerial string) string { return "unbinding/" + tokenSerial }

// UnbindInput asks to end a token's binding.
type UnbindInput struct {
	TokenSerial string     `json:"token_serial"`
	Reason      pki.Reason `json:"reason"` // keyCompromise (lost), cessationOfOperation (returned), superseded (replaced)
	RequestedBy string     `json:"requested_by"`
}

// UnbindResult says what the unbinding did.
type UnbindResult struct {
	TokenSerial string    `json:"token_serial"`
	CustomerID  string    `json:"customer_id"`
	CertSerial  string    `json:"cert_serial"`
	WasStatus   string    `json:"was_status"`
	RevokedAt   time.Time `json:"revoked_at"`
	CRLNumber   int64     `json:"crl_number"`
	Stopped     int       `json:"stopped_workflows"`
}

// Unbind is the unbinding saga (loss or return of a key): revoke the
// certificate and deactivate the binding together, republish the CRL, stop
// the binding workflow if the binding was still pending, and tell the
// token's other workflows in flight to stop. Every step is idempotent, so
// a crash anywhere is finished by a retry.
func Unbind(ctx workflow.Context, in UnbindInput) (UnbindResult, error) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, AttrKind.ValueSet("unbinding"), AttrToken.ValueSet(in.TokenSerial),
		AttrStatus.ValueSet("revoking")); err != nil {
		return UnbindResult{}, err
	}
	actx := workflow.WithActivityOptions(ctx, activityOptions(time.Minute, 0))
	var b store.Binding
	if err := workflow.ExecuteActivity(actx, binding.CurrentBinding, in.TokenSerial).Get(ctx, &b); err != nil {
		setStatus(ctx, "refused")
		return UnbindResult{}, err
	}
	_ = workflow.UpsertTypedSearchAttributes(ctx, AttrCustomerID.ValueSet(b.CustomerID))
	res := UnbindResult{TokenSerial: in.TokenSerial, CustomerID: b.CustomerID, CertSerial: b.CertSerial, WasStatus: string(b.Status)}

	var end struct {
		RevokedAt time.Time `json:"revoked_at"`
		CRL       struct {
			Number int64 `json:"number"`
		} `json:"crl"`
	}
	why := fmt.Sprintf("unbound (%s) by %s", in.Reason, in.RequestedBy)
	if err := workflow.ExecuteActivity(actx, binding.EndBinding, activities.EndRequest{
		BindingID: b.ID, Reason: in.Reason, Why: why,
	}).Get(ctx, &end); err != nil {
		return res, err
	}
	res.RevokedAt, res.CRLNumber = end.RevokedAt, end.CRL.Number

	setStatus(ctx, "stopping-workflows")
	if err := workflow.ExecuteActivity(actx, tokens.StopTokenWorkflows, activities.StopRequest{
		TokenSerial: in.TokenSerial, Reason: why,
	}).Get(ctx, &res.Stopped); err != nil {
		return res, err
	}
	setStatus(ctx, "done")
	return res, nil
}

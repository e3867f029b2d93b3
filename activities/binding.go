package activities

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/store"
)

// Error types of non-retryable failures, for workflows and retry policies.
const (
	ErrTypeUnknownCustomer = "UnknownCustomer"
	ErrTypeAlreadyBound    = "AlreadyBound"
	ErrTypeBadCSR          = "BadCSR"
	ErrTypeBadProof        = "BadProof"
	ErrTypeNotBound        = "NotBound"
	ErrTypeRevoked         = "CertificateRevoked"
)

// BindingCA is the certificate authority as the binding sagas use it;
// *authority.Authority is one.
type BindingCA interface {
	IssueForBinding(ctx context.Context, requestKey string, csrDER []byte, customerID, tokenSerial, actor string) (authority.BoundCertificate, error)
	LiveBinding(ctx context.Context, tokenSerial string) (store.Binding, error)
	ActivateBinding(ctx context.Context, bindingID int64, actor string) (store.Binding, error)
	EndBinding(ctx context.Context, bindingID int64, reason pki.Reason, why, actor string) (authority.EndResult, error)
}

// CustomerDirectory answers whether a customer exists at the platform.
type CustomerDirectory interface {
	Customer(ctx context.Context, customerID string) (platform.Customer, error)
}

// Binding is the activities of the binding and unbinding sagas.
type Binding struct {
	CA       BindingCA
	Platform CustomerDirectory
	// Chain is the CA chain written onto the key next to its certificate:
	// the customer CA, then the root (DER).
	Chain [][]byte
}

func actor(ctx context.Context) string {
	return "workflow:" + activity.GetInfo(ctx).WorkflowExecution.ID
}

// CustomerInfo is what the binding saga learns of the customer.
type CustomerInfo struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// CheckCustomer asks the platform whether the customer exists. Unknown is
// final; the platform being down is retried.
func (a *Binding) CheckCustomer(ctx context.Context, customerID string) (CustomerInfo, error) {
	c, err := a.Platform.Customer(ctx, customerID)
	if errors.Is(err, platform.ErrUnknownCustomer) {
		return CustomerInfo{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the platform does not know customer %s", customerID), ErrTypeUnknownCustomer, err)
	}
	if err != nil {
		return CustomerInfo{}, err
	}
	return CustomerInfo{ID: c.ID, Name: c.Name}, nil
}

// CurrentBinding returns the live binding of a token, or a NotBound
// application error.
func (a *Binding) CurrentBinding(ctx context.Context, tokenSerial string) (store.Binding, error) {
	b, err := a.CA.LiveBinding(ctx, tokenSerial)
	if errors.Is(err, store.ErrNotFound) {
		return store.Binding{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("token %s has no pending or active binding", tokenSerial), ErrTypeNotBound, err)
	}
	return b, err
}

// IssueRequest asks for a USB key's certificate.
type IssueRequest struct {
	RequestKey  string `json:"request_key"`
	CSR         []byte `json:"csr"`
	CustomerID  string `json:"customer_id"`
	TokenSerial string `json:"token_serial"`
}

// Issued is the certificate with its pending binding and chain.
type Issued struct {
	CertDER    []byte   `json:"cert_der"`
	CertSerial string   `json:"cert_serial"`
	Chain      [][]byte `json:"chain"`
	BindingID  int64    `json:"binding_id"`
}

// IssueCertificate issues the certificate from the CSR and records it with
// a pending binding, idempotently by request key (a retried attempt gets
// the same certificate).
func (a *Binding) IssueCertificate(ctx context.Context, req IssueRequest) (Issued, error) {
	bc, err := a.CA.IssueForBinding(ctx, req.RequestKey, req.CSR, req.CustomerID, req.TokenSerial, actor(ctx))
	switch {
	case errors.Is(err, store.ErrAlreadyBound):
		return Issued{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeAlreadyBound, err)
	case errors.Is(err, pki.ErrBadCSR), errors.Is(err, pki.ErrInvalidRequest), errors.Is(err, pki.ErrWeakKey):
		return Issued{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadCSR, err)
	case err != nil:
		return Issued{}, err
	}
	return Issued{CertDER: bc.Cert.Raw, CertSerial: authority.SerialHex(bc.Cert), Chain: a.Chain, BindingID: bc.Binding.ID}, nil
}

// Proof is the token's signature over the binding challenge.
type Proof struct {
	BindingID int64  `json:"binding_id"`
	CertDER   []byte `json:"cert_der"`
	Challenge []byte `json:"challenge"`
	Signature []byte `json:"signature"`
}

// ConfirmBinding checks the token's proof of possession and activates the
// binding. A bad signature is final for this attempt (the administrator may
// try again until the proof deadline).
func (a *Binding) ConfirmBinding(ctx context.Context, p Proof) (store.Binding, error) {
	cert, err := x509.ParseCertificate(p.CertDER)
	if err != nil {
		return store.Binding{}, temporal.NewNonRetryableApplicationError("certificate does not parse", ErrTypeBadProof, err)
	}
	wfID := activity.GetInfo(ctx).WorkflowExecution.ID
	digest := protocol.BindingProofDigest(wfID, authority.SerialHex(cert), p.Challenge)
	if err := protocol.VerifyDigest(cert, digest, p.Signature); err != nil {
		return store.Binding{}, temporal.NewNonRetryableApplicationError(
			"the token's signature over the challenge does not verify with the issued certificate", ErrTypeBadProof, err)
	}
	b, err := a.CA.ActivateBinding(ctx, p.BindingID, actor(ctx))
	if errors.Is(err, authority.ErrCertificateRevoked) {
		return store.Binding{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeRevoked, err)
	}
	return b, err
}

// EndRequest asks to end a binding.
type EndRequest struct {
	BindingID int64      `json:"binding_id"`
	Reason    pki.Reason `json:"reason"`
	Why       string     `json:"why"`
}

// EndBinding revokes the binding's certificate, deactivates it and
// republishes the CRL. Idempotent: the compensation of the binding saga and
// the unbinding saga both use it.
func (a *Binding) EndBinding(ctx context.Context, req EndRequest) (authority.EndResult, error) {
	return a.CA.EndBinding(ctx, req.BindingID, req.Reason, req.Why, actor(ctx))
}

package activities

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/store"
)

// Error types of the load activities' non-retryable failures. The load
// workflow turns those raised before the debit into a rejection the
// customer sees; the gateway maps them to API codes.
const (
	// ErrTypeBadLoadRequest: the signed request does not decode, does not
	// verify, or says something else than the request.
	ErrTypeBadLoadRequest = "BadLoadRequest"
	// ErrTypeStaleLoadRequest: its timestamp is too far from now.
	ErrTypeStaleLoadRequest = "StaleLoadRequest"
	// ErrTypeLoadReplay: its nonce was used before, or its sequence number
	// is not above every number the key used.
	ErrTypeLoadReplay = "LoadReplay"
	// ErrTypeLoadPending: another load of the key is in flight.
	ErrTypeLoadPending = "LoadPending"
	// ErrTypeWalletMismatch: the wallet the key reports is not the one
	// GridPay last signed (another sequence, or a higher balance).
	ErrTypeWalletMismatch = "WalletMismatch"
	// ErrTypeAccountMismatch: the account is not the customer's at the
	// platform.
	ErrTypeAccountMismatch = "AccountMismatch"
	// ErrTypeLoadAmount: the amount is outside the limits.
	ErrTypeLoadAmount = "LoadAmount"
	// ErrTypeDebitRefused: the platform refused the debit for good
	// (insufficient funds...): nothing moved.
	ErrTypeDebitRefused = "DebitRefused"
	// ErrTypeBadLoadReport: a key's report does not decode, does not verify,
	// or is not about this key.
	ErrTypeBadLoadReport = "BadLoadReport"
	// ErrTypeLoadSignerUnavailable: the load signer key or its certificate
	// is missing or wrong in the HSM. Retryable: an operator may fix it.
	ErrTypeLoadSignerUnavailable = "LoadSignerUnavailable"
)

// LoadRecords is GridPay's records as the load saga uses them; store.Loads
// is one. Every write appends its audit entry in the same transaction.
type LoadRecords interface {
	Certificate(ctx context.Context, serial string) (store.Certificate, error)
	ActiveBindingForCert(ctx context.Context, serial string) (store.Binding, error)
	IsRevoked(ctx context.Context, serial string) (bool, error)
	RecordNonce(ctx context.Context, tokenSerial string, nonce []byte, workflowID string, at time.Time, rec *store.AuditRecord) error
	Audit(ctx context.Context, rec store.AuditRecord) error

	CreateLoad(ctx context.Context, nl store.NewLoad, actor string) (store.Load, error)
	MarkDebited(ctx context.Context, workflowID, debitKey string, at time.Time, actor string) (store.Load, error)
	MarkRejected(ctx context.Context, workflowID, reason, actor string) (store.Load, error)
	MarkAllowed(ctx context.Context, workflowID string, a store.LoadAllowRecord, actor string) (store.Load, error)
	MarkConfirmed(ctx context.Context, workflowID, by string, reportSHA256 []byte, at time.Time, actor string) (store.Load, error)
	MarkRefunded(ctx context.Context, workflowID, refundKey, reason string, at time.Time, actor string) (store.Load, error)

	LoadByWorkflowID(ctx context.Context, workflowID string) (store.Load, error)
	OpenLoads(ctx context.Context, tokenSerial string) ([]store.Load, error)
	LastConfirmedLoad(ctx context.Context, tokenSerial string) (store.Load, error)
	MaxLoadSequence(ctx context.Context, tokenSerial string) (uint64, error)
}

var _ LoadRecords = store.Loads{}

// LoadPlatform is the part of the platform web service loads use;
// platform.Service is one.
type LoadPlatform interface {
	Customer(ctx context.Context, customerID string) (platform.Customer, error)
	DebitPrepaid(ctx context.Context, customerID, key string, amount money.Fen, memo string) (platform.PrepaidEntry, error)
	CreditPrepaid(ctx context.Context, customerID, key string, amount money.Fen, memo string) (platform.PrepaidEntry, error)
}

// LoadSigner hands out the key that signs allow commands and wallet
// states, with its certificate chain (the signer's certificate first, then
// the services CA).
type LoadSigner interface {
	LoadSigner(ctx context.Context) (crypto.Signer, []*x509.Certificate, error)
}

// LoadSignerService is the service name the load signer's certificate
// carries; the client refuses an allow signed by any other.
const LoadSignerService = "load"

// Defaults of Loads' settings.
const (
	DefaultLoadMin = money.Fen(100)          // ¥1.00
	DefaultLoadMax = money.Fen(1_000_000_00) // ¥1,000,000.00
	loadMemo       = "GridPay load %d onto USB key %s"
	refundMemo     = "GridPay load %d onto USB key %s: refund"
)

// Loads is the activities of the load saga.
type Loads struct {
	Records  LoadRecords
	Platform LoadPlatform
	Signer   LoadSigner
	// MaxClockSkew is how far a key's timestamp may be from now (default
	// DefaultMaxClockSkew).
	MaxClockSkew time.Duration
	// MinAmount and MaxAmount bound one load (defaults DefaultLoadMin,
	// DefaultLoadMax).
	MinAmount, MaxAmount money.Fen
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

func (a *Loads) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

func (a *Loads) skew() time.Duration {
	if a.MaxClockSkew > 0 {
		return a.MaxClockSkew
	}
	return DefaultMaxClockSkew
}

// RefundKey is the platform's key of a load's refund.
func RefundKey(loadID string) string { return loadID + ":refund" }

// LoadCheck is a load request as the gateway received it: the identity
// from the client certificate, the sequence the workflow was started for,
// and the token-signed request.
type LoadCheck struct {
	CustomerID  string `json:"customer_id"`
	TokenSerial string `json:"token_serial"`
	CertSerial  string `json:"cert_serial"`
	Sequence    uint64 `json:"sequence"`
	Request     []byte `json:"request"`
	Signature   []byte `json:"signature"`
}

// AcceptedLoad is what AcceptLoad vouches for and recorded.
type AcceptedLoad struct {
	LoadID         string    `json:"load_id"`
	Sequence       uint64    `json:"sequence"`
	Amount         money.Fen `json:"amount"`
	WalletBalance  money.Fen `json:"wallet_balance"`
	WalletSequence uint64    `json:"wallet_sequence"`
	RequestSHA256  []byte    `json:"request_sha256"`
	Timestamp      time.Time `json:"timestamp"`
}

func acceptedOf(l store.Load, ts time.Time) AcceptedLoad {
	return AcceptedLoad{LoadID: l.LoadID, Sequence: l.Sequence, Amount: money.Fen(l.Amount), WalletBalance: money.Fen(l.WalletBalance),
		WalletSequence: l.WalletSequence, RequestSHA256: l.RequestSHA256, Timestamp: ts}
}

// AcceptLoad checks a load request and records it (status verified): the
// certificate is GridPay's record for this customer and key, not revoked
// and actively bound; the request decodes, its signature verifies and it
// names this customer, key, certificate and sequence; the timestamp is
// within MaxClockSkew; the amount within the limits; the account is the
// customer's at the platform; the sequence is above every one the key
// used; no other load of the key is in flight; the wallet the key reports
// is the one GridPay last signed for it (same sequence and load, no higher
// balance); the nonce is new. Refusals are audited ("load.request",
// refused) and non-retryable; the record's "load.verified" entry audits
// acceptance. A retry of a request already recorded for this workflow
// returns it.
func (a *Loads) AcceptLoad(ctx context.Context, req LoadCheck) (AcceptedLoad, error) {
	wfID := activity.GetInfo(ctx).WorkflowExecution.ID
	sum := sha256.Sum256(req.Request)
	if l, err := a.Records.LoadByWorkflowID(ctx, wfID); err == nil {
		if !bytes.Equal(l.RequestSHA256, sum[:]) {
			return AcceptedLoad{}, nonRetryable(ErrTypeLoadReplay, "sequence %d of key %s is taken by another request", l.Sequence, l.TokenSerial)
		}
		return acceptedOf(l, l.CreatedAt), nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return AcceptedLoad{}, err
	}
	detail := map[string]any{"customer_id": req.CustomerID, "token_serial": req.TokenSerial, "cert_serial": req.CertSerial,
		"sequence": strconv.FormatUint(req.Sequence, 10), "request_sha256": hex.EncodeToString(sum[:])}
	refuse := func(errType, format string, args ...any) (AcceptedLoad, error) {
		return AcceptedLoad{}, a.refuse(ctx, "load.request", wfID, detail, errType, fmt.Sprintf(format, args...))
	}

	cert, errType, why, err := a.checkCertificate(ctx, req.CustomerID, req.TokenSerial, req.CertSerial, true)
	if err != nil {
		return AcceptedLoad{}, err
	}
	if errType != "" {
		return refuse(errType, "%s", why)
	}
	r, err := protocol.VerifyLoadRequest(cert, req.Request, req.Signature)
	if err != nil {
		return refuse(ErrTypeBadLoadRequest, "%v", err)
	}
	detail["amount_fen"] = int64(r.Amount)
	switch {
	case r.CustomerID != req.CustomerID:
		return refuse(ErrTypeBadLoadRequest, "the signed request is for customer %s", r.CustomerID)
	case r.TokenSerial != req.TokenSerial:
		return refuse(ErrTypeBadLoadRequest, "the signed request is for key %s", r.TokenSerial)
	case r.Sequence != req.Sequence:
		return refuse(ErrTypeBadLoadRequest, "the signed request is for sequence %d, not %d", r.Sequence, req.Sequence)
	case r.Sequence > uint64(1<<63-1):
		return refuse(ErrTypeBadLoadRequest, "sequence %d is too large", r.Sequence)
	}
	now := a.now()
	if d := r.Timestamp.Sub(now); d > a.skew() || d < -a.skew() {
		return refuse(ErrTypeStaleLoadRequest, "the request was signed at %s, more than %s from the server's time %s; check the computer's clock",
			r.Timestamp.Format(time.RFC3339), a.skew(), now.Truncate(time.Second).Format(time.RFC3339))
	}
	lo, hi := a.MinAmount, a.MaxAmount
	if lo <= 0 {
		lo = DefaultLoadMin
	}
	if hi <= 0 {
		hi = DefaultLoadMax
	}
	if r.Amount < lo || r.Amount > hi {
		return refuse(ErrTypeLoadAmount, "a load must be between %s and %s, not %s", lo.Display(), hi.Display(), r.Amount.Display())
	}
	c, err := a.Platform.Customer(ctx, req.CustomerID)
	if errors.Is(err, platform.ErrUnknownCustomer) {
		return refuse(ErrTypeUnknownCustomer, "the platform does not know customer %s", req.CustomerID)
	}
	if err != nil {
		return AcceptedLoad{}, err
	}
	if c.AccountNumber != r.Account {
		return refuse(ErrTypeAccountMismatch, "the account in the request is not the customer's prepaid account")
	}
	maxSeq, err := a.Records.MaxLoadSequence(ctx, req.TokenSerial)
	if err != nil {
		return AcceptedLoad{}, err
	}
	if r.Sequence <= maxSeq {
		return refuse(ErrTypeLoadReplay, "sequence %d was used before: the key's loads have reached %d", r.Sequence, maxSeq)
	}
	open, err := a.Records.OpenLoads(ctx, req.TokenSerial)
	if err != nil {
		return AcceptedLoad{}, err
	}
	if len(open) > 0 {
		return refuse(ErrTypeLoadPending, "%s", pendingMessage(open[0]))
	}
	mismatch, err := a.walletMismatch(ctx, r)
	if err != nil {
		return AcceptedLoad{}, err
	}
	if mismatch != "" {
		return refuse(ErrTypeWalletMismatch, "%s", mismatch)
	}

	ok := store.AuditRecord{Actor: actor(ctx), Action: "load.request", Subject: wfID, Outcome: store.OutcomeOK, Detail: detail}
	if err := a.Records.RecordNonce(ctx, r.TokenSerial, r.Nonce, wfID, now, &ok); errors.Is(err, store.ErrReplay) {
		return refuse(ErrTypeLoadReplay, "replayed request: %v", err)
	} else if err != nil {
		return AcceptedLoad{}, err
	}
	l, err := a.Records.CreateLoad(ctx, store.NewLoad{
		LoadID: protocol.LoadID(r.TokenSerial, r.Sequence), WorkflowID: wfID, CustomerID: r.CustomerID, TokenSerial: r.TokenSerial,
		CertSerial: r.CertSerial, Sequence: r.Sequence, WalletSequence: r.WalletSequence, WalletBalance: int64(r.WalletBalance),
		Amount: int64(r.Amount), RequestSHA256: sum[:],
	}, actor(ctx))
	var pending *store.PendingLoadError
	switch {
	case errors.As(err, &pending):
		return refuse(ErrTypeLoadPending, "%s", pendingMessage(pending.Load))
	case errors.Is(err, store.ErrSequenceUsed), errors.Is(err, store.ErrConflict):
		return refuse(ErrTypeLoadReplay, "%v", err)
	case err != nil:
		return AcceptedLoad{}, err
	}
	return acceptedOf(l, r.Timestamp), nil
}

// pendingMessage tells the customer why a new load waits.
func pendingMessage(l store.Load) string {
	msg := fmt.Sprintf("load %d of this USB key (%s) is still being settled", l.Sequence, money.Fen(l.Amount).Display())
	if l.AllowExpiresAt != nil {
		msg += fmt.Sprintf("; its allow expires at %s: run \"client wallet\" to settle it, then try again",
			l.AllowExpiresAt.In(platform.Shanghai).Format("2006-01-02 15:04:05 MST"))
	}
	return msg
}

// walletMismatch compares the wallet a request reports with the state
// GridPay last signed for the key: the same sequence and load, and no more
// money (a card transfer only ever lowers it). "" if it matches.
func (a *Loads) walletMismatch(ctx context.Context, r protocol.LoadRequest) (string, error) {
	last, err := a.Records.LastConfirmedLoad(ctx, r.TokenSerial)
	if errors.Is(err, store.ErrNotFound) {
		if r.WalletSequence != 0 || r.WalletBalance != 0 {
			return fmt.Sprintf("the USB key reports a wallet at load %d holding %s, but GridPay never loaded it", r.WalletSequence, r.WalletBalance.Display()), nil
		}
		return "", nil
	}
	if err != nil {
		return "", err
	}
	switch {
	case r.WalletSequence != last.Sequence || r.WalletLastLoad != last.LoadID:
		return fmt.Sprintf("the USB key reports a wallet at load %d, but GridPay's last load onto it is %d: please contact the power company", r.WalletSequence, last.Sequence), nil
	case last.NewBalance != nil && int64(r.WalletBalance) > *last.NewBalance:
		return fmt.Sprintf("the USB key reports %s, more than the %s GridPay last signed: please contact the power company",
			r.WalletBalance.Display(), money.Fen(*last.NewBalance).Display()), nil
	}
	return "", nil
}

// checkCertificate finds the recorded certificate and checks it is the
// customer's for this key; needBound also requires it unrevoked and
// actively bound. A refusal comes back as its error type and reason; err
// is for failures worth retrying.
func (a *Loads) checkCertificate(ctx context.Context, customerID, tokenSerial, certSerial string, needBound bool) (_ *x509.Certificate, errType, why string, err error) {
	rec, err := a.Records.Certificate(ctx, certSerial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrTypeBadLoadRequest, fmt.Sprintf("certificate %s was not issued by GridPay", certSerial), nil
	}
	if err != nil {
		return nil, "", "", err
	}
	if rec.CustomerID != customerID || rec.TokenSerial != tokenSerial {
		return nil, ErrTypeBadLoadRequest, fmt.Sprintf("certificate %s belongs to customer %s and key %s", certSerial, rec.CustomerID, rec.TokenSerial), nil
	}
	if needBound {
		revoked, err := a.Records.IsRevoked(ctx, certSerial)
		if err != nil {
			return nil, "", "", err
		}
		if revoked {
			return nil, ErrTypeRevoked, fmt.Sprintf("certificate %s is revoked", certSerial), nil
		}
		if _, err := a.Records.ActiveBindingForCert(ctx, certSerial); errors.Is(err, store.ErrNotFound) {
			return nil, ErrTypeNotBound, fmt.Sprintf("the USB key %s has no active binding", tokenSerial), nil
		} else if err != nil {
			return nil, "", "", err
		}
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		return nil, "", "", fmt.Errorf("recorded certificate %s does not parse: %w", certSerial, err)
	}
	return cert, "", "", nil
}

// refuse audits a refusal and returns it as a non-retryable error; a
// refusal that cannot be audited is retried until it is.
func (a *Loads) refuse(ctx context.Context, action, subject string, detail map[string]any, errType, why string) error {
	d := map[string]any{"reason": why, "error_type": errType}
	for k, v := range detail {
		d[k] = v
	}
	if err := a.Records.Audit(ctx, store.AuditRecord{Actor: actor(ctx), Action: action, Subject: subject, Outcome: store.OutcomeRefused, Detail: d}); err != nil {
		return err
	}
	return nonRetryable(errType, "%s", why)
}

// DebitAccount takes the load's amount from the customer's prepaid account
// at the platform, keyed by the load ID (so every retry, and a restarted
// worker, debits once), and records it. A permanent refusal of the
// platform (insufficient funds...) is non-retryable (DebitRefused: nothing
// moved); the platform being down is retried. A load already debited is
// returned as it is.
func (a *Loads) DebitAccount(ctx context.Context) (store.Load, error) {
	wfID := activity.GetInfo(ctx).WorkflowExecution.ID
	l, err := a.Records.LoadByWorkflowID(ctx, wfID)
	if err != nil {
		return store.Load{}, err
	}
	switch l.Status {
	case store.LoadVerified:
	case store.LoadRejected:
		return store.Load{}, nonRetryable(ErrTypeIllegalTransition, "load %s was rejected; it is not debited", l.LoadID)
	default:
		return l, nil
	}
	entry, err := a.Platform.DebitPrepaid(ctx, l.CustomerID, l.LoadID, money.Fen(l.Amount), fmt.Sprintf(loadMemo, l.Sequence, l.TokenSerial))
	switch {
	case errors.Is(err, platform.ErrConflict):
		// Another entry under the load's key: something else moved money
		// in its name. Never guess.
		return store.Load{}, nonRetryable(ErrTypeIllegalTransition, "the platform holds another entry under key %s: %v", l.LoadID, err)
	case err != nil && !platform.Retryable(err):
		var pe *platform.Error
		msg := err.Error()
		if errors.As(err, &pe) {
			msg = pe.Message
		}
		if errors.Is(err, platform.ErrInsufficientFunds) {
			msg = "your prepaid account holds less than " + money.Fen(l.Amount).Display()
		}
		return store.Load{}, temporal.NewNonRetryableApplicationError("the platform refused the debit: "+msg, ErrTypeDebitRefused, err)
	case err != nil:
		return store.Load{}, err
	}
	at := entry.At
	if at.IsZero() {
		at = a.now()
	}
	l, err = a.Records.MarkDebited(ctx, wfID, l.LoadID, at, actor(ctx))
	return l, storeErr(err)
}

// RejectLoad records that a verified load was refused before any money
// moved, with the reason the customer sees. Without a record (refused
// before it was made) there is nothing to do.
func (a *Loads) RejectLoad(ctx context.Context, reason string) (store.Load, error) {
	wfID := activity.GetInfo(ctx).WorkflowExecution.ID
	if _, err := a.Records.LoadByWorkflowID(ctx, wfID); errors.Is(err, store.ErrNotFound) {
		return store.Load{}, nil
	} else if err != nil {
		return store.Load{}, err
	}
	l, err := a.Records.MarkRejected(ctx, wfID, reason, actor(ctx))
	return l, storeErr(err)
}

// AllowSpec fixes what the allow says beyond the record: the workflow picks
// the times, so that a retried signing signs the same content.
type AllowSpec struct {
	HostTime time.Time `json:"host_time"`
	Expires  time.Time `json:"expires"`
}

// SignedAllow is an allow command ready to hand out.
type SignedAllow struct {
	Allow          []byte    `json:"allow"`
	Signature      []byte    `json:"signature"`
	State          []byte    `json:"state"`
	StateSignature []byte    `json:"state_signature"`
	StateSHA256    []byte    `json:"state_sha256"`
	Chain          [][]byte  `json:"chain"` // DER: the signer's certificate, then the services CA
	Expires        time.Time `json:"expires"`
	NewBalance     money.Fen `json:"new_balance"`
}

// allowNonce derives the allow's nonce from the load ID: unique per load,
// and the same on every signing attempt.
func allowNonce(loadID string) []byte {
	sum := sha256.Sum256([]byte("GridPay allow nonce\x00" + loadID))
	return sum[:protocol.MinNonceSize]
}

// SignAllow signs, with the load signer in the HSM, the new wallet state
// (balance = the wallet's + the amount, the load's sequence and ID) and the
// allow command carrying it, and records the allow (status allowed). Only
// a debited load is signed for. Signing again signs the same content; a
// missing or unusable signer is retried (LoadSignerUnavailable).
func (a *Loads) SignAllow(ctx context.Context, spec AllowSpec) (SignedAllow, error) {
	wfID := activity.GetInfo(ctx).WorkflowExecution.ID
	l, err := a.Records.LoadByWorkflowID(ctx, wfID)
	if err != nil {
		return SignedAllow{}, err
	}
	if l.Status != store.LoadDebited && l.Status != store.LoadAllowed {
		return SignedAllow{}, nonRetryable(ErrTypeIllegalTransition, "load %s is %s; only a debited load is allowed", l.LoadID, l.Status)
	}
	if !spec.Expires.After(spec.HostTime) {
		return SignedAllow{}, temporal.NewNonRetryableApplicationError("an allow must expire after its host time", "Invalid", nil)
	}
	signer, chain, err := a.Signer.LoadSigner(ctx)
	if err != nil {
		return SignedAllow{}, temporal.NewApplicationError(err.Error(), ErrTypeLoadSignerUnavailable)
	}
	alg, err := protocol.AlgorithmFor(signer.Public())
	if err != nil {
		return SignedAllow{}, temporal.NewApplicationError(err.Error(), ErrTypeLoadSignerUnavailable)
	}
	signerSerial := pki.SerialHex(chain[0].SerialNumber)
	newBalance := money.Fen(l.WalletBalance + l.Amount)
	host, expires := spec.HostTime.UTC().Truncate(time.Second), spec.Expires.UTC().Truncate(time.Second)
	state, err := protocol.EncodeWalletState(protocol.WalletState{Version: protocol.WalletStateVersion, TokenSerial: l.TokenSerial,
		CustomerID: l.CustomerID, Sequence: l.Sequence, Balance: newBalance, LastLoadID: l.LoadID, SignedAt: host,
		SignerSerial: signerSerial, Algorithm: alg})
	if err != nil {
		return SignedAllow{}, temporal.NewNonRetryableApplicationError("the wallet state does not encode: "+err.Error(), "Invalid", err)
	}
	stateSig, err := protocol.Sign(signer, alg, protocol.WalletStateDigest(state))
	if err != nil {
		return SignedAllow{}, temporal.NewApplicationError("signing the wallet state: "+err.Error(), ErrTypeLoadSignerUnavailable)
	}
	allow, err := protocol.EncodeLoadAllow(protocol.LoadAllow{
		LoadHeader: protocol.LoadHeader{Version: protocol.LoadProtocolVersion, Type: protocol.TypeLoadAllow, TokenSerial: l.TokenSerial,
			CertSerial: signerSerial, KeyVersion: protocol.KeyVersion, Algorithm: alg, Nonce: allowNonce(l.LoadID), Timestamp: host,
			Sequence: l.Sequence},
		CustomerID: l.CustomerID, LoadID: l.LoadID, Amount: money.Fen(l.Amount), Expires: expires, PrevSequence: l.WalletSequence,
		State: state, StateSignature: stateSig,
	})
	if err != nil {
		return SignedAllow{}, temporal.NewNonRetryableApplicationError("the allow does not encode: "+err.Error(), "Invalid", err)
	}
	sig, err := protocol.Sign(signer, alg, protocol.LoadAllowDigest(allow))
	if err != nil {
		return SignedAllow{}, temporal.NewApplicationError("signing the allow: "+err.Error(), ErrTypeLoadSignerUnavailable)
	}
	sum := sha256.Sum256(state)
	if _, err := a.Records.MarkAllowed(ctx, wfID, store.LoadAllowRecord{SHA256: sum[:], At: host, ExpiresAt: expires, NewBalance: int64(newBalance)},
		actor(ctx)); err != nil {
		return SignedAllow{}, storeErr(err)
	}
	out := SignedAllow{Allow: allow, Signature: sig, State: state, StateSignature: stateSig, StateSHA256: sum[:], Expires: expires, NewBalance: newBalance}
	for _, c := range chain {
		out.Chain = append(out.Chain, c.Raw)
	}
	return out, nil
}

// ReportCheck is a key's report as the gateway received it.
type ReportCheck struct {
	CustomerID  string `json:"customer_id"`
	TokenSerial string `json:"token_serial"`
	CertSerial  string `json:"cert_serial"`
	Report      []byte `json:"report"`
	Signature   []byte `json:"signature"`
}

// Kinds of VerifiedReport.
const (
	ReportReceipt = "receipt"
	ReportError   = "error"
	ReportState   = "state"
)

// VerifiedReport is a key's report that VerifyReport vouches for.
type VerifiedReport struct {
	Kind           string    `json:"kind"` // ReportReceipt, ReportError, ReportState
	LoadSequence   uint64    `json:"load_sequence,omitempty"`
	LoadID         string    `json:"load_id,omitempty"`
	WalletSequence uint64    `json:"wallet_sequence"`
	WalletLastLoad string    `json:"wallet_last_load,omitempty"`
	WalletBalance  money.Fen `json:"wallet_balance"`
	Attempt        uint64    `json:"attempt"`
	// StateSHA256 is of the wallet state the key holds (nil: none).
	StateSHA256 []byte `json:"state_sha256,omitempty"`
	ErrorCode   int    `json:"error_code,omitempty"`
	ErrorText   string `json:"error_text,omitempty"`
	SHA256      []byte `json:"sha256"`
	// Revoked: the certificate was revoked by the time the report came.
	Revoked bool `json:"revoked,omitempty"`
	// At is when GridPay received it (the server's clock, never the key's).
	At time.Time `json:"at"`
}

// VerifyReport checks a key's report: the certificate is GridPay's record
// for this customer and key; the report decodes, its signature verifies
// and it is about this key; the timestamp is within MaxClockSkew; its
// nonce was not used by another workflow (the same report delivered twice
// to one load is fine). It audits the outcome ("load.report"). A revoked
// certificate is reported (Revoked), not refused: the workflow decides
// what such a report may still prove.
func (a *Loads) VerifyReport(ctx context.Context, req ReportCheck) (VerifiedReport, error) {
	wfID := activity.GetInfo(ctx).WorkflowExecution.ID
	sum := sha256.Sum256(req.Report)
	detail := map[string]any{"customer_id": req.CustomerID, "token_serial": req.TokenSerial, "cert_serial": req.CertSerial,
		"report_sha256": hex.EncodeToString(sum[:])}
	refuse := func(format string, args ...any) (VerifiedReport, error) {
		return VerifiedReport{}, a.refuse(ctx, "load.report", wfID, detail, ErrTypeBadLoadReport, fmt.Sprintf(format, args...))
	}
	cert, errType, why, err := a.checkCertificate(ctx, req.CustomerID, req.TokenSerial, req.CertSerial, false)
	if err != nil {
		return VerifiedReport{}, err
	}
	if errType != "" {
		return refuse("%s", why)
	}
	r, err := protocol.VerifyLoadReport(cert, req.Report, req.Signature)
	if err != nil {
		return refuse("%v", err)
	}
	if r.TokenSerial != req.TokenSerial {
		return refuse("the report is about key %s", r.TokenSerial)
	}
	now := a.now()
	if d := r.Timestamp.Sub(now); d > a.skew() || d < -a.skew() {
		return refuse("the report was signed at %s, more than %s from the server's time", r.Timestamp.Format(time.RFC3339), a.skew())
	}
	revoked, err := a.Records.IsRevoked(ctx, req.CertSerial)
	if err != nil {
		return VerifiedReport{}, err
	}
	out := VerifiedReport{LoadSequence: r.LoadSequence, LoadID: r.LoadID, WalletSequence: r.Sequence, WalletBalance: r.WalletBalance,
		Attempt: r.Attempt, ErrorCode: int(r.ErrorCode), ErrorText: r.ErrorText, SHA256: sum[:], Revoked: revoked, At: now}
	switch r.Kind {
	case protocol.ReportReceipt:
		out.Kind = ReportReceipt
	case protocol.ReportError:
		out.Kind = ReportError
	default:
		out.Kind = ReportState
	}
	if r.State != nil {
		st, err := protocol.DecodeWalletState(r.State)
		if err != nil {
			return refuse("%v", err)
		}
		s := sha256.Sum256(r.State)
		out.StateSHA256, out.WalletLastLoad = s[:], st.LastLoadID
	}
	detail["kind"], detail["wallet_sequence"] = out.Kind, strconv.FormatUint(r.Sequence, 10)
	ok := store.AuditRecord{Actor: actor(ctx), Action: "load.report", Subject: wfID, Outcome: store.OutcomeOK, Detail: detail}
	if err := a.Records.RecordNonce(ctx, r.TokenSerial, r.Nonce, wfID, now, &ok); errors.Is(err, store.ErrReplay) {
		return VerifiedReport{}, a.refuse(ctx, "load.report", wfID, detail, ErrTypeLoadReplay, "replayed report: "+err.Error())
	} else if err != nil {
		return VerifiedReport{}, err
	}
	return out, nil
}

// ConfirmRequest records how a load was confirmed.
type ConfirmRequest struct {
	By           string `json:"by"` // store.ConfirmedByReceipt, ConfirmedByContact or ConfirmedByOperator
	ReportSHA256 []byte `json:"report_sha256,omitempty"`
}

// ConfirmLoad records that the wallet took the load.
func (a *Loads) ConfirmLoad(ctx context.Context, req ConfirmRequest) (store.Load, error) {
	l, err := a.Records.MarkConfirmed(ctx, activity.GetInfo(ctx).WorkflowExecution.ID, req.By, req.ReportSHA256, a.now(), actor(ctx))
	return l, storeErr(err)
}

// RefundLoad credits a debited load's amount back to the prepaid account,
// keyed by RefundKey(load ID) (so it happens once whatever is retried), and
// records it with the reason. It refuses to refund a confirmed load: money
// on the wallet and back on the account would be paid twice.
func (a *Loads) RefundLoad(ctx context.Context, reason string) (store.Load, error) {
	wfID := activity.GetInfo(ctx).WorkflowExecution.ID
	l, err := a.Records.LoadByWorkflowID(ctx, wfID)
	if err != nil {
		return store.Load{}, err
	}
	switch l.Status {
	case store.LoadRefunded:
		return l, nil
	case store.LoadDebited, store.LoadAllowed:
	default:
		return store.Load{}, nonRetryable(ErrTypeIllegalTransition, "load %s is %s; only a debited load is refunded", l.LoadID, l.Status)
	}
	key := RefundKey(l.LoadID)
	entry, err := a.Platform.CreditPrepaid(ctx, l.CustomerID, key, money.Fen(l.Amount), fmt.Sprintf(refundMemo, l.Sequence, l.TokenSerial))
	if err != nil && !platform.Retryable(err) {
		return store.Load{}, nonRetryable(ErrTypeIllegalTransition, "the platform refused the refund of load %s: %v", l.LoadID, err)
	}
	if err != nil {
		return store.Load{}, err
	}
	at := entry.At
	if at.IsZero() {
		at = a.now()
	}
	l, err = a.Records.MarkRefunded(ctx, wfID, key, reason, at, actor(ctx))
	return l, storeErr(err)
}

// NoteLoadTokenUnbound audits that the load's key was unbound meanwhile
// ("load.token_unbound") and what the load does about it.
func (a *Loads) NoteLoadTokenUnbound(ctx context.Context, n UnboundNote) error {
	return a.Records.Audit(ctx, store.AuditRecord{Actor: actor(ctx), Action: "load.token_unbound",
		Subject: activity.GetInfo(ctx).WorkflowExecution.ID, Outcome: store.OutcomeOK,
		Detail: map[string]any{"customer_id": n.CustomerID, "token_serial": n.TokenSerial, "status": n.Status, "why": n.Why}})
}

// SignerKeys finds a signing key and its certificate by label;
// authority.HSMKeys is one.
type SignerKeys interface {
	Signer(ctx context.Context, label string) (crypto.Signer, error)
	Certificate(ctx context.Context, label string) (*x509.Certificate, error)
}

// ServiceKey is a signing key of one of GridPay's services (the load
// signer, the audit anchor signer) kept in an HSM under Label, with the
// services CA certificate as its chain. It looks the key up at its first
// use (a worker starts without one and its users wait until an operator
// issues it) and again every few minutes, so that a renewed certificate is
// picked up.
type ServiceKey struct {
	Keys  SignerKeys
	Label string
	// Intermediates complete the chain to GridPay's root: the services CA.
	Intermediates []*x509.Certificate
	// Service is the name the certificate must carry (default
	// LoadSignerService).
	Service string

	mu      sync.Mutex
	signer  crypto.Signer
	chain   []*x509.Certificate
	fetched time.Time
}

var _ LoadSigner = (*ServiceKey)(nil)

const loadSignerRefresh = 5 * time.Minute

// LoadSigner returns the key and its chain.
func (k *ServiceKey) LoadSigner(ctx context.Context) (crypto.Signer, []*x509.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.signer != nil && time.Since(k.fetched) < loadSignerRefresh {
		return k.signer, k.chain, nil
	}
	hint := fmt.Sprintf("(issue it: adminctl ca issue --name %s --key-label %s)", k.service(), k.Label)
	signer, err := k.Keys.Signer(ctx, k.Label)
	if err != nil {
		return nil, nil, fmt.Errorf("%s signing key %q: %w %s", k.service(), k.Label, err, hint)
	}
	cert, err := k.Keys.Certificate(ctx, k.Label)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate of the %s signing key %q: %w %s", k.service(), k.Label, err, hint)
	}
	id, err := pki.IdentityOf(cert)
	if err != nil || id.Kind != pki.KindService || id.Service != k.service() {
		return nil, nil, fmt.Errorf("the certificate under %q is not one of service %q (%v) %s", k.Label, k.service(), err, hint)
	}
	if !publicKeysEqual(cert.PublicKey, signer.Public()) {
		return nil, nil, fmt.Errorf("the certificate under %q is not for the key under that label %s", k.Label, hint)
	}
	k.signer, k.chain, k.fetched = signer, append([]*x509.Certificate{cert}, k.Intermediates...), time.Now()
	return k.signer, k.chain, nil
}

func (k *ServiceKey) service() string {
	if k.Service != "" {
		return k.Service
	}
	return LoadSignerService
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// OperatorNote is an operator's settlement of a load, for the audit log.
type OperatorNote struct {
	CustomerID  string `json:"customer_id"`
	TokenSerial string `json:"token_serial"`
	Outcome     string `json:"outcome"`
	Operator    string `json:"operator"`
	Reason      string `json:"reason"`
}

// NoteOperatorSettlement audits an operator's settlement of the load
// before the money moves; the operator is the actor.
func (a *Loads) NoteOperatorSettlement(ctx context.Context, n OperatorNote) error {
	return a.Records.Audit(ctx, store.AuditRecord{Actor: n.Operator, Action: "load.operator_settle",
		Subject: activity.GetInfo(ctx).WorkflowExecution.ID, Outcome: store.OutcomeOK,
		Detail: map[string]any{"customer_id": n.CustomerID, "token_serial": n.TokenSerial, "outcome": n.Outcome, "reason": n.Reason}})
}

package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/workflows"
)

// Payments starts payment sagas and reads their state; temporalPayments is
// the real one.
type Payments interface {
	// Start starts (or joins) the payment workflow of in and waits for its
	// order. A payment refused before any order is an error whose
	// *temporal.ApplicationError type says why.
	Start(ctx context.Context, in workflows.PaymentInput) (workflows.Order, error)
	// Status reads a payment's live state; ErrNoPayment if there is none.
	Status(ctx context.Context, customerID, key string) (workflows.PaymentState, error)
}

// ErrNoPayment means no payment has that customer and key.
var ErrNoPayment = errors.New("no such payment")

// payLinks makes and checks the links that open a payment's UnionPay form
// in the payer's browser. The link names the payment and carries an HMAC
// of it under the gateway's pay-link secret, so it can be opened without a
// client certificate (the browser has none) but not guessed.
type payLinks struct {
	base   string // the public listener's URL
	secret []byte
}

func (l payLinks) mac(customerID, key string) string {
	m := hmac.New(sha256.New, l.secret)
	m.Write([]byte("GridPay pay link v1\x00" + customerID + "\x00" + key))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (l payLinks) url(customerID, key string) string {
	return l.base + "/pay/" + url.PathEscape(customerID) + "/" + url.PathEscape(key) + "?t=" + l.mac(customerID, key)
}

func (l payLinks) valid(customerID, key, token string) bool {
	return hmac.Equal([]byte(token), []byte(l.mac(customerID, key)))
}

// startPayment starts a payment from the key-signed instruction (POST
// api.PathPayments). The instruction must be the authenticated key's: its
// customer, token and certificate are those of the client certificate. The
// same instruction again (a double click, a retried request) reaches the
// same workflow and gets the same order.
func (s *Server) startPayment(w http.ResponseWriter, r *http.Request, p *principal, _ string) {
	if _, err := query(r); err != nil {
		s.badRequest(w, r, err)
		return
	}
	var req api.PaymentRequest
	if !s.decodeJSON(w, r, &req) {
		return
	}
	ins, err := protocol.VerifyPaymentInstruction(p.cert, req.Instruction, req.Signature)
	if err != nil {
		s.refuse(w, r, refusal{status: http.StatusBadRequest, code: api.CodeInvalidRequest,
			message: "the payment instruction is not valid: " + err.Error(), reason: "payment instruction refused: " + err.Error()})
		return
	}
	if ins.CustomerID != p.id.CustomerID || ins.TokenSerial != p.id.TokenSerial || ins.CertSerial != p.serial {
		s.refuse(w, r, refusal{status: http.StatusForbidden, code: api.CodeInvalidRequest,
			message: "the payment instruction was signed for another customer or key",
			reason:  fmt.Sprintf("instruction for customer %s token %s cert %s", ins.CustomerID, ins.TokenSerial, ins.CertSerial)})
		return
	}
	in := workflows.PaymentInput{
		CustomerID: ins.CustomerID, TokenSerial: ins.TokenSerial, CertSerial: ins.CertSerial,
		IdempotencyKey: ins.IdempotencyKey, Kind: string(ins.Kind), BillIDs: ins.BillIDs, Amount: ins.Amount,
		Instruction: req.Instruction, Signature: req.Signature, Timing: s.paymentTiming,
	}
	if err := in.Validate(); err != nil {
		s.refuse(w, r, refusal{status: http.StatusBadRequest, code: api.CodeInvalidRequest, message: err.Error(), reason: "payment input: " + err.Error()})
		return
	}
	order, err := s.payments.Start(r.Context(), in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		// The payment with this key has already ended: report its state.
		s.paymentStatus(w, r, p, ins.IdempotencyKey)
		return
	}
	if err != nil {
		s.paymentFailed(w, r, err)
		return
	}
	s.log.Info("payment order", zap.String("request_id", stateOf(r).id), zap.String("customer_id", p.id.CustomerID),
		zap.String("workflow_id", order.WorkflowID), zap.String("order_id", order.OrderID), zap.Int64("amount_fen", int64(order.Amount)))
	s.writeJSON(w, r, http.StatusOK, api.PaymentOrder{
		Key: order.IdempotencyKey, OrderID: order.OrderID, Amount: order.Amount,
		PayURL: s.payLinks.url(p.id.CustomerID, order.IdempotencyKey), Deadline: order.PayDeadline, Status: order.Status,
	})
}

// paymentFailed answers a payment the saga refused, or could not start.
func (s *Server) paymentFailed(w http.ResponseWriter, r *http.Request, err error) {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		switch appErr.Type() {
		case workflows.ErrTypeUnavailable:
			s.fail(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, msgUnavailable)
			return
		case activities.ErrTypeNotBound, activities.ErrTypeRevoked, workflows.ErrTypeTokenUnbound:
			s.refuse(w, r, refusal{status: http.StatusForbidden, code: api.CodeNotBound, message: appErr.Message(), reason: "payment: " + appErr.Message()})
			return
		}
		s.refuse(w, r, refusal{status: http.StatusUnprocessableEntity, code: api.CodeInvalidRequest,
			message: appErr.Message(), reason: "payment rejected (" + appErr.Type() + "): " + appErr.Message()})
		return
	}
	st := stateOf(r)
	s.log.Error("starting a payment", zap.String("request_id", st.id), zap.Error(err))
	s.fail(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, "service unavailable: the payment could not be started; send it again (it will not be paid twice)")
}

// paymentStatus reads a payment of the authenticated customer (GET
// api.PathPayment + key). Another customer's key is not found, exactly like
// a key never used.
func (s *Server) paymentStatus(w http.ResponseWriter, r *http.Request, p *principal, key string) {
	if err := protocol.CheckIdempotencyKey(key); err != nil {
		s.badRequest(w, r, badParam("key", "%v", err))
		return
	}
	st, err := s.payments.Status(r.Context(), p.id.CustomerID, key)
	if errors.Is(err, ErrNoPayment) {
		s.fail(w, r, http.StatusNotFound, api.CodeNotFound, "no such payment")
		return
	}
	if err != nil {
		s.log.Error("reading a payment", zap.String("request_id", stateOf(r).id), zap.Error(err))
		s.fail(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, msgUnavailable)
		return
	}
	s.writeJSON(w, r, http.StatusOK, statusOf(st))
}

func statusOf(st workflows.PaymentState) api.PaymentStatus {
	out := api.PaymentStatus{Key: st.IdempotencyKey, Status: st.Status, Kind: st.Kind, BillIDs: st.BillIDs, Amount: st.Amount,
		Reason: st.Reason, QueryID: st.QueryID, PaidAt: st.PaidAt, Final: st.Final}
	if st.Order != nil {
		out.OrderID, out.Deadline = st.Order.OrderID, st.Order.PayDeadline
	}
	if st.Receipt != nil {
		t := st.Receipt.PostedAt
		out.PostedAt = &t
	}
	if st.Refund != nil {
		out.RefundedAt = st.Refund.RefundedAt
	}
	return out
}

// PaymentRecords lists a customer's online payments as GridPay recorded
// them.
type PaymentRecords interface {
	PaymentsForCustomer(ctx context.Context, customerID string) ([]store.Payment, error)
}

// onlineOf renders a payment record for the history.
func onlineOf(p store.Payment) api.PaymentStatus {
	st := api.PaymentStatus{Key: p.IdempotencyKey, Status: string(p.Status), Kind: p.Kind, BillIDs: p.BillIDs,
		Amount: api.Amount(p.Amount), OrderID: p.OrderID, Deadline: p.PayDeadline, Reason: p.Reason, QueryID: p.QueryID,
		PaidAt: p.PaidAt, PostedAt: p.PostedAt, RefundedAt: p.RefundedAt}
	switch p.Status {
	case store.PaymentPosted, store.PaymentRefunded, store.PaymentExpired, store.PaymentRejected:
		st.Final = true
	}
	return st
}

// storeLookup finds a payment's workflow from its order ID (consume or
// refund), for the notify endpoint.
type storeLookup struct{ db *store.DB }

func (l storeLookup) PaymentsForCustomer(ctx context.Context, customerID string) ([]store.Payment, error) {
	return store.PaymentsForCustomer(ctx, l.db, customerID, 100)
}

func (l storeLookup) workflowOfOrder(ctx context.Context, orderID string) (string, error) {
	p, err := store.PaymentByOrderID(ctx, l.db, orderID)
	if err != nil {
		return "", err
	}
	return p.WorkflowID, nil
}

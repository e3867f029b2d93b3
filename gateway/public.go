package main

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/unionpay"
	"github.com/gridpay/gridpay/workflows"
)

// temporalPayments starts and reads payment workflows on Temporal.
type temporalPayments struct {
	tc        client.Client
	taskQueue string
}

func (t temporalPayments) Start(ctx context.Context, in workflows.PaymentInput) (workflows.Order, error) {
	start := t.tc.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID:                       workflows.PaymentID(in.CustomerID, in.IdempotencyKey),
		TaskQueue:                t.taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, workflows.Pay, in)
	h, err := t.tc.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateName: workflows.UpdateOrder, Args: []any{in.OrderRequest()}, WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err != nil {
		return workflows.Order{}, err
	}
	var o workflows.Order
	err = h.Get(ctx, &o)
	return o, err
}

func (t temporalPayments) Status(ctx context.Context, customerID, key string) (workflows.PaymentState, error) {
	v, err := t.tc.QueryWorkflow(ctx, workflows.PaymentID(customerID, key), "", workflows.QueryStatus)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return workflows.PaymentState{}, ErrNoPayment
	}
	if err != nil {
		return workflows.PaymentState{}, err
	}
	var st workflows.PaymentState
	return st, v.Get(&st)
}

// public serves what must be reachable without a client certificate: the
// payment gateway's back notifications, and the pay links the payer's
// browser opens (and comes back to).
type public struct {
	verifier *unionpay.Verifier
	lookup   interface {
		workflowOfOrder(ctx context.Context, orderID string) (string, error)
	}
	signal   func(ctx context.Context, workflowID string, n unionpay.Notification) error
	payments Payments
	links    payLinks
	audit    *auditLog
	log      *zap.Logger
}

func (p *public) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case r.URL.Path == "/unionpay/notify" && r.Method == http.MethodPost:
		p.notify(w, r)
	case strings.HasPrefix(r.URL.Path, "/pay/return") && (r.Method == http.MethodPost || r.Method == http.MethodGet):
		p.returned(w, r)
	case strings.HasPrefix(r.URL.Path, "/pay/") && r.Method == http.MethodGet:
		p.payPage(w, r)
	default:
		http.NotFound(w, r)
	}
}

// notify takes a back notification: verified, handed to its payment
// workflow, and answered 200 at once so the gateway stops resending. A
// forged one is refused and audited; nothing moves. Anything that fails
// after the verification is answered 500, so the gateway sends it again
// (and the saga's queries are the backstop).
func (p *public) notify(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	n, err := p.verifier.ParseNotification(r.PostForm)
	if err != nil {
		p.audit.refused(r.Context(), refusedEvent{code: "forged_notification", reason: err.Error(), remote: r.RemoteAddr, path: r.URL.Path})
		p.log.Warn("notification refused", zap.String("remote", r.RemoteAddr), zap.Error(err))
		http.Error(w, "refused", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	wfID, err := p.lookup.workflowOfOrder(ctx, n.OrderID)
	if errors.Is(err, store.ErrNotFound) {
		p.audit.refused(r.Context(), refusedEvent{code: "unknown_order", reason: "notification for order " + n.OrderID + ", which GridPay never made",
			remote: r.RemoteAddr, path: r.URL.Path})
		// Verified but not ours to act on: acknowledge so it stops.
		w.WriteHeader(http.StatusOK)
		return
	}
	if err == nil {
		err = p.signal(ctx, wfID, n)
	}
	if err != nil {
		p.log.Error("notification not delivered to its payment", zap.String("order_id", n.OrderID), zap.Error(err))
		http.Error(w, "try again", http.StatusInternalServerError)
		return
	}
	p.log.Info("notification", zap.String("order_id", n.OrderID), zap.String("txn_type", n.TxnType),
		zap.String("outcome", n.Outcome.String()), zap.String("workflow_id", wfID))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, "ok")
}

// payPage serves /pay/<customer>/<key>?t=<mac>: the signed consume form of
// that payment, which the browser submits to UnionPay's pay page.
func (p *public) payPage(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/pay/"), "/")
	if len(parts) != 2 || !p.links.valid(parts[0], parts[1], r.URL.Query().Get("t")) {
		p.audit.refused(r.Context(), refusedEvent{code: "bad_pay_link", reason: "pay link with a wrong or missing token", remote: r.RemoteAddr, path: "/pay/…"})
		http.Error(w, "this payment link is not valid", http.StatusForbidden)
		return
	}
	st, err := p.payments.Status(r.Context(), parts[0], parts[1])
	switch {
	case errors.Is(err, ErrNoPayment):
		http.Error(w, "no such payment", http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, "service unavailable, please try again", http.StatusServiceUnavailable)
		return
	case st.Order == nil || st.Status != string(store.PaymentAwaiting):
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = pageTmpl.Execute(w, pageData{Title: "GridPay", Message: "This payment is " + strings.ReplaceAll(st.Status, "_", " ") + ": there is nothing to pay here."})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(st.Order.Form.HTML())
}

// returned is where the browser lands after paying. The fields it brings
// are informative only: the payment's outcome comes from the verified back
// notification or a query.
func (p *public) returned(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pageTmpl.Execute(w, pageData{Title: "GridPay",
		Message: "Thank you. You can close this window: the GridPay client shows the payment's status as soon as UnionPay confirms it."})
}

type pageData struct{ Title, Message string }

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto"><h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>
`))

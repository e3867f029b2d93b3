package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/workflows"
)

// Loads starts load sagas and delivers the keys' reports to them;
// temporalLoads is the real one.
type Loads interface {
	// Start starts (or joins) the load workflow of in and waits for its
	// allow. A load refused before the debit is an error whose
	// *temporal.ApplicationError type says why.
	Start(ctx context.Context, in workflows.LoadInput) (workflows.AllowAnswer, error)
	// Report delivers a key's report to a running load and returns where
	// it stands; ErrLoadClosed if the workflow is not running.
	Report(ctx context.Context, workflowID string, in workflows.ReportInput) (workflows.LoadOutcome, error)
}

// LoadRecords reads GridPay's load records; store.Loads is one.
type LoadRecords interface {
	OpenLoads(ctx context.Context, tokenSerial string) ([]store.Load, error)
	LoadByWorkflowID(ctx context.Context, workflowID string) (store.Load, error)
	LastConfirmedLoad(ctx context.Context, tokenSerial string) (store.Load, error)
	LoadsForCustomer(ctx context.Context, customerID string) ([]store.Load, error)
}

// loadRecordsOf is the load records in GridPay's database.
func loadRecordsOf(db *store.DB) LoadRecords { return store.Loads{DB: db} }

// ErrLoadClosed means no running load workflow has that ID.
var ErrLoadClosed = errors.New("no running load")

// loadBackend is what the load API needs beside the Server's own
// dependencies.
type loadBackend struct {
	loads   Loads
	records LoadRecords
	timing  workflows.LoadTiming
}

// EnableLoads makes the server serve the load API (api.PathLoads,
// api.PathLoadReports) with these backends; timing goes to every load.
// Call it before the server serves.
func (s *Server) EnableLoads(l Loads, r LoadRecords, timing workflows.LoadTiming) {
	s.loads = &loadBackend{loads: l, records: r, timing: timing}
}

func (s *Server) loadBackend(w http.ResponseWriter, r *http.Request) (*loadBackend, bool) {
	if s.loads != nil {
		return s.loads, true
	}
	s.fail(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, "loads are not available on this gateway")
	return nil, false
}

// startLoad starts a load from the key-signed request (POST
// api.PathLoads) and answers the HSM-signed allow. The request must be the
// authenticated key's: its customer, token and certificate are those of
// the client certificate. The same request again (a retry after a lost
// answer) reaches the same workflow and gets the same allow.
func (s *Server) startLoad(w http.ResponseWriter, r *http.Request, p *principal, _ string) {
	b, ok := s.loadBackend(w, r)
	if !ok {
		return
	}
	if _, err := query(r); err != nil {
		s.badRequest(w, r, err)
		return
	}
	var req api.LoadRequest
	if !s.decodeJSON(w, r, &req) {
		return
	}
	lr, err := protocol.VerifyLoadRequest(p.cert, req.Request, req.Signature)
	if err != nil {
		s.refuse(w, r, refusal{status: http.StatusBadRequest, code: api.CodeInvalidRequest,
			message: "the load request is not valid: " + err.Error(), reason: "load request refused: " + err.Error()})
		return
	}
	if lr.CustomerID != p.id.CustomerID || lr.TokenSerial != p.id.TokenSerial || lr.CertSerial != p.serial {
		s.refuse(w, r, refusal{status: http.StatusForbidden, code: api.CodeInvalidRequest,
			message: "the load request was signed for another customer or key",
			reason:  fmt.Sprintf("load request for customer %s token %s cert %s", lr.CustomerID, lr.TokenSerial, lr.CertSerial)})
		return
	}
	in := workflows.LoadInput{CustomerID: lr.CustomerID, TokenSerial: lr.TokenSerial, CertSerial: lr.CertSerial, Sequence: lr.Sequence,
		Amount: lr.Amount, Request: req.Request, Signature: req.Signature, Timing: b.timing}
	if err := in.Validate(); err != nil {
		s.refuse(w, r, refusal{status: http.StatusBadRequest, code: api.CodeInvalidRequest, message: err.Error(), reason: "load input: " + err.Error()})
		return
	}
	allow, err := b.loads.Start(r.Context(), in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		// The load of this sequence has ended: the sequence is spent.
		msg := fmt.Sprintf("sequence %d of this USB key was used before", lr.Sequence)
		if rec, rerr := b.records.LoadByWorkflowID(r.Context(), workflows.LoadWorkflowID(lr.TokenSerial, lr.Sequence)); rerr == nil {
			msg += fmt.Sprintf(" (load %s, %s)", rec.LoadID, rec.Status)
		}
		s.refuse(w, r, refusal{status: http.StatusConflict, code: api.CodeSequenceUsed, message: msg + "; sign a new request",
			reason: "replayed load request: " + msg})
		return
	}
	if err != nil {
		s.loadFailed(w, r, err, "the load could not be started; send the same request again (it will not be debited twice)")
		return
	}
	s.log.Info("load allowed", zap.String("request_id", stateOf(r).id), zap.String("customer_id", p.id.CustomerID),
		zap.String("token_serial", p.id.TokenSerial), zap.String("workflow_id", allow.WorkflowID), zap.Int64("amount_fen", int64(allow.Amount)))
	s.writeJSON(w, r, http.StatusOK, api.LoadAllow{LoadID: allow.LoadID, Sequence: allow.Sequence, Amount: allow.Amount, NewBalance: allow.NewBalance,
		Allow: allow.Allow, Signature: allow.Signature, Chain: allow.Chain, Expires: allow.Expires, Status: allow.Status})
}

// loadFailed answers a load the saga refused, or could not reach.
func (s *Server) loadFailed(w http.ResponseWriter, r *http.Request, err error, unavailable string) {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		rf := refusal{status: http.StatusUnprocessableEntity, code: api.CodeInvalidRequest, message: appErr.Message(),
			reason: "load refused (" + appErr.Type() + "): " + appErr.Message()}
		switch appErr.Type() {
		case workflows.ErrTypeUnavailable:
			s.fail(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, appErr.Message())
			return
		case activities.ErrTypeNotBound, activities.ErrTypeRevoked, workflows.ErrTypeTokenUnbound:
			rf.status, rf.code = http.StatusForbidden, api.CodeNotBound
		case activities.ErrTypeLoadReplay:
			rf.status, rf.code = http.StatusConflict, api.CodeSequenceUsed
		case activities.ErrTypeLoadPending:
			rf.status, rf.code = http.StatusConflict, api.CodeLoadPending
		case activities.ErrTypeDebitRefused, activities.ErrTypeLoadAmount, activities.ErrTypeWalletMismatch,
			activities.ErrTypeAccountMismatch, activities.ErrTypeUnknownCustomer:
			rf.code = api.CodeLoadRefused
		case activities.ErrTypeBadLoadReport, activities.ErrTypeBadLoadRequest, activities.ErrTypeStaleLoadRequest:
			rf.status = http.StatusBadRequest
		}
		s.refuse(w, r, rf)
		return
	}
	s.log.Error("load saga unreachable", zap.String("request_id", stateOf(r).id), zap.Error(err))
	s.fail(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, unavailable)
}

// loadReport delivers a key's signed report (POST api.PathLoadReports): a
// receipt or error report to its load, a state report to every load of
// the key in flight. It answers where those loads stand and the wallet
// GridPay last confirmed for the key.
func (s *Server) loadReport(w http.ResponseWriter, r *http.Request, p *principal, _ string) {
	b, ok := s.loadBackend(w, r)
	if !ok {
		return
	}
	if _, err := query(r); err != nil {
		s.badRequest(w, r, err)
		return
	}
	var req api.LoadReport
	if !s.decodeJSON(w, r, &req) {
		return
	}
	rep, err := protocol.VerifyLoadReport(p.cert, req.Report, req.Signature)
	if err != nil {
		s.refuse(w, r, refusal{status: http.StatusBadRequest, code: api.CodeInvalidRequest,
			message: "the load report is not valid: " + err.Error(), reason: "load report refused: " + err.Error()})
		return
	}
	if rep.TokenSerial != p.id.TokenSerial || rep.CertSerial != p.serial {
		s.refuse(w, r, refusal{status: http.StatusForbidden, code: api.CodeInvalidRequest, message: "the load report was signed for another key",
			reason: fmt.Sprintf("load report for token %s cert %s", rep.TokenSerial, rep.CertSerial)})
		return
	}
	in := workflows.ReportInput{CustomerID: p.id.CustomerID, TokenSerial: p.id.TokenSerial, CertSerial: p.serial, Report: req.Report, Signature: req.Signature}
	var targets []string
	if rep.Kind == protocol.ReportState {
		open, err := b.records.OpenLoads(r.Context(), p.id.TokenSerial)
		if err != nil {
			s.log.Error("listing the key's loads", zap.String("request_id", stateOf(r).id), zap.Error(err))
			s.fail(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, msgUnavailable)
			return
		}
		for _, l := range open {
			targets = append(targets, l.WorkflowID)
		}
	} else {
		targets = []string{workflows.LoadWorkflowID(rep.TokenSerial, rep.LoadSequence)}
	}
	answer := api.LoadReportAnswer{Loads: []api.LoadStatus{}}
	for _, id := range targets {
		out, err := b.loads.Report(r.Context(), id, in)
		switch {
		case errors.Is(err, ErrLoadClosed):
			rec, rerr := b.records.LoadByWorkflowID(r.Context(), id)
			if errors.Is(rerr, store.ErrNotFound) {
				s.fail(w, r, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("this USB key has no load %d", rep.LoadSequence))
				return
			}
			if rerr != nil {
				s.log.Error("reading a load", zap.String("request_id", stateOf(r).id), zap.Error(rerr))
				s.fail(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, msgUnavailable)
				return
			}
			answer.Loads = append(answer.Loads, loadStatusOf(rec))
		case err != nil:
			s.loadFailed(w, r, err, "the report could not be delivered; it is sent again at the next session")
			return
		default:
			answer.Loads = append(answer.Loads, api.LoadStatus{LoadID: out.LoadID, Sequence: out.Sequence, Amount: out.Amount, Status: out.Status,
				Reason: out.Reason, Expires: out.Expires, Final: out.Final})
		}
	}
	if last, err := b.records.LastConfirmedLoad(r.Context(), p.id.TokenSerial); err == nil && last.NewBalance != nil {
		answer.Confirmed = &api.WalletRecord{Sequence: last.Sequence, LoadID: last.LoadID, Balance: money.Fen(*last.NewBalance)}
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Warn("reading the key's last load", zap.String("request_id", stateOf(r).id), zap.Error(err))
	}
	s.writeJSON(w, r, http.StatusOK, answer)
}

// loadHistory answers the authenticated customer's loads (GET
// api.PathLoads), those of every key the customer has had.
func (s *Server) loadHistory(w http.ResponseWriter, r *http.Request, p *principal, _ string) {
	b, ok := s.loadBackend(w, r)
	if !ok {
		return
	}
	recs, err := b.records.LoadsForCustomer(r.Context(), p.id.CustomerID)
	if err != nil {
		s.log.Error("listing the customer's loads", zap.String("request_id", stateOf(r).id), zap.Error(err))
		s.fail(w, r, http.StatusServiceUnavailable, api.CodeUnavailable, msgUnavailable)
		return
	}
	list := api.LoadList{Items: make([]api.LoadRecord, 0, len(recs))}
	for _, l := range recs {
		item := api.LoadRecord{LoadID: l.LoadID, TokenSerial: l.TokenSerial, Sequence: l.Sequence, Amount: money.Fen(l.Amount),
			Status: string(l.Status), ConfirmedBy: l.ConfirmedBy, Reason: l.Reason, Created: l.CreatedAt, Expires: l.AllowExpiresAt}
		switch {
		case l.ConfirmedAt != nil:
			item.Settled = l.ConfirmedAt
		case l.RefundedAt != nil:
			item.Settled = l.RefundedAt
		}
		list.Items = append(list.Items, item)
	}
	s.writeJSON(w, r, http.StatusOK, list)
}

// loadStatusOf renders a load's record.
func loadStatusOf(l store.Load) api.LoadStatus {
	return api.LoadStatus{LoadID: l.LoadID, Sequence: l.Sequence, Amount: money.Fen(l.Amount), Status: string(l.Status), Reason: l.Reason,
		Expires: l.AllowExpiresAt, Final: l.Status.Final()}
}

// temporalLoads starts load workflows and delivers reports on Temporal.
type temporalLoads struct {
	tc        client.Client
	taskQueue string
}

func (t temporalLoads) Start(ctx context.Context, in workflows.LoadInput) (workflows.AllowAnswer, error) {
	start := t.tc.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID:                       workflows.LoadWorkflowID(in.TokenSerial, in.Sequence),
		TaskQueue:                t.taskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, workflows.Load, in)
	h, err := t.tc.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateName: workflows.UpdateAllow, Args: []any{in.AllowRequest()}, WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err != nil {
		return workflows.AllowAnswer{}, err
	}
	var a workflows.AllowAnswer
	err = h.Get(ctx, &a)
	return a, err
}

func (t temporalLoads) Report(ctx context.Context, workflowID string, in workflows.ReportInput) (workflows.LoadOutcome, error) {
	h, err := t.tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: workflowID, UpdateName: workflows.UpdateReport, Args: []any{in}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return workflows.LoadOutcome{}, fmt.Errorf("%w: %s", ErrLoadClosed, workflowID)
	}
	if err != nil {
		return workflows.LoadOutcome{}, err
	}
	var out workflows.LoadOutcome
	err = h.Get(ctx, &out)
	if errors.As(err, &nf) {
		return workflows.LoadOutcome{}, fmt.Errorf("%w: %s", ErrLoadClosed, workflowID)
	}
	return out, err
}

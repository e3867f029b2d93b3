package activities

import (
	"context"
	"fmt"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
)

// SignalTokenUnbound is the signal every workflow acting for a token
// receives when the token is unbound: it must stop and compensate.
const SignalTokenUnbound = "token-unbound"

// Tokens is the activities that reach the workflows of a token.
type Tokens struct {
	Temporal client.Client
}

// StopRequest names the token whose workflows must stop.
type StopRequest struct {
	TokenSerial string `json:"token_serial"`
	Reason      string `json:"reason"`
}

// StopTokenWorkflows signals every running workflow of the token (found by
// its TokenSerial search attribute) except the caller, and returns how many
// it reached. A workflow that closed meanwhile is skipped.
func (a *Tokens) StopTokenWorkflows(ctx context.Context, req StopRequest) (int, error) {
	self := activity.GetInfo(ctx).WorkflowExecution.ID
	query := fmt.Sprintf("TokenSerial = %q AND ExecutionStatus = 'Running'", req.TokenSerial)
	var next []byte
	n := 0
	for {
		resp, err := a.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: next})
		if err != nil {
			return n, err
		}
		for _, ex := range resp.Executions {
			id := ex.Execution.WorkflowId
			if id == self {
				continue
			}
			err := a.Temporal.SignalWorkflow(ctx, id, ex.Execution.RunId, SignalTokenUnbound, req.Reason)
			if _, closed := err.(*serviceerror.NotFound); closed {
				continue
			}
			if err != nil {
				return n, err
			}
			n++
		}
		next = resp.NextPageToken
		if len(next) == 0 {
			return n, nil
		}
	}
}

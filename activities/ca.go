// Package activities holds the Temporal activities: structs whose fields are
// their dependencies, declared here as the small interfaces the activities
// need and satisfied by the real adapters (HSM, PostgreSQL, platform,
// payment gateway) in the programs and by fakes in tests.
package activities

import (
	"context"

	"go.temporal.io/sdk/activity"

	"github.com/gridpay/gridpay/authority"
)

// CRLPublisher signs and publishes the CRLs; *authority.Authority is one.
type CRLPublisher interface {
	PublishCRLs(ctx context.Context, actor string) ([]authority.CRLInfo, error)
}

// CA is the activities of the certificate authority.
type CA struct {
	Publisher CRLPublisher
}

// PublishCRLs signs a fresh CRL for each CA with the HSM, records and
// exports them. Running it twice publishes twice, which is harmless: each
// CRL carries a higher number and supersedes the previous one.
func (a *CA) PublishCRLs(ctx context.Context) ([]authority.CRLInfo, error) {
	info := activity.GetInfo(ctx)
	return a.Publisher.PublishCRLs(ctx, "workflow:"+info.WorkflowExecution.ID)
}

package main

import (
	"context"

	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/internal/app"
	"github.com/gridpay/gridpay/platform"
)

// newPlatformClient connects to the platform as the gateway.
func newPlatformClient(ctx context.Context, cfg config.Gateway, keys authority.Keys, trust *authority.Trust) (platform.Service, error) {
	return app.PlatformClient(ctx, cfg.Platform, keys, trust, "gateway")
}

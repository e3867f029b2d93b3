// Package logging builds GridPay's zap loggers and adapts them for the
// Temporal SDK, so that every process writes one structured stream.
//
// Stable field keys are used across programs (see the Key constants); PINs,
// keys, signature inputs and card numbers are never logged.
package logging

import (
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Stable field keys, shared by every program so that logs can be searched.
const (
	KeyCustomerID  = "customer_id"
	KeyTokenSerial = "token_serial"
	KeyWorkflowID  = "workflow_id"
	KeyCertSerial  = "cert_serial"
	KeyComponent   = "component"
)

// New returns a logger writing JSON (format "json", for production) or
// human-readable console lines (format "console", for development) to
// standard error at the given level.
func New(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.TimeKey = "ts"
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
		cfg.DisableStacktrace = true
	default:
		return nil, fmt.Errorf("log.format: %q is not json or console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.OutputPaths = []string{"stderr"}
	cfg.ErrorOutputPaths = []string{"stderr"}
	return cfg.Build()
}

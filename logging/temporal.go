package logging

import (
	"fmt"

	"go.temporal.io/sdk/log"
	"go.uber.org/zap"
)

// Temporal adapts a zap logger to the Temporal SDK's logger interface, so the
// SDK's own messages (worker start, activity retries, workflow panics) land in
// the same structured stream as ours.
func Temporal(z *zap.Logger) log.Logger {
	// One extra frame for the adapter method itself.
	return &temporalLogger{z: z.WithOptions(zap.AddCallerSkip(1))}
}

type temporalLogger struct{ z *zap.Logger }

var (
	_ log.Logger          = (*temporalLogger)(nil)
	_ log.WithLogger      = (*temporalLogger)(nil)
	_ log.WithSkipCallers = (*temporalLogger)(nil)
)

func (l *temporalLogger) Debug(msg string, kv ...any) { l.z.Debug(msg, fields(kv)...) }
func (l *temporalLogger) Info(msg string, kv ...any)  { l.z.Info(msg, fields(kv)...) }
func (l *temporalLogger) Warn(msg string, kv ...any)  { l.z.Warn(msg, fields(kv)...) }
func (l *temporalLogger) Error(msg string, kv ...any) { l.z.Error(msg, fields(kv)...) }

func (l *temporalLogger) With(kv ...any) log.Logger {
	return &temporalLogger{z: l.z.With(fields(kv)...)}
}

func (l *temporalLogger) WithCallerSkip(n int) log.Logger {
	return &temporalLogger{z: l.z.WithOptions(zap.AddCallerSkip(n))}
}

// fields turns the SDK's alternating key/value list into zap fields. A key
// that is not a string, or a trailing key without a value, is kept under a
// visible name rather than dropped.
func fields(kv []any) []zap.Field {
	out := make([]zap.Field, 0, (len(kv)+1)/2)
	for i := 0; i < len(kv); i += 2 {
		key, ok := kv[i].(string)
		if !ok {
			key = fmt.Sprintf("!badkey(%v)", kv[i])
		}
		if i+1 >= len(kv) {
			out = append(out, zap.Any(key, "!missing"))
			break
		}
		if err, ok := kv[i+1].(error); ok {
			out = append(out, zap.NamedError(key, err))
			continue
		}
		out = append(out, zap.Any(key, kv[i+1]))
	}
	return out
}

package testenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

// TemporalCLIVersion is the pinned Temporal CLI that `make tools` builds from
// the Go module proxy into .tools/bin (the SDK's own download is not
// reachable from the build machines).
const TemporalCLIVersion = "v1.5.1"

// TemporalCLI returns the path of the pinned Temporal CLI: $GRIDPAY_TEMPORAL_CLI
// or <repo>/.tools/bin/temporal.
func TemporalCLI() (string, error) {
	if p := os.Getenv("GRIDPAY_TEMPORAL_CLI"); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ".tools", "bin", "temporal")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("testenv: Temporal CLI %s not found at %s: run `make tools`", TemporalCLIVersion, p)
	}
	return p, nil
}

// Temporal is a running Temporal dev server (in-memory SQLite unless a file
// is given) on a free loopback port.
type Temporal struct {
	server    *testsuite.DevServer
	namespace string

	mu    sync.Mutex
	coded client.Client // the server's client with the codec, once UseCodec was called
}

// TemporalOptions tunes StartTemporal.
type TemporalOptions struct {
	// Namespace to register; "default" when empty.
	Namespace string
	// SearchAttributes to register at start.
	SearchAttributes temporal.SearchAttributes
	// DBFile persists the server's state; empty keeps it in memory.
	DBFile string
	// Log receives the server's output; discarded when nil.
	Log io.Writer
}

// StartTemporal starts the pinned Temporal CLI's dev server and waits until
// it answers. The dev server also binds a few ports next to its frontend
// port; if another process took one meanwhile it exits, so a failed start
// is retried on another port (three attempts in all), and the last
// attempt's output is part of the error.
func StartTemporal(ctx context.Context, opts TemporalOptions) (*Temporal, error) {
	var lastErr error
	for range 3 {
		t, err := startTemporalOnce(ctx, opts)
		if err == nil {
			return t, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func startTemporalOnce(ctx context.Context, opts TemporalOptions) (*Temporal, error) {
	cli, err := TemporalCLI()
	if err != nil {
		return nil, err
	}
	ns := opts.Namespace
	if ns == "" {
		ns = "default"
	}
	var captured lockedBuffer
	var out io.Writer = &captured
	if opts.Log != nil {
		out = io.MultiWriter(opts.Log, &captured)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:     cli,
		ClientOptions:    &client.Options{Namespace: ns, HostPort: fmt.Sprintf("127.0.0.1:%d", port)},
		DBFilename:       opts.DBFile,
		LogLevel:         "warn",
		SearchAttributes: opts.SearchAttributes,
		Stdout:           out,
		Stderr:           out,
	})
	if err != nil {
		return nil, fmt.Errorf("testenv: starting Temporal dev server (%s) on port %d: %w\n%s", cli, port, err, captured.tail(2000))
	}
	return &Temporal{server: srv, namespace: ns}, nil
}

// lockedBuffer collects a child's output for error messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 1<<20 {
		b.buf = b.buf[len(b.buf)-(1<<19):]
	}
	return len(p), nil
}

func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf) > n {
		return string(b.buf[len(b.buf)-n:])
	}
	return string(b.buf)
}

// Address is the frontend's host:port.
func (t *Temporal) Address() string { return t.server.FrontendHostPort() }

// Client is a client connected to the server's namespace; after UseCodec,
// one that encrypts and decrypts payloads as GridPay's programs do.
func (t *Temporal) Client() client.Client {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.coded != nil {
		return t.coded
	}
	return t.server.Client()
}

// Codec is the payload codec as GridPay's programs use it (*codec.Codec).
type Codec interface {
	converter.PayloadCodec
	DataConverter() converter.DataConverter
	FailureConverter() converter.FailureConverter
}

// UseCodec makes Client return a client with c's data and failure
// converters (the same as app.DialTemporal's), for tests that talk to
// workflows run by GridPay's programs. RecordHistory decrypts the histories
// it reads through such a client.
func (t *Temporal) UseCodec(c Codec) error {
	tc, err := client.NewClientFromExisting(t.server.Client(), client.Options{
		Namespace: t.namespace, DataConverter: c.DataConverter(), FailureConverter: c.FailureConverter(),
	})
	if err != nil {
		return fmt.Errorf("testenv: UseCodec: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.coded != nil {
		clientCodecs.Delete(t.coded)
		t.coded.Close()
	}
	t.coded = tc
	clientCodecs.Store(tc, converter.PayloadCodec(c))
	return nil
}

// clientCodecs maps the clients UseCodec made to their codec, for
// RecordHistory. (A wrapper type would do, but worker.New accepts only
// the SDK's own client type.)
var clientCodecs sync.Map

// Stop stops the server.
func (t *Temporal) Stop() error {
	t.mu.Lock()
	if t.coded != nil {
		clientCodecs.Delete(t.coded)
		t.coded.Close()
		t.coded = nil
	}
	t.mu.Unlock()
	return t.server.Stop()
}

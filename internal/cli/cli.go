// Package cli holds what GridPay's command-line programs share: exit codes,
// --json output, progress indication for anything that waits, and the
// mapping from errors to exit codes.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"
)

// Exit codes, the same in every program and documented in each --help.
const (
	ExitOK          = 0
	ExitError       = 1 // anything not listed below
	ExitUsage       = 2 // bad flags or arguments
	ExitConfig      = 3 // configuration missing or invalid
	ExitAuth        = 4 // authentication failed: wrong PIN, locked, certificate refused
	ExitNotFound    = 5 // the thing asked for does not exist
	ExitUnavailable = 6 // a service (database, Temporal, HSM, gateway) cannot be reached
	ExitConflict    = 7 // refused because of the current state (already bound, already exists)
)

// ExitCodesHelp is appended to every program's --help.
const ExitCodesHelp = `Exit codes:
  0  success
  1  error
  2  usage: bad flags or arguments
  3  configuration missing or invalid
  4  authentication failed (wrong PIN, locked token, certificate refused)
  5  not found
  6  service unavailable (database, Temporal, HSM or gateway)
  7  conflict with the current state (already exists, already bound)`

// Error carries an exit code with an error message meant for the user.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// WithCode attaches an exit code to err (nil stays nil).
func WithCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// Classifier maps an error to an exit code; programs register theirs for the
// packages they use (hsm, store, config...).
type Classifier func(error) (code int, ok bool)

var (
	classifiersMu sync.Mutex
	classifiers   []Classifier
)

// RegisterClassifier adds a mapping consulted by ExitCode.
func RegisterClassifier(c Classifier) {
	classifiersMu.Lock()
	defer classifiersMu.Unlock()
	classifiers = append(classifiers, c)
}

// ExitCode returns the exit code for err.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	classifiersMu.Lock()
	defer classifiersMu.Unlock()
	for _, c := range classifiers {
		if code, ok := c(err); ok {
			return code
		}
	}
	return ExitError
}

// Output prints either human-readable text or JSON, as --json asks.
type Output struct {
	JSON bool
	W    io.Writer
}

// Print writes v as indented JSON when JSON output is on, else calls human.
func (o Output) Print(v any, human func(w io.Writer)) error {
	if o.JSON {
		enc := json.NewEncoder(o.W)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	human(o.W)
	return nil
}

// Progress shows that something is waiting: a spinner on a terminal, and a
// single line otherwise (logs and CI stay readable). Always written to stderr
// so that --json output on stdout stays clean.
type Progress struct {
	stop chan struct{}
	done chan struct{}
	msg  string
	w    io.Writer
	tty  bool
	t0   time.Time
}

// StartProgress begins showing msg until Done is called.
func StartProgress(msg string) *Progress {
	p := &Progress{stop: make(chan struct{}), done: make(chan struct{}), msg: msg, w: os.Stderr,
		tty: term.IsTerminal(int(os.Stderr.Fd())), t0: time.Now()}
	if !p.tty {
		fmt.Fprintf(p.w, "%s ...\n", msg)
		close(p.done)
		return p
	}
	go p.spin()
	return p
}

func (p *Progress) spin() {
	defer close(p.done)
	frames := `|/-\`
	tick := time.NewTicker(150 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		fmt.Fprintf(p.w, "\r%c %s (%ds)", frames[i%len(frames)], p.msg, int(time.Since(p.t0).Seconds()))
		select {
		case <-p.stop:
			fmt.Fprint(p.w, "\r\033[K")
			return
		case <-tick.C:
		}
	}
}

// Done stops the indicator and prints the outcome line.
func (p *Progress) Done(outcome string) {
	if p.tty {
		close(p.stop)
	}
	<-p.done
	fmt.Fprintf(p.w, "%s: %s (%.1fs)\n", p.msg, outcome, time.Since(p.t0).Seconds())
}

// Main runs a program's root command with a context cancelled by SIGINT or
// SIGTERM, prints an error as "name: message" on stderr, and exits with the
// error's exit code.
func Main(name string, root interface {
	ExecuteContext(ctx context.Context) error
}) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	}
	os.Exit(ExitCode(err))
}

package hsm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"
)

// PINSource says where a PIN comes from: a file, an environment variable or
// an interactive prompt. It never holds the PIN itself, so it can sit in
// configuration and be printed.
//
// The zero PINSource prompts when stdin is a terminal and otherwise fails
// with ErrNoPINSource: it never waits for input that cannot come (CI).
type PINSource struct {
	kind   pinKind
	value  string // file path or variable name
	prompt string
}

type pinKind int

const (
	pinUnset pinKind = iota
	pinFile
	pinEnv
	pinPrompt
)

// maxPINFile bounds what is read from a PIN file: a PIN is short, and a
// large file is a mistake (a key, a certificate) that must not be sent.
const maxPINFile = 1024

// PINFromFile reads the PIN from path. The trailing newline (LF or CRLF) is
// removed. A file that others may read or write (mode o+r or o+w) is
// refused: group access is allowed so that a service group can share it.
func PINFromFile(path string) PINSource { return PINSource{kind: pinFile, value: path} }

// PINFromEnv reads the PIN from the environment variable name. Go strings
// cannot be zeroed, so prefer a file where the environment might leak.
func PINFromEnv(name string) PINSource { return PINSource{kind: pinEnv, value: name} }

// PINFromPrompt asks on the terminal, without echo.
func PINFromPrompt() PINSource { return PINSource{kind: pinPrompt} }

// ParsePINSource parses "file:/path" (or "file:///path"), "env:NAME" or
// "prompt". The empty string gives the zero PINSource.
func ParsePINSource(s string) (PINSource, error) {
	kind, rest, _ := strings.Cut(s, ":")
	switch {
	case s == "":
		return PINSource{}, nil
	case s == "prompt":
		return PINFromPrompt(), nil
	case kind == "file":
		if strings.HasPrefix(rest, "//") {
			rest = rest[2:] // file:///path: empty authority
		}
		if rest == "" {
			return PINSource{}, errors.New("pin source file: has no file name")
		}
		return PINFromFile(rest), nil
	case kind == "env":
		if rest == "" || strings.ContainsAny(rest, "= \t") {
			return PINSource{}, errors.New("pin source env: has a bad variable name")
		}
		return PINFromEnv(rest), nil
	}
	// The value is not echoed: it might be a PIN typed in the wrong place.
	return PINSource{}, errors.New("pin source must be file:/path, env:NAME or prompt")
}

// WithPrompt sets the text shown when the PIN is asked for interactively.
func (p PINSource) WithPrompt(text string) PINSource {
	p.prompt = text
	return p
}

// IsZero reports whether no source was configured.
func (p PINSource) IsZero() bool { return p.kind == pinUnset }

// String is the form ParsePINSource reads ("" for the zero PINSource).
func (p PINSource) String() string {
	switch p.kind {
	case pinFile:
		return "file:" + p.value
	case pinEnv:
		return "env:" + p.value
	case pinPrompt:
		return "prompt"
	}
	return ""
}

// Terminal access, replaced by tests.
var (
	stdinFD                = func() int { return int(os.Stdin.Fd()) }
	isTerminal             = term.IsTerminal
	readPassword           = term.ReadPassword
	promptOut    io.Writer = os.Stderr
)

// Read returns the PIN. The caller should Zero it after use. Errors name
// the source, never the PIN.
func (p PINSource) Read() ([]byte, error) {
	switch p.kind {
	case pinFile:
		return readPINFile(p.value)
	case pinEnv:
		v, ok := os.LookupEnv(p.value)
		if !ok || v == "" {
			return nil, fmt.Errorf("%w: environment variable %s is not set or empty", ErrNoPINSource, p.value)
		}
		return []byte(v), nil
	}
	fd := stdinFD()
	if !isTerminal(fd) {
		if p.kind == pinPrompt {
			return nil, fmt.Errorf("%w: pin-source is prompt but stdin is not a terminal", ErrNoPINSource)
		}
		return nil, fmt.Errorf("%w configured and stdin is not a terminal", ErrNoPINSource)
	}
	prompt := p.prompt
	if prompt == "" {
		prompt = "PIN: "
	}
	fmt.Fprint(promptOut, prompt)
	pin, err := readPassword(fd)
	fmt.Fprintln(promptOut)
	if err != nil {
		Zero(pin)
		return nil, fmt.Errorf("reading PIN from terminal: %w", err)
	}
	if len(pin) == 0 {
		return nil, errors.New("empty PIN entered")
	}
	return pin, nil
}

func readPINFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("PIN file: %w", err)
	}
	defer f.Close()
	// Stat the open file, not the name, so the check and the read concern
	// the same file.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("PIN file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("PIN file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o007 != 0 {
		return nil, fmt.Errorf("PIN file %s has mode %04o, open to other users; run chmod o-rwx %s", path, perm, filepath.Clean(path))
	}
	buf := make([]byte, maxPINFile+1)
	defer Zero(buf)
	n := 0
	for n < len(buf) {
		m, err := f.Read(buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("PIN file %s: %w", path, err)
		}
	}
	if n > maxPINFile {
		return nil, fmt.Errorf("PIN file %s is larger than %d bytes; is it the right file?", path, maxPINFile)
	}
	for n > 0 && (buf[n-1] == '\n' || buf[n-1] == '\r') {
		n--
	}
	if n == 0 {
		return nil, fmt.Errorf("PIN file %s is empty", path)
	}
	pin := make([]byte, n)
	copy(pin, buf[:n])
	return pin, nil
}

// Zero overwrites b, for PINs once they have been used.
func Zero(b []byte) {
	clear(b)
}

package pinlock

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/gridpay/gridpay/internal/derrors"
)

// Local is the state directory of one computer: a mirror of each key's
// record and the append-only log of wrong PINs.
//
//	<dir>/tokens/<serial>.json   the Record of the key with that serial
//	<dir>/pin-failures.jsonl     one Event per line, appended, never rewritten
//
// The directory is created with mode 0700, files with 0600.
type Local struct {
	dir string
}

// EventsFile is the name of the log in the state directory.
const EventsFile = "pin-failures.jsonl"

// OpenLocal uses dir (created if missing) as the state directory. A leading
// "~/" is the user's home directory.
func OpenLocal(dir string) (_ *Local, err error) {
	defer derrors.Wrap(&err, "pinlock.OpenLocal(%q)", dir)
	dir, err = ExpandHome(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		return nil, err
	}
	return &Local{dir: dir}, nil
}

// ExpandHome replaces a leading "~" or "~/" with the user's home directory.
func ExpandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("expanding %q: %w", p, err)
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~")), nil
}

// Dir is the state directory, with "~" expanded.
func (l *Local) Dir() string { return l.dir }

var plainSerial = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// recordPath names the mirror of a key. Serials are normally hex digits;
// anything unusual is hex-encoded so it cannot escape the directory.
func (l *Local) recordPath(serial string) string {
	name := serial
	if !plainSerial.MatchString(serial) || strings.HasPrefix(serial, ".") {
		name = "x-" + hex.EncodeToString([]byte(serial))
	}
	return filepath.Join(l.dir, "tokens", name+".json")
}

// localFile is the mirror's file: the record and whose it is.
type localFile struct {
	TokenSerial string `json:"token_serial"`
	Record
}

// Record reads the mirror of the key with serial; the zero Record if there
// is none. A damaged mirror is ErrBadRecord.
func (l *Local) Record(serial string) (_ Record, err error) {
	defer derrors.Wrap(&err, "pinlock.Local.Record(%q)", serial)
	b, err := os.ReadFile(l.recordPath(serial))
	if errors.Is(err, fs.ErrNotExist) {
		return Record{Version: FormatVersion}, nil
	}
	if err != nil {
		return Record{}, err
	}
	var f localFile
	if err := json.Unmarshal(b, &f); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if f.TokenSerial != serial {
		return Record{}, fmt.Errorf("%w: file is for token %q", ErrBadRecord, f.TokenSerial)
	}
	return Decode(mustJSON(f.Record))
}

// SetRecord replaces the mirror of the key with serial, atomically.
func (l *Local) SetRecord(serial string, r Record) (err error) {
	defer derrors.Wrap(&err, "pinlock.Local.SetRecord(%q)", serial)
	r.Version = FormatVersion
	return writeFileAtomic(l.recordPath(serial), append(mustJSON(localFile{TokenSerial: serial, Record: r}), '\n'))
}

// Event is one line of the log.
type Event struct {
	// Kind is EventWrongPIN or EventReported.
	Kind        string    `json:"event"`
	At          time.Time `json:"at"`
	TokenSerial string    `json:"token_serial"`
	// Seq numbers wrong-PIN events (1, 2, …) across the whole log.
	Seq uint64 `json:"seq,omitempty"`
	// Count and Locked are the key's state after this wrong PIN.
	Count  int  `json:"count,omitempty"`
	Locked bool `json:"locked,omitempty"`
	// Through marks, in a reported event, every wrong-PIN event of that
	// token with Seq ≤ Through as reported to the gateway.
	Through uint64 `json:"through_seq,omitempty"`
}

// Kinds of Event.
const (
	EventWrongPIN = "wrong_pin"
	EventReported = "reported"
)

// RecordFailure appends a wrong-PIN event and returns it with its Seq.
func (l *Local) RecordFailure(serial string, count int, locked bool, at time.Time) (_ Event, err error) {
	defer derrors.Wrap(&err, "pinlock.Local.RecordFailure(%q)", serial)
	events, err := l.Events()
	if err != nil {
		return Event{}, err
	}
	var last uint64
	for _, e := range events {
		last = max(last, e.Seq, e.Through)
	}
	e := Event{Kind: EventWrongPIN, At: at.UTC(), TokenSerial: serial, Seq: last + 1, Count: count, Locked: locked}
	return e, l.appendEvent(e)
}

// Unreported lists the wrong-PIN events of the key with serial that no
// reported event covers yet, oldest first.
func (l *Local) Unreported(serial string) (_ []Event, err error) {
	defer derrors.Wrap(&err, "pinlock.Local.Unreported(%q)", serial)
	events, err := l.Events()
	if err != nil {
		return nil, err
	}
	var through uint64
	for _, e := range events {
		if e.Kind == EventReported && e.TokenSerial == serial {
			through = max(through, e.Through)
		}
	}
	var out []Event
	for _, e := range events {
		if e.Kind == EventWrongPIN && e.TokenSerial == serial && e.Seq > through {
			out = append(out, e)
		}
	}
	return out, nil
}

// MarkReported appends a reported event covering the key's wrong-PIN events
// up to and including Seq through.
func (l *Local) MarkReported(serial string, through uint64, at time.Time) (err error) {
	defer derrors.Wrap(&err, "pinlock.Local.MarkReported(%q, %d)", serial, through)
	return l.appendEvent(Event{Kind: EventReported, At: at.UTC(), TokenSerial: serial, Through: through})
}

// Events reads the whole log. A line that does not parse (a write cut short
// by a crash) is skipped: the log only ever informs, it never unlocks.
func (l *Local) Events() ([]Event, error) {
	b, err := os.ReadFile(filepath.Join(l.dir, EventsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Kind != "" {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

func (l *Local) appendEvent(e Event) error {
	f, err := os.OpenFile(filepath.Join(l.dir, EventsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	// One write per line: O_APPEND keeps concurrent writers' lines whole.
	if _, err := f.Write(append(mustJSON(e), '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("pinlock: " + err.Error())
	}
	return b
}

// writeFileAtomic writes a temporary file beside path, syncs it and renames
// it into place, so a crash leaves the old content or the new, never half.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

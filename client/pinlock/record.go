package pinlock

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The data object on the USB key that holds the token's Record.
const (
	Application = "gridpay"      // CKA_APPLICATION
	Label       = "pin-failures" // CKA_LABEL
)

// FormatVersion is the value of Record.Version this package writes and
// reads. A record of another version is refused (fail closed), never guessed.
const FormatVersion = 1

// ErrBadRecord means a stored record cannot be read. The key is then treated
// as locked until an administrator resets it.
var ErrBadRecord = errors.New("unreadable PIN-failure record")

// Record is the failed-PIN state of one USB key. The same form is stored on
// the key (the data object Application/Label) and in the local mirror.
type Record struct {
	Version int `json:"v"`
	// Failures is the number of wrong PINs in a row.
	Failures int `json:"failures"`
	// Locked is set when Failures reached the maximum. It is kept
	// separately so that raising max_pin_failures later unlocks nothing.
	Locked bool `json:"locked"`
	// ResetGeneration only ever grows, and only an administrator's reset
	// raises it (see Reset). A record with a higher generation supersedes
	// every record of a lower one, whatever their counts.
	ResetGeneration int64 `json:"reset_generation"`
	// UpdatedAt is informational.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Encode is the stored form: compact JSON.
func (r Record) Encode() []byte {
	r.Version = FormatVersion
	b, err := json.Marshal(r)
	if err != nil {
		panic("pinlock: encoding a Record cannot fail: " + err.Error())
	}
	return b
}

// Decode parses a stored record. Anything but a well-formed record of this
// version is ErrBadRecord.
func Decode(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	switch {
	case r.Version != FormatVersion:
		return Record{}, fmt.Errorf("%w: format version %d, this program reads %d", ErrBadRecord, r.Version, FormatVersion)
	case r.Failures < 0:
		return Record{}, fmt.Errorf("%w: negative failure count", ErrBadRecord)
	case r.ResetGeneration < 0:
		return Record{}, fmt.Errorf("%w: negative reset generation", ErrBadRecord)
	}
	return r, nil
}

// IsLocked reports whether the key must not be tried: it was locked, or
// it has max failures (max may have been lowered since).
func (r Record) IsLocked(max int) bool { return r.Locked || r.Failures >= max }

// Remaining is the number of wrong PINs still allowed before the lock.
func (r Record) Remaining(max int) int {
	if r.IsLocked(max) {
		return 0
	}
	return max - r.Failures
}

// Merge combines the local mirror with the record read from the key
// (onToken false: the key has none) into the record that counts:
//
//   - a higher ResetGeneration on the key means an administrator reset the
//     key since this computer last saw it: the key's record wins and the
//     local one is discarded (superseded is true);
//   - otherwise the larger count wins and either lock holds, so wiping or
//     rolling back the object on the key does not undo failures this
//     computer saw, and failures seen elsewhere travel with the key.
func Merge(local, token Record, onToken bool) (eff Record, superseded bool) {
	if !onToken {
		return local, false
	}
	if token.ResetGeneration > local.ResetGeneration {
		return token, true
	}
	eff = local
	eff.Failures = max(local.Failures, token.Failures)
	eff.Locked = local.Locked || token.Locked
	eff.UpdatedAt = later(local.UpdatedAt, token.UpdatedAt)
	return eff, false
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Failed is r after one more wrong PIN: locked once the count reaches max.
func (r Record) Failed(max int, now time.Time) Record {
	r.Failures++
	if r.Failures >= max {
		r.Locked = true
	}
	r.UpdatedAt = now.UTC()
	return r
}

// Succeeded is r after the right PIN: the count starts again. It never
// unlocks: a locked key is not tried.
func (r Record) Succeeded(now time.Time) Record {
	r.Failures = 0
	r.UpdatedAt = now.UTC()
	return r
}

// Reset is the administrator's reset of r (the record read from the key, or
// the zero Record if it has none or it is unreadable): count zero, unlocked,
// and a ResetGeneration above every earlier one. The generation is at least
// the previous one plus one and at least the Unix time in seconds, so that a
// reset stays above the local mirrors of every computer even if the object
// on the key was deleted or damaged in between.
func Reset(r Record, now time.Time) Record {
	return Record{
		Version:         FormatVersion,
		ResetGeneration: max(r.ResetGeneration+1, now.Unix()),
		UpdatedAt:       now.UTC(),
	}
}

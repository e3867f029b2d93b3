package pinlock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/derrors"
)

// Objects is the part of a token this package uses to keep the record on
// the key. *hsm.Token (logged in, as at the admin desk) implements it; the
// client uses a session without login, since it must count a wrong PIN
// precisely when login failed.
type Objects interface {
	ReadData(ctx context.Context, application, label string) (hsm.DataObject, error)
	WriteData(ctx context.Context, obj hsm.DataObject) error
	ReplaceData(ctx context.Context, application, label string, value []byte) error
}

var _ Objects = (*hsm.Token)(nil)

// ReadToken reads the record on the key. found is false when the key has
// none (a key that never saw a wrong PIN through this client). A record
// that does not decode is ErrBadRecord.
func ReadToken(ctx context.Context, o Objects) (_ Record, found bool, err error) {
	defer derrors.Wrap(&err, "pinlock.ReadToken")
	obj, err := o.ReadData(ctx, Application, Label)
	if errors.Is(err, hsm.ErrObjectNotFound) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	r, err := Decode(obj.Value)
	if err != nil {
		return Record{}, true, err
	}
	return r, true, nil
}

// WriteToken stores r on the key as a public data object (CKA_PRIVATE
// false: it must be readable and writable before the PIN is known),
// replacing the record there.
func WriteToken(ctx context.Context, o Objects, r Record) (err error) {
	defer derrors.Wrap(&err, "pinlock.WriteToken")
	value := r.Encode()
	err = o.ReplaceData(ctx, Application, Label, value)
	if !errors.Is(err, hsm.ErrObjectNotFound) {
		return err
	}
	err = o.WriteData(ctx, hsm.DataObject{Application: Application, Label: Label, Value: value, Private: false})
	if errors.Is(err, hsm.ErrObjectExists) {
		// Created by someone else between the two calls.
		return o.ReplaceData(ctx, Application, Label, value)
	}
	return err
}

// ResetToken is the administrator's reset (adminctl pin reset): it writes
// Reset of the record on the key, which clears the count on the key and, at
// the next use of the key, on every computer's local mirror. An unreadable
// record is overwritten. It returns the record written.
func ResetToken(ctx context.Context, o Objects, now time.Time) (_ Record, err error) {
	defer derrors.Wrap(&err, "pinlock.ResetToken")
	old, _, err := ReadToken(ctx, o)
	if err != nil && !errors.Is(err, ErrBadRecord) {
		return Record{}, err
	}
	r := Reset(old, now)
	if err := WriteToken(ctx, o, r); err != nil {
		return Record{}, err
	}
	return r, nil
}

// ErrLocked: the key is locked by the failure count; an administrator must
// reset it. Guard returns it as a *LockedError.
var ErrLocked = errors.New("the key is locked")

// LockedError says why a key is locked.
type LockedError struct {
	Max    int
	Record Record
}

func (e *LockedError) Error() string {
	if e.Record.Failures >= e.Max {
		return fmt.Sprintf("the key is locked after %d wrong PINs; ask the power company to reset it", e.Max)
	}
	// Locked by a damaged record, or with a limit since raised.
	return "the key is locked; ask the power company to reset it"
}

func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// fmtTries is "1 try" or "3 tries".
func fmtTries(n int) string {
	if n == 1 {
		return "1 try"
	}
	return fmt.Sprintf("%d tries", n)
}

package pinlock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Guard applies the lockout rule to one key around one PIN attempt:
//
//	st, err := g.Check(ctx)     // refuses a locked key before any PIN is read
//	... C_Login ...
//	g.Failed(ctx, st)           // after a wrong PIN
//	g.Succeeded(ctx, st)        // after the right one
type Guard struct {
	// Max is the number of wrong PINs in a row that locks the key.
	Max int
	// Serial is the key's token serial, the key of the local mirror.
	Serial string
	Local  *Local
	// Token reaches the record on the key; nil when it cannot be reached
	// (the count is then kept locally only).
	Token Objects
	Now   func() time.Time
	Log   *zap.Logger
}

// State is what Check found, handed to Failed or Succeeded.
type State struct {
	// Record is the effective record (see Merge).
	Record Record
	// OnToken says the key holds a record; TokenRecord is it.
	OnToken     bool
	TokenRecord Record
	// Superseded says an administrator's reset on the key cleared the
	// local mirror.
	Superseded bool
}

// Remaining is the number of wrong PINs still allowed.
func (s State) Remaining(max int) int { return s.Record.Remaining(max) }

func (g *Guard) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

func (g *Guard) log() *zap.Logger {
	if g.Log != nil {
		return g.Log
	}
	return zap.NewNop()
}

// Check reads both records, brings the local mirror up to date and returns
// a *LockedError (errors.Is ErrLocked) if the key must not be tried. It
// fails when the local mirror cannot be written: a wrong PIN that could not
// be counted must not be allowed.
func (g *Guard) Check(ctx context.Context) (State, error) {
	if g.Max < 1 {
		return State{}, fmt.Errorf("pinlock: Guard.Max must be at least 1, got %d", g.Max)
	}
	local, err := g.Local.Record(g.Serial)
	if errors.Is(err, ErrBadRecord) {
		// Fail closed, at generation 0 so that any reset supersedes it.
		g.log().Warn("local PIN-failure record unreadable; treating the key as locked", zap.String("token_serial", g.Serial), zap.Error(err))
		local, err = Record{Version: FormatVersion, Locked: true}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("cannot read the PIN-failure count in %s, so the PIN is not tried: %w", g.Local.Dir(), err)
	}

	var st State
	if g.Token != nil {
		tok, found, err := ReadToken(ctx, g.Token)
		switch {
		case errors.Is(err, ErrBadRecord):
			g.log().Warn("PIN-failure record on the key unreadable; treating the key as locked", zap.String("token_serial", g.Serial), zap.Error(err))
			st.OnToken, st.TokenRecord = true, Record{Version: FormatVersion, Locked: true}
		case err != nil:
			g.log().Warn("cannot read the PIN-failure record on the key; counting on this computer only", zap.String("token_serial", g.Serial), zap.Error(err))
		default:
			st.OnToken, st.TokenRecord = found, tok
		}
	}
	st.Record, st.Superseded = Merge(local, st.TokenRecord, st.OnToken)
	if st.Superseded {
		g.log().Info("the key was reset by an administrator; local PIN-failure count cleared",
			zap.String("token_serial", g.Serial), zap.Int64("reset_generation", st.Record.ResetGeneration))
	}
	// Written even when unchanged: this also proves, before any PIN is
	// tried, that a failure can be counted.
	if err := g.Local.SetRecord(g.Serial, st.Record); err != nil {
		return State{}, fmt.Errorf("cannot keep the PIN-failure count in %s, so the PIN is not tried: %w", g.Local.Dir(), err)
	}
	if st.Record.IsLocked(g.Max) {
		return st, &LockedError{Max: g.Max, Record: st.Record}
	}
	return st, nil
}

// Failed counts a wrong PIN: in the local mirror, in the local log, and on
// the key (best effort: a key that refuses writes without login keeps the
// count on this computer only). It returns the new record; the error is
// about the local state only.
func (g *Guard) Failed(ctx context.Context, st State) (Record, error) {
	now := g.now()
	r := st.Record.Failed(g.Max, now)
	var errs []error
	if err := g.Local.SetRecord(g.Serial, r); err != nil {
		errs = append(errs, err)
	}
	if _, err := g.Local.RecordFailure(g.Serial, r.Failures, r.Locked, now); err != nil {
		errs = append(errs, err)
	}
	if g.Token != nil {
		if err := WriteToken(ctx, g.Token, r); err != nil {
			g.log().Warn("cannot write the PIN-failure count on the key; it is kept on this computer only",
				zap.String("token_serial", g.Serial), zap.Error(err))
		}
	}
	return r, errors.Join(errs...)
}

// Succeeded starts the count again after the right PIN, on this computer
// and on the key.
func (g *Guard) Succeeded(ctx context.Context, st State) error {
	r := st.Record.Succeeded(g.now())
	if st.Record.Failures != 0 {
		if err := g.Local.SetRecord(g.Serial, r); err != nil {
			return err
		}
	}
	if g.Token != nil && st.OnToken && (st.TokenRecord.Failures != 0 || st.TokenRecord.ResetGeneration != r.ResetGeneration) {
		if err := WriteToken(ctx, g.Token, r); err != nil {
			g.log().Warn("cannot clear the PIN-failure count on the key", zap.String("token_serial", g.Serial), zap.Error(err))
		}
	}
	return nil
}

// WrongPINMessage is what the user reads after a wrong PIN that left r.
func WrongPINMessage(r Record, max int) string {
	if r.IsLocked(max) {
		return (&LockedError{Max: max, Record: r}).Error()
	}
	return fmt.Sprintf("wrong PIN: %s left before the key is locked", fmtTries(r.Remaining(max)))
}

// RemainingMessage warns, before the PIN is asked, that earlier attempts
// failed; empty when none did.
func RemainingMessage(r Record, max int) string {
	if r.Failures == 0 {
		return ""
	}
	if r.Failures == 1 {
		return fmt.Sprintf("1 wrong PIN was entered on this key; %s left before it is locked", fmtTries(r.Remaining(max)))
	}
	return fmt.Sprintf("%d wrong PINs were entered on this key; %s left before it is locked", r.Failures, fmtTries(r.Remaining(max)))
}

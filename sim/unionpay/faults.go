package simunionpay

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/gridpay/gridpay/unionpay"
)

// Faults are the misbehaviours the simulator can be switched into, for
// tests of GridPay's resilience. The zero value is a well-behaved gateway.
// Set them with Options.Faults, Server.SetFaults or the admin endpoint
// (PUT /faults with this struct as JSON). They live in memory: a restarted
// simulator starts again from Options.Faults.
type Faults struct {
	// AutoApprove approves every consume form when it is posted, without a
	// pay page (as if the payer had clicked Approve with a test card), for
	// load tests.
	AutoApprove bool `json:"auto_approve"`

	// DropNotifications swallows every back notification made while it is
	// on: none is ever sent (queries still tell the truth).
	DropNotifications bool `json:"drop_notifications"`
	// DuplicateNotifications sends every notification this many times at
	// each send (2 or 3 for tests; 0 or 1: once).
	DuplicateNotifications int `json:"duplicate_notifications"`
	// DelayNotifications holds each new notification this long (real
	// time, not scaled) before its first send.
	DelayNotifications Duration `json:"delay_notifications"`
	// ReorderNotifications holds due notifications until ReorderWindow of
	// them (default 3) are waiting, or the oldest has waited ReorderHold
	// (default 2 s, real time), then sends them newest first: across
	// orders, later events arrive before earlier ones.
	ReorderNotifications bool     `json:"reorder_notifications"`
	ReorderWindow        int      `json:"reorder_window,omitempty"`
	ReorderHold          Duration `json:"reorder_hold,omitempty"`

	// QueryUnknown answers the next N queries with QueryUnknownCode
	// instead of the truth; QueryUnknownUntil does the same for every
	// query until that instant (real clock). QueryUnknownCode is 03, 04 or
	// 05; empty cycles through the three.
	QueryUnknown      int       `json:"query_unknown,omitempty"`
	QueryUnknownUntil time.Time `json:"query_unknown_until,omitzero"`
	QueryUnknownCode  string    `json:"query_unknown_code,omitempty"`

	// RefundFailures fails the next N refund and cancel requests, as
	// RefundFailureMode says:
	//   "http503" (default): HTTP 503 without an answer; nothing recorded.
	//   "03": a signed answer with respCode 03; nothing recorded.
	//   "03-processed": the request is accepted and processed as usual,
	//     but the answer says 03 (a lost answer: only a query tells).
	RefundFailures    int    `json:"refund_failures,omitempty"`
	RefundFailureMode string `json:"refund_failure_mode,omitempty"`
}

// Refund failure modes.
const (
	RefundFailHTTP503     = "http503"
	RefundFail03          = "03"
	RefundFail03Processed = "03-processed"
)

// Validate checks the values that have a fixed set.
func (f Faults) Validate() error {
	switch f.QueryUnknownCode {
	case "", unionpay.RespUnknown03, unionpay.RespUnknown04, unionpay.RespUnknown05:
	default:
		return fmt.Errorf("query_unknown_code %q is not 03, 04 or 05", f.QueryUnknownCode)
	}
	switch f.RefundFailureMode {
	case "", RefundFailHTTP503, RefundFail03, RefundFail03Processed:
	default:
		return fmt.Errorf("refund_failure_mode %q is not %s, %s or %s", f.RefundFailureMode, RefundFailHTTP503, RefundFail03, RefundFail03Processed)
	}
	if f.DuplicateNotifications < 0 || f.DuplicateNotifications > 10 {
		return fmt.Errorf("duplicate_notifications %d is not between 0 and 10", f.DuplicateNotifications)
	}
	if f.QueryUnknown < 0 || f.RefundFailures < 0 || f.ReorderWindow < 0 || f.DelayNotifications < 0 || f.ReorderHold < 0 {
		return fmt.Errorf("counts and durations must not be negative")
	}
	return nil
}

// Duration is a time.Duration written in JSON as text ("2s", "150ms").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("duration: want text like \"2s\": %w", err)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// faultState holds the current faults; counting faults are consumed by
// the requests they hit.
type faultState struct {
	mu        sync.Mutex
	f         Faults
	rotations int
}

func (s *faultState) get() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f
}

func (s *faultState) set(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f = f
}

// queryFault says whether this query is to be answered with an unknown
// code, and which.
func (s *faultState) queryFault(now time.Time) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hit := false
	if s.f.QueryUnknown > 0 {
		s.f.QueryUnknown--
		hit = true
	} else if !s.f.QueryUnknownUntil.IsZero() && now.Before(s.f.QueryUnknownUntil) {
		hit = true
	}
	if !hit {
		return "", false
	}
	if s.f.QueryUnknownCode != "" {
		return s.f.QueryUnknownCode, true
	}
	codes := []string{unionpay.RespUnknown03, unionpay.RespUnknown04, unionpay.RespUnknown05}
	s.rotations++
	return codes[(s.rotations-1)%3], true
}

// refundFault says whether this refund or cancel request is to fail, and
// how.
func (s *faultState) refundFault() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f.RefundFailures <= 0 {
		return "", false
	}
	s.f.RefundFailures--
	if s.f.RefundFailureMode == "" {
		return RefundFailHTTP503, true
	}
	return s.f.RefundFailureMode, true
}

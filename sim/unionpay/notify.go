package simunionpay

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/store"
	up "github.com/gridpay/gridpay/unionpay"
)

// pollInterval bounds how late a due notification or refund is picked up
// when nothing woke the loops (timers due after a resend interval, or
// work left by an earlier run).
const pollInterval = 100 * time.Millisecond

// Defaults of the reorder fault.
const (
	defaultReorderWindow = 3
	defaultReorderHold   = 2 * time.Second
)

// resultFields are the signed fields telling a transaction's result: the
// back notification, and what the payer's browser brings to frontUrl.
func (s *Server) resultFields(ctx context.Context, t Transaction) (map[string]string, error) {
	a := map[string]string{}
	s.describe(a, t)
	a[up.FieldRespCode], a[up.FieldRespMsg] = t.RespCode, t.RespMsg
	return s.sign(ctx, a)
}

// queueNotification queues the back notification of a transaction that
// has just been decided, inside the transaction that decided it: a crash
// can lose neither. Failures are notified only with
// Options.NotifyFailures, like the real gateway.
func (s *Server) queueNotification(ctx context.Context, tx pgx.Tx, t Transaction) error {
	if t.Status == StatusFailed && !s.opts.NotifyFailures {
		return nil
	}
	fields, err := s.resultFields(ctx, t)
	if err != nil {
		return err
	}
	f := s.faults.get()
	state, next := NotifyPending, time.Now().Add(time.Duration(f.DelayNotifications))
	if f.DropNotifications {
		state = NotifyDropped
		s.log.Info("notification dropped (fault)", zap.String("query_id", t.QueryID))
	}
	return enqueueNotification(ctx, tx, t.QueryID, t.BackURL, fields, state, next, s.opts.Now())
}

// runNotifier sends due notifications until ctx ends.
func (s *Server) runNotifier(ctx context.Context) {
	var sending sync.WaitGroup
	defer sending.Wait()
	for {
		if err := s.dispatchDue(ctx, &sending); err != nil && ctx.Err() == nil {
			s.log.Error("notifier", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wakeNotifier:
		case <-time.After(pollInterval):
		}
	}
}

func (s *Server) dispatchDue(ctx context.Context, sending *sync.WaitGroup) error {
	due, err := dueNotifications(ctx, s.db, time.Now(), 500)
	if err != nil {
		return err
	}
	due = slices.DeleteFunc(due, func(n NotificationRecord) bool { _, busy := s.inflight.Load(n.ID); return busy })
	if len(due) == 0 {
		return nil
	}
	f := s.faults.get()
	copies := max(1, f.DuplicateNotifications)
	if f.ReorderNotifications {
		window, hold := f.ReorderWindow, time.Duration(f.ReorderHold)
		if window == 0 {
			window = defaultReorderWindow
		}
		if hold == 0 {
			hold = defaultReorderHold
		}
		if len(due) < window && time.Since(due[0].nextAt) < hold {
			return nil // wait for more to reorder
		}
		// Newest first: across orders, later events overtake earlier ones.
		slices.SortFunc(due, func(a, b NotificationRecord) int { return int(b.ID - a.ID) })
		for _, n := range due {
			s.inflight.Store(n.ID, struct{}{})
		}
		sending.Add(1)
		go func() {
			defer sending.Done()
			for _, n := range due {
				s.deliver(ctx, n, copies)
			}
		}()
		return nil
	}
	for _, n := range due {
		select {
		case s.sendSlots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		s.inflight.Store(n.ID, struct{}{})
		sending.Add(1)
		go func() {
			defer sending.Done()
			defer func() { <-s.sendSlots }()
			s.deliver(ctx, n, copies)
		}()
	}
	return nil
}

// deliver makes one send of the resend schedule (copies POSTs at once
// under the duplicate fault) and records the outcome: delivered on an
// HTTP 200, otherwise the next send per ResendSchedule, or given up after
// MaxSends.
func (s *Server) deliver(ctx context.Context, n NotificationRecord, copies int) {
	defer s.inflight.Delete(n.ID)
	send := n.Sends + 1
	results := make([]Delivery, copies)
	var wg sync.WaitGroup
	for c := range copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[c] = s.post(ctx, n)
			results[c].Send, results[c].Copy = send, c+1
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		// Stopping: the send is not recorded and happens again after a
		// restart, as a gateway that crashed mid-send would do.
		return
	}
	delivered := false
	for _, d := range results {
		if err := recordDelivery(ctx, s.db, n.ID, d); err != nil {
			s.log.Error("recording a delivery", zap.Error(err))
		}
		delivered = delivered || d.HTTPStatus == http.StatusOK
	}
	now := time.Now()
	state, next := NotifyDelivered, time.Time{}
	switch {
	case delivered:
	case send >= MaxSends:
		state = NotifyGivenUp
	default:
		state, next = NotifyPending, now.Add(s.scaled(ResendSchedule[send-1]))
	}
	if err := afterSend(ctx, s.db, n.ID, send, state, next, s.opts.Now()); err != nil {
		s.log.Error("recording a send", zap.Error(err))
		return
	}
	s.log.Info("notification sent", zap.String("query_id", n.QueryID), zap.Int("send", send), zap.Int("copies", copies),
		zap.Int("http_status", results[0].HTTPStatus), zap.String("state", string(state)))
	if state == NotifyPending {
		s.wake(s.wakeNotifier)
	}
}

// post sends a notification once.
func (s *Server) post(ctx context.Context, n NotificationRecord) Delivery {
	d := Delivery{SentAt: s.opts.Now()}
	v := url.Values{}
	for k, x := range n.Fields {
		v.Set(k, x)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL, strings.NewReader(v.Encode()))
	if err != nil {
		d.Error = err.Error()
		return d
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
	resp, err := s.http.Do(req)
	if err != nil {
		d.Error = err.Error()
		return d
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	d.HTTPStatus = resp.StatusCode
	return d
}

// runProcessor decides accepted refunds and cancels when their time
// comes, until ctx ends.
func (s *Server) runProcessor(ctx context.Context) {
	for {
		if err := s.processDue(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("refund processor", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wakeProcessor:
		case <-time.After(pollInterval):
		}
	}
}

// processDue makes due refunds and cancels succeed. Their amounts were
// reserved against the consume when they were accepted, so success is
// certain; the notification is queued in the same transaction.
func (s *Server) processDue(ctx context.Context) error {
	var done int
	err := s.db.Transact(ctx, store.TxOptions{}, func(tx pgx.Tx) error {
		due, err := dueReversals(ctx, tx, time.Now(), 100)
		if err != nil {
			return err
		}
		done = len(due)
		now := s.opts.Now()
		for _, t := range due {
			t.Status, t.RespCode, t.RespMsg = StatusSucceeded, up.RespSuccess, respMsg(up.RespSuccess, "")
			t.SettleDay = dayOf(now)
			t.SettleDate = t.SettleDay.Format("0102")
			t.FinishedAt = now
			if err := finishTxn(ctx, tx, &t); err != nil {
				return err
			}
			if err := s.queueNotification(ctx, tx, t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	if done > 0 {
		s.log.Info("refunds processed", zap.Int("count", done))
		s.wake(s.wakeNotifier)
	}
	return nil
}

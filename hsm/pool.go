package hsm

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"
	"go.uber.org/zap"
)

// pool hands out the sessions of one token, each to one goroutine at a
// time: a PKCS#11 session runs one operation at a time, and an operation is
// a sequence of calls (SignInit then Sign) that must not interleave.
//
// sem holds one element per session in use, so at most cap(sem) exist;
// idle holds the open sessions nobody is using. Sessions are opened lazily,
// when a goroutine gets a place in sem and finds idle empty.
type pool struct {
	ctx   p11
	slot  uint
	log   *zap.Logger
	sem   chan struct{}
	idle  chan pkcs11.SessionHandle
	done  chan struct{} // closed by close: wakes waiters
	shut  atomic.Bool
	once  sync.Once
	stats poolStats
}

type poolStats struct {
	opened    atomic.Int64
	discarded atomic.Int64
}

func newPool(ctx p11, slot uint, size int, log *zap.Logger) *pool {
	return &pool{
		ctx:  ctx,
		slot: slot,
		log:  log,
		sem:  make(chan struct{}, size),
		idle: make(chan pkcs11.SessionHandle, size),
		done: make(chan struct{}),
	}
}

// get waits for a session; only the wait honours ctx, a PKCS#11 call cannot
// be interrupted.
func (p *pool) get(ctx context.Context) (pkcs11.SessionHandle, error) {
	if p.shut.Load() {
		return 0, ErrClosed
	}
	select {
	case p.sem <- struct{}{}:
	default:
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-p.done:
			return 0, ErrClosed
		}
	}
	if p.shut.Load() {
		<-p.sem
		return 0, ErrClosed
	}
	select {
	case sh := <-p.idle:
		return sh, nil
	default:
	}
	sh, err := p.ctx.OpenSession(p.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		<-p.sem
		return 0, p11err("C_OpenSession", err)
	}
	p.stats.opened.Add(1)
	return sh, nil
}

// put returns sh, or closes it if opErr says it is no longer usable.
func (p *pool) put(sh pkcs11.SessionHandle, opErr error) {
	switch {
	case opErr != nil && sessionFatal(opErr):
		p.stats.discarded.Add(1)
		p.log.Warn("hsm: discarding session after fatal error", zap.Error(opErr))
		_ = p.ctx.CloseSession(sh)
	case p.shut.Load():
		_ = p.ctx.CloseSession(sh)
	default:
		p.idle <- sh // never blocks: at most cap(sem) sessions exist
	}
	<-p.sem
}

// do runs fn with a session of its own.
func (p *pool) do(ctx context.Context, fn func(pkcs11.SessionHandle) error) error {
	sh, err := p.get(ctx)
	if err != nil {
		return err
	}
	err = fn(sh)
	p.put(sh, err)
	return err
}

// close refuses new work, waits for the sessions in use to come back and
// closes every session.
func (p *pool) close() {
	p.once.Do(func() {
		p.shut.Store(true)
		close(p.done)
		for range cap(p.sem) {
			p.sem <- struct{}{}
		}
		for {
			select {
			case sh := <-p.idle:
				_ = p.ctx.CloseSession(sh)
			default:
				return
			}
		}
	})
}

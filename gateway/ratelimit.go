package main

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters is a token bucket per client certificate (rate per second,
// burst), keyed by the SHA-256 of the certificate's DER: one-to-one with
// the certificate, and, unlike a bare serial number, not something a
// forged certificate can share with a customer's to drain their bucket.
type limiters struct {
	rate  float64
	burst int
	// idle is how long a bucket goes unused before it is dropped: long
	// enough to have refilled, so dropping it changes nothing.
	idle time.Duration

	mu        sync.Mutex
	m         map[[32]byte]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

// sweepEvery bounds how often allow walks the map for idle buckets.
const sweepEvery = time.Minute

func newLimiters(perSecond float64, burst int) *limiters {
	idle := time.Minute
	if refill := time.Duration(float64(burst) / perSecond * float64(time.Second)); refill > idle {
		idle = refill
	}
	return &limiters{rate: perSecond, burst: burst, idle: idle, m: map[[32]byte]*bucket{}}
}

// allow takes a token from key's bucket at now, or says how long until the
// next one.
func (l *limiters) allow(key [32]byte, now time.Time) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= sweepEvery {
		l.sweep(now)
	}
	b := l.m[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(l.rate), l.burst)}
		l.m[key] = b
	}
	b.last = now
	if b.lim.AllowN(now, 1) {
		return 0, true
	}
	missing := 1 - b.lim.TokensAt(now)
	return time.Duration(missing / l.rate * float64(time.Second)), false
}

func (l *limiters) sweep(now time.Time) {
	for k, b := range l.m {
		if now.Sub(b.last) >= l.idle {
			delete(l.m, k)
		}
	}
	l.lastSweep = now
}

// size is the number of buckets held.
func (l *limiters) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// retryAfterSeconds rounds a wait up to the whole seconds of Retry-After.
func retryAfterSeconds(wait time.Duration) int {
	s := int(math.Ceil(wait.Seconds()))
	if s < 1 {
		return 1
	}
	return s
}

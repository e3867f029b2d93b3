//go:build integration

package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gridpay/gridpay/api"
)

// benchLogger logs like production (JSON, info) into the void, so the
// figures include the cost of the request log.
func benchLogger() *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel))
}

const benchClients = 50

// BenchmarkQuery measures authenticated queries (GET /v1/bills?status=unpaid:
// certificate verification, CRL check, binding lookup in PostgreSQL, one
// platform call to an in-memory fake) through the in-process gateway,
// whose TLS key is on SoftHSM2, from 50 concurrent clients, each a
// customer of its own with its own TLS connection:
//
//   - new-handshake: a full TLS 1.3 handshake for every request (no
//     session reuse, no keep-alive);
//   - resumed-session: a new connection for every request, resuming the
//     TLS session (PSK, no certificate signatures);
//   - keep-alive: one connection per client for all its requests.
//
// Client keys are in memory here (BenchmarkHandshake measures the USB-key
// cost). Figures are reported, not asserted.
func BenchmarkQuery(b *testing.B) {
	s := newStack(b, stackOptions{ratePerSecond: 1e9, rateBurst: 1 << 30, log: benchLogger()})
	clients := make([]tls.Certificate, benchClients)
	for i := range clients {
		c := s.softKey(fmt.Sprintf("C%d", 5000+i), fmt.Sprintf("BENCH%04d", i))
		clients[i] = c.tlsCert(s)
	}
	url := s.url(api.PathBills + "?status=unpaid")
	for _, mode := range []struct {
		name              string
		keepAlive, resume bool
	}{
		{"new-handshake", false, false},
		{"resumed-session", false, true},
		{"keep-alive", true, false},
	} {
		b.Run(mode.name, func(b *testing.B) {
			hcs := make([]*http.Client, len(clients))
			for i := range clients {
				cfg := &tls.Config{RootCAs: s.roots, Certificates: []tls.Certificate{clients[i]}}
				if mode.resume {
					cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
				}
				tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: !mode.keepAlive, MaxConnsPerHost: 1}
				b.Cleanup(tr.CloseIdleConnections)
				hcs[i] = &http.Client{Transport: tr, Timeout: 30 * time.Second}
			}
			get := func(c *http.Client) (bool, error) {
				resp, err := c.Get(url)
				if err != nil {
					return false, err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return false, fmt.Errorf("status %d", resp.StatusCode)
				}
				return resp.TLS.DidResume, nil
			}
			// Warm up: a session ticket for each client to resume, a
			// connection to keep alive.
			for _, c := range hcs {
				if _, err := get(c); err != nil {
					b.Fatal(err)
				}
			}
			var (
				next    atomic.Int64
				resumed atomic.Int64
				mu      sync.Mutex
				lat     = make([]time.Duration, 0, b.N)
				failed  error
				wg      sync.WaitGroup
			)
			b.ResetTimer()
			start := time.Now()
			for _, c := range hcs {
				wg.Go(func() {
					var mine []time.Duration
					for next.Add(1) <= int64(b.N) {
						t0 := time.Now()
						res, err := get(c)
						mine = append(mine, time.Since(t0))
						if err != nil {
							mu.Lock()
							failed = err
							mu.Unlock()
							return
						}
						if res {
							resumed.Add(1)
						}
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if failed != nil {
				b.Fatal(failed)
			}
			slices.Sort(lat)
			pct := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(100*float64(resumed.Load())/float64(b.N), "%resumed")
			b.ReportMetric(0, "ns/op") // the figures above say it better
		})
	}
}

// BenchmarkHandshake measures a full TLS 1.3 handshake with the gateway
// (its key on SoftHSM2) with the client key on a SoftHSM2 token (the USB
// key) against the same kind of key (ECDSA P-256) in memory, alternating
// the two so that both see the same conditions. The target is a ratio of
// at most 1.3; it is reported, not asserted.
func BenchmarkHandshake(b *testing.B) {
	s := newStack(b, stackOptions{log: benchLogger()})
	onToken := s.usbKey("C1001")
	inMemory := s.softKey("C2002", "MEMKEY01")
	handshake := func(c tls.Certificate) time.Duration {
		cfg := &tls.Config{RootCAs: s.roots, Certificates: []tls.Certificate{c}, ServerName: "localhost"}
		t0 := time.Now()
		conn, err := tls.Dial("tcp", s.addr, cfg)
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		if st := conn.ConnectionState(); st.DidResume || st.Version != tls.VersionTLS13 {
			b.Fatalf("not a full TLS 1.3 handshake: %+v", st)
		}
		conn.Close()
		return d
	}
	tokenCert, memCert := onToken.tlsCert(s), inMemory.tlsCert(s)
	for range 5 {
		handshake(tokenCert)
		handshake(memCert)
	}
	var onTokenTotal, inMemoryTotal time.Duration
	b.ResetTimer()
	for range b.N {
		inMemoryTotal += handshake(memCert)
		onTokenTotal += handshake(tokenCert)
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / float64(b.N) / float64(time.Millisecond) }
	b.ReportMetric(ms(onTokenTotal), "softhsm-ms")
	b.ReportMetric(ms(inMemoryTotal), "memory-ms")
	b.ReportMetric(float64(onTokenTotal)/float64(inMemoryTotal), "ratio")
}

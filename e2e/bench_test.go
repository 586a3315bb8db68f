package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// BenchmarkE2E drives 1 KiB webhooks from 16 concurrent senders through the built relay and
// agent (over WebSocket and QUIC) to a local target, and straight to the same kind of target as
// the baseline, in one run. Each iteration is one webhook; use a fixed count:
//
//	go test -run='^$' -bench=E2E -benchtime=20000x ./e2e
//
// Reported: webhooks/s, end-to-end latency percentiles (sent → at the target), and the peak RSS
// of the relay and agent processes. Compare the relayed rates with "direct" from the same run.
func BenchmarkE2E(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		tg := newLatencyTarget()
		srv := httptest.NewServer(tg)
		defer srv.Close()
		runLoad(b, tg, srv.URL+"/base/deep/path")
	})
	for _, tr := range []string{"ws", "quic"} {
		b.Run(tr, func(b *testing.B) {
			w := newWorld(b, worldOpts{transport: tr})
			tg := newLatencyTarget()
			w.target.hook.Store(tg) // the agent's route points at w.target: hand its requests to tg
			testutil.CheckFor(b, 30*time.Second, 20*time.Millisecond, func() error {
				// one warm-up webhook: the agent is connected once it arrives
				if err := post(w.client, fmt.Sprintf("http://127.0.0.1:%d/h/e2e/warm", w.relayPort), -1); err != nil {
					return err
				}
				if tg.warm.Load() == 0 {
					return fmt.Errorf("warm-up webhook not delivered yet")
				}
				return nil
			})
			runLoad(b, tg, fmt.Sprintf("http://127.0.0.1:%d/h/e2e/deep/path", w.relayPort))
			b.ReportMetric(float64(w.relay.peakRSS())/1024, "relay-peak-MiB")
			b.ReportMetric(float64(w.agents[0].peakRSS())/1024, "agent-peak-MiB")
		})
	}
}

// runLoad sends b.N webhooks to url from 16 senders and waits until tg has seen them all.
// With more urls (a cluster's relays), webhook i goes to urls[i%len(urls)].
func runLoad(b *testing.B, tg *latencyTarget, url string, more ...string) {
	urls := append([]string{url}, more...)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32, Proxy: nil}}
	n := b.N
	tg.expect(n)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				tg.sentAt(i)
				if err := post(client, urls[i%len(urls)], i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-tg.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d webhooks reached the target", tg.count.Load(), n)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(n)/el.Seconds(), "webhooks/s")
	lat := tg.latencies()
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

var benchBody = bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB

func post(c *http.Client, url string, seq int) error {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(benchBody))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-Seq", strconv.Itoa(seq))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %d", url, resp.StatusCode)
	}
	return nil
}

// latencyTarget counts arrivals and keeps, per sequence number, when it was sent and arrived.
type latencyTarget struct {
	count atomic.Int64 // measured webhooks that arrived
	warm  atomic.Int64 // warm-up webhooks that arrived
	mu    sync.Mutex
	want  int
	sent  []time.Time
	got   []time.Time
	done  chan struct{}
}

func newLatencyTarget() *latencyTarget {
	return &latencyTarget{done: make(chan struct{})}
}

func (tg *latencyTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	now := time.Now()
	seq, err := strconv.Atoi(r.Header.Get("X-Seq"))
	tg.mu.Lock()
	if err == nil && seq >= 0 && seq < len(tg.got) && tg.got[seq].IsZero() {
		tg.got[seq] = now
		if tg.count.Add(1) == int64(tg.want) {
			close(tg.done)
		}
	} else if err == nil && seq == -1 {
		tg.warm.Add(1)
	}
	tg.mu.Unlock()
	w.WriteHeader(200)
}

func (tg *latencyTarget) expect(n int) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.want, tg.sent, tg.got = n, make([]time.Time, n), make([]time.Time, n)
	tg.count.Store(0)
	tg.done = make(chan struct{})
}

func (tg *latencyTarget) sentAt(i int) {
	tg.mu.Lock()
	tg.sent[i] = time.Now()
	tg.mu.Unlock()
}

func (tg *latencyTarget) latencies() []time.Duration {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	var d []time.Duration
	for i := range tg.got {
		if !tg.got[i].IsZero() {
			d = append(d, tg.got[i].Sub(tg.sent[i]))
		}
	}
	slices.Sort(d)
	return d
}

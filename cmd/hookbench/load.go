package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

var (
	kib1  = bytes.Repeat([]byte("0123456789abcdef"), 64)
	kib64 = bytes.Repeat(kib1, 64)
	mib10 = bytes.Repeat(kib1, 10<<10)
)

// post sends one webhook; a 429 or 503 (the relay pushing back) is retried after a short
// pause, anything else but 2xx is an error.
func post(c *http.Client, url, phase string, seq int, body []byte) error {
	for try := 0; ; try++ {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("new request: %w", err)
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("X-Phase", phase)
		req.Header.Set("X-Seq", strconv.Itoa(seq))
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("post %s: %w", url, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
			return nil
		case (resp.StatusCode == 429 || resp.StatusCode == 503) && try < 1000:
			time.Sleep(20 * time.Millisecond)
		default:
			return fmt.Errorf("post %s: answered %d", url, resp.StatusCode)
		}
	}
}

// burstResult is one burst: webhooks delivered per second (first send to last arrival) and
// the end-to-end latencies.
type burstResult struct {
	rate     float64
	p50, p99 float64
	// answered is the paced shape's p50 from sending to the answer (the relay's 202 once its
	// store synced; the target's own answer direct): what of e2e the relay's side takes.
	answered float64
}

// send posts n webhooks of body from senders concurrent senders, as fast as they go, and
// returns when the last answer came.
func send(tg *target, url, phase string, n, senders int, body []byte) error {
	client := newClient()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for range senders {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				tg.sentAt(i, time.Now())
				if err := post(client, url, phase, i, body); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// burst sends n webhooks from 16 senders and waits until all arrived.
func burst(tg *target, url, phase string, n int, body []byte) (burstResult, error) {
	tg.expect(phase, n)
	start := time.Now()
	if err := send(tg, url+"/"+phase, phase, n, 16, body); err != nil {
		return burstResult{}, err
	}
	last, err := tg.wait(5 * time.Minute)
	if err != nil {
		return burstResult{}, err
	}
	lat := tg.latencies()
	return burstResult{rate: float64(n) / last.Sub(start).Seconds(), p50: pct(lat, 50), p99: pct(lat, 99)}, nil
}

// paced sends 1 KiB webhooks at perSec for dur, each on its own goroutine so that a slow
// answer never delays the next send, and returns the latencies' p50 and p99.
func paced(tg *target, url string, perSec int, dur time.Duration) (burstResult, error) {
	n := int(dur.Seconds() * float64(perSec))
	tg.expect("paced", n)
	client := newClient()
	tick := time.NewTicker(time.Second / time.Duration(perSec))
	defer tick.Stop()
	var wg sync.WaitGroup
	var failed atomic.Value
	answered := make([]time.Duration, n)
	for i := range n {
		<-tick.C
		wg.Go(func() {
			at := time.Now()
			tg.sentAt(i, at)
			if err := post(client, url+"/paced", "paced", i, kib1); err != nil {
				failed.Store(err)
			}
			answered[i] = time.Since(at)
		})
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		return burstResult{}, err
	}
	if _, err := tg.wait(time.Minute); err != nil {
		return burstResult{}, err
	}
	lat := tg.latencies()
	return burstResult{rate: float64(perSec), p50: pct(lat, 50), p99: pct(lat, 99), answered: pct(sortedCopy(answered), 50)}, nil
}

// large sends n 10 MiB webhooks one after the other, each once the previous one arrived, and
// returns the p50 latency.
func large(tg *target, url string, n int) (float64, error) {
	tg.expect("large", n)
	client := newClient()
	for i := range n {
		tg.sentAt(i, time.Now())
		if err := post(client, url+"/large", "large", i, mib10); err != nil {
			return 0, err
		}
		if err := waitFor(2*time.Minute, time.Millisecond, func() error {
			if len(tg.latencies()) <= i {
				return fmt.Errorf("10 MiB webhook %d not delivered", i)
			}
			return nil
		}); err != nil {
			return 0, err
		}
	}
	return pct(tg.latencies(), 50), nil
}

package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// target is the local HTTP server every shape delivers to, directly or through the relay. It
// keeps, for the current phase, when each sequence number was sent and when it arrived; a
// request of another phase (a warm-up, a late duplicate) is answered and not counted.
//
// A durable target (store set) is what an application that must not lose a webhook does
// before it answers 200: it appends the body to a file and fdatasyncs it (each request its
// own sync; the kernel lets concurrent ones share a journal commit). A discard target reads
// the body and answers: the fastest a Go client and server manage here.
type target struct {
	url    string
	srv    *http.Server
	warmed atomic.Int64
	store  *os.File // durable: the file bodies are appended to; nil discards
	failed atomic.Int64

	mu    sync.Mutex
	phase string
	sent  []time.Time
	got   []time.Time
	count int
	last  time.Time
	done  chan struct{}
}

// newTarget starts a target; with storePath set, a durable one appending to that file.
func newTarget(storePath string) (*target, error) {
	tg := &target{done: make(chan struct{})}
	if storePath != "" {
		f, err := os.OpenFile(storePath, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("target store: %w", err)
		}
		tg.store = f
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("target listen: %w", err)
	}
	tg.url = "http://" + ln.Addr().String() + "/base"
	tg.srv = &http.Server{Handler: tg, ReadHeaderTimeout: 10 * time.Second}
	go tg.srv.Serve(ln) // ends when close shuts the server down
	return tg, nil
}

func (tg *target) close() {
	tg.srv.Close()
	if tg.store != nil {
		tg.store.Close()
	}
}

// bufPool holds the durable target's body buffers (64 KiB; larger bodies go in several writes).
var bufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// keep stores the body durably: one O_APPEND write per 64 KiB read, then fdatasync. Bodies
// of concurrent requests may interleave by chunk, which a benchmark that never reads them back
// does not mind; the bytes and the syncs are an application's.
func (tg *target) keep(r *http.Request) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := io.ReadFull(r.Body, buf)
		if n > 0 {
			if _, werr := tg.store.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return syscall.Fdatasync(int(tg.store.Fd()))
}

func (tg *target) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if tg.store != nil {
		if err := tg.keep(r); err != nil {
			tg.failed.Add(1)
			http.Error(w, "store: "+err.Error(), http.StatusInternalServerError)
			return
		}
	} else {
		io.Copy(io.Discard, r.Body)
	}
	now := time.Now()
	phase := r.Header.Get("X-Phase")
	seq, err := strconv.Atoi(r.Header.Get("X-Seq"))
	if phase == "warm" {
		tg.warmed.Add(1)
	}
	tg.mu.Lock()
	if err == nil && phase == tg.phase && seq >= 0 && seq < len(tg.got) && tg.got[seq].IsZero() {
		tg.got[seq] = now
		tg.count++
		tg.last = now
		if tg.count == len(tg.got) {
			close(tg.done)
		}
	}
	tg.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// expect starts a phase of n webhooks.
func (tg *target) expect(phase string, n int) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.phase, tg.sent, tg.got, tg.count = phase, make([]time.Time, n), make([]time.Time, n), 0
	if tg.store != nil {
		tg.store.Truncate(0) // what the last phase kept is not needed; the disk stays small
	}
	tg.done = make(chan struct{})
	if n == 0 {
		close(tg.done)
	}
}

func (tg *target) sentAt(seq int, t time.Time) {
	tg.mu.Lock()
	tg.sent[seq] = t
	tg.mu.Unlock()
}

// wait waits until every webhook of the phase arrived, and returns when the last one did.
func (tg *target) wait(timeout time.Duration) (time.Time, error) {
	tg.mu.Lock()
	done := tg.done
	tg.mu.Unlock()
	select {
	case <-done:
	case <-time.After(timeout):
		tg.mu.Lock()
		defer tg.mu.Unlock()
		return time.Time{}, fmt.Errorf("phase %s: only %d of %d webhooks reached the target within %v",
			tg.phase, tg.count, len(tg.got), timeout)
	}
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.last, nil
}

// latencies returns the sorted send → arrival times of the phase.
func (tg *target) latencies() []time.Duration {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	var d []time.Duration
	for i := range tg.got {
		if !tg.got[i].IsZero() && !tg.sent[i].IsZero() {
			d = append(d, tg.got[i].Sub(tg.sent[i]))
		}
	}
	slices.Sort(d)
	return d
}

// pct returns the p-th percentile of sorted latencies in milliseconds.
func pct(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return 0
	}
	return float64(d[min(len(d)-1, len(d)*p/100)].Microseconds()) / 1000
}

// sortedCopy is d sorted, for pct.
func sortedCopy(d []time.Duration) []time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d
}

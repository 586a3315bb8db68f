package protocol

import (
	"sync"
	"time"
)

// pulse runs a periodic task on a timer rather than in a goroutine of its own: an idle tunnel
// then costs no goroutine stack for its keepalives (a relay holds thousands of idle tunnels).
// Each run happens in the timer's short-lived goroutine and returns the delay to the next
// one; runs never overlap.
type pulse struct {
	wg sync.WaitGroup // one per run scheduled or in progress

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

// startPulse runs f after d, then again after each delay f returns, until f returns 0 or
// less, or stop is called.
func startPulse(d time.Duration, f func() time.Duration) *pulse {
	p := &pulse{}
	p.mu.Lock() // a first run waits until p.t is set
	defer p.mu.Unlock()
	p.wg.Add(1)
	p.t = time.AfterFunc(d, func() { p.run(f) })
	return p
}

func (p *pulse) run(f func() time.Duration) {
	defer p.wg.Done()
	p.mu.Lock()
	stopped := p.stopped
	p.mu.Unlock()
	if stopped {
		return
	}
	next := f()
	p.mu.Lock()
	defer p.mu.Unlock()
	if next > 0 && !p.stopped {
		p.wg.Add(1) // while this run still counts: wait cannot have seen zero yet
		p.t.Reset(next)
	}
}

// stop prevents any further run and returns at once; a run in progress goes on (wait joins
// it). Idempotent; f must not call it.
func (p *pulse) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	if p.t.Stop() {
		p.wg.Done() // the scheduled run will not happen
	}
}

// wait returns once no run is in progress or scheduled; call it after stop.
func (p *pulse) wait() { p.wg.Wait() }

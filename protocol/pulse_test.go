package protocol

import (
	"context"
	"testing"
	"time"
)

// A pulse runs again after the delay its task returns; stop prevents further runs at once,
// and wait joins the run in progress.
func TestPulseStopWaitsForTheRunInProgress(t *testing.T) {
	started := make(chan int, 10)
	release := make(chan struct{})
	runs := 0
	p := startPulse(time.Millisecond, func() time.Duration {
		runs++
		started <- runs
		if runs == 2 {
			<-release
		}
		return time.Millisecond
	})
	deadline := time.After(10 * time.Second)
	for n := 0; n < 2; {
		select {
		case n = <-started:
		case <-deadline:
			t.Fatal("the pulse did not run twice")
		}
	}
	p.stop() // returns while the second run is blocked
	waited := make(chan struct{})
	go func() {
		p.wait()
		close(waited)
	}()
	select {
	case <-waited:
		t.Fatal("wait returned while a run was in progress")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not return once the run ended")
	}
	p.mu.Lock()
	active := p.t.Stop()
	p.mu.Unlock()
	if active || runs != 2 {
		t.Fatalf("after stop: timer active %v, runs %d (want 2)", active, runs)
	}
}

// An idle Conn runs two goroutines, its reader and its writer: its keepalive and its watch of
// Run's ctx run on timers (a relay holds thousands of idle Conns).
func TestIdleConnRunsReaderAndWriterOnly(t *testing.T) {
	agent, relay := wsPair(t, WSConfig{})
	peer := NewConn(agent, ConnConfig{})
	runConn(t, peer, nil)
	c := NewConn(relay, ConnConfig{PingEvery: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- c.Run(ctx, func(Frame) error { return nil }) }()
	deadline := time.Now().Add(10 * time.Second)
	for n := connGoroutines(); n != 4; n = connGoroutines() { // 2 for c, 2 for peer
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines run Conn code, want 4 (reader and writer of each Conn)", n)
		}
		time.Sleep(time.Millisecond) // polling
	}
	cancel() // ctx ends: Run closes the Conn as shutdown
	select {
	case <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its ctx ended")
	}
	if r := c.Reason(); r != ReasonShutdown {
		t.Fatalf("reason %v, want shutdown", r)
	}
}

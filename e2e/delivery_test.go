package e2e

import (
	"syscall"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// transports are the tunnel kinds every delivery scenario runs over.
var transports = []string{"ws", "quic"}

func forEachTransport(t *testing.T, fn func(t *testing.T, tr string)) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) { fn(t, tr) })
	}
}

// TestBurst: 2,000 webhooks of 1 KiB from 16 concurrent senders, every one delivered once,
// byte-exact.
func TestBurst(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		w := newWorld(t, worldOpts{transport: tr})
		s := &sender{w: w}
		s.sendN(2000, 16)
		if dups := w.verify(s, 60*time.Second); dups != 0 {
			t.Errorf("%d duplicate deliveries without any crash", dups)
		}
	})
}

// TestAgentStopped: the agent is stopped (SIGTERM) while 300 webhooks arrive; all are delivered
// after it starts again, none twice.
func TestAgentStopped(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		w := newWorld(t, worldOpts{transport: tr})
		s := &sender{w: w}
		s.sendN(20, 4)
		w.verify(s, 30*time.Second)
		a := w.agents[0]
		if !a.signal(syscall.SIGTERM, 20*time.Second) {
			t.Fatal("agent did not exit within 20s of SIGTERM")
		}
		if c := a.exitCode(); c != 0 {
			t.Errorf("agent exit code after SIGTERM = %d, want 0", c)
		}
		s.sendN(300, 8)
		a.start()
		if dups := w.verify(s, 60*time.Second); dups != 0 {
			t.Errorf("%d duplicate deliveries without any crash", dups)
		}
	})
}

// TestAgentKilled: the agent is killed with SIGKILL three times during a stream while the
// target answers slowly; nothing accepted is lost.
func TestAgentKilled(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		w := newWorld(t, worldOpts{transport: tr, delay: 20 * time.Millisecond})
		s := &sender{w: w}
		done := make(chan struct{})
		go func() { defer close(done); s.sendN(900, 8) }()
		a := w.agents[0]
		for i := range 3 {
			waitAccepted(t, s, 150*(i+1))
			a.kill()
			a.start()
		}
		<-done
		dups := w.verify(s, 90*time.Second)
		t.Logf("%d accepted, %d redelivered after the kills", len(s.accepted()), dups)
	})
}

// TestRelayKilled: the relay is killed twice during a stream, once while the agent is away so
// the relay dies holding a backlog; nothing accepted is lost.
func TestRelayKilled(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr string) {
		w := newWorld(t, worldOpts{transport: tr})
		s := &sender{w: w}
		done := make(chan struct{})
		go func() { defer close(done); s.sendN(600, 8) }()
		waitAccepted(t, s, 150)
		w.relay.kill()
		w.relay.start()
		w.waitRelay()

		a := w.agents[0]
		if !a.signal(syscall.SIGTERM, 20*time.Second) {
			t.Fatal("agent did not stop")
		}
		waitAccepted(t, s, 400)
		w.relay.kill() // dies holding a backlog nobody has received
		w.relay.start()
		w.waitRelay()
		a.start()
		<-done
		dups := w.verify(s, 90*time.Second)
		t.Logf("%d accepted, %d redelivered after the kills", len(s.accepted()), dups)
	})
}

// waitAccepted waits until the sender has n accepted webhooks.
func waitAccepted(t *testing.T, s *sender, n int) {
	t.Helper()
	testutil.CheckFor(t, 60*time.Second, 10*time.Millisecond, func() error {
		if got := len(s.accepted()); got < n {
			return errorf("%d of %d accepted so far", got, n)
		}
		return nil
	})
}

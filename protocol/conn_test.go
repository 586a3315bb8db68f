package protocol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// transports yields a fresh (agent side, relay side) tunnel pair per transport, on loopback.
var transports = []struct {
	name string
	pair func(t *testing.T) (Tunnel, Tunnel)
}{
	{"websocket", func(t *testing.T) (Tunnel, Tunnel) { return wsPair(t, WSConfig{}) }},
	{"quic", func(t *testing.T) (Tunnel, Tunnel) { return newQUICEnv(t, QUICConfig{}).pair(t, "") }},
}

func eachTransport(t *testing.T, fn func(t *testing.T, agent, relay Tunnel)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			agent, relay := tr.pair(t)
			fn(t, agent, relay)
		})
	}
}

// runConn runs c in a goroutine with handle (nil: drop frames); the returned function waits
// for Run, failing the test after 10s, and returns its error.
func runConn(t *testing.T, c *Conn, handle func(Frame) error) func() error {
	t.Helper()
	if handle == nil {
		handle = func(Frame) error { return nil }
	}
	res := make(chan error, 1)
	go func() { res <- c.Run(context.Background(), handle) }()
	var once sync.Once
	var err error
	wait := func() error {
		once.Do(func() {
			select {
			case err = <-res:
			case <-time.After(10 * time.Second):
				buf := make([]byte, 1<<20)
				t.Fatalf("Run did not return:\n%s", buf[:runtime.Stack(buf, true)])
			}
		})
		return err
	}
	t.Cleanup(func() {
		c.Close(ReasonShutdown, nil)
		wait()
	})
	return wait
}

// readFrames reads frames from tun, skipping Pings, until n were read.
func readFrames(t *testing.T, tun Tunnel, n int) []Frame {
	t.Helper()
	var out []Frame
	for len(out) < n {
		f, err := readWithin(t, tun, 10*time.Second)
		if err != nil {
			t.Fatalf("after %d frames: %v", len(out), err)
		}
		if _, ping := f.(*Ping); !ping {
			out = append(out, f)
		}
	}
	return out
}

// connGoroutines counts the goroutines running Conn code.
func connGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("protocol.(*Conn).")) {
			n++
		}
	}
	return n
}

func TestConnKeepsOrderAndChunksBodies(t *testing.T) {
	eachTransport(t, func(t *testing.T, agent, relay Tunnel) {
		c := NewConn(relay, ConnConfig{Chunk: 64 << 10})
		runConn(t, c, nil)
		ctx := context.Background()
		// Frames on one stream (the control stream, on QUIC) keep the order they were sent in.
		const n = 300
		for i := range n {
			if err := c.Send(ctx, &Nack{ID: fmt.Sprintf("n%03d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		for i, f := range readFrames(t, agent, n) {
			if nk, ok := f.(*Nack); !ok || nk.ID != fmt.Sprintf("n%03d", i) {
				t.Fatalf("frame %d: %#v", i, f)
			}
		}
		// Webhooks leave in chunks and arrive byte-exact.
		bodies := map[string][]byte{}
		for i := range 4 {
			id := fmt.Sprintf("w%d", i)
			bodies[id] = bytes.Repeat([]byte{byte(i), 0xff, byte(i * 3)}, (300<<10)/3+i)
			if err := c.Send(ctx, &Webhook{ID: id, Endpoint: "ep", Body: bodies[id]}); err != nil {
				t.Fatal(err)
			}
		}
		asm := &Assembler{}
		chunks := 0
		for got := 0; got < len(bodies); {
			f := readFrames(t, agent, 1)[0]
			if _, ok := f.(*Chunk); ok {
				chunks++
			}
			if wh, ok := f.(*Webhook); ok && len(wh.Body) > 64<<10 {
				t.Fatalf("webhook %s carries %d body bytes, chunk is 64KiB", wh.ID, len(wh.Body))
			}
			w, done, err := asm.Add(f)
			if err != nil {
				t.Fatal(err)
			}
			if done {
				got++
				if !bytes.Equal(w.Body, bodies[w.ID]) || w.BodyLen != int64(len(bodies[w.ID])) {
					t.Fatalf("webhook %s: %d bytes arrived, want %d, or not the same", w.ID,
						len(w.Body), len(bodies[w.ID]))
				}
			}
		}
		if chunks < 4*4 {
			t.Fatalf("%d Chunk frames for four 300KiB bodies in 64KiB chunks", chunks)
		}
	})
}

func TestConnGathersAcks(t *testing.T) {
	eachTransport(t, func(t *testing.T, agent, relay Tunnel) {
		c := NewConn(agent, ConnConfig{MaxAckIDs: 100})
		ctx := context.Background()
		// Ids waiting together leave together, at most MaxAckIDs in a frame.
		var want []string
		for i := range 130 {
			want = append(want, fmt.Sprint("a", i))
			if err := c.Ack(ctx, want[i]); err != nil {
				t.Fatal(err)
			}
		}
		runConn(t, c, nil)
		fs := readFrames(t, relay, 2)
		a1, ok1 := fs[0].(*Ack)
		a2, ok2 := fs[1].(*Ack)
		if !ok1 || !ok2 || len(a1.IDs) != 100 || len(a2.IDs) != 30 {
			t.Fatalf("frames %#v, %#v: want Acks of 100 and 30 ids", fs[0], fs[1])
		}
		if got := append(a1.IDs, a2.IDs...); !equalStrings(got, want) {
			t.Fatalf("acked %v, want %v", got, want)
		}
		// Ids acked at once from many goroutines (a group commit's store workers) share frames.
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				if err := c.Ack(ctx, fmt.Sprint("b", i)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		frames, ids := 0, 0
		for ids < 50 {
			a, ok := readFrames(t, relay, 1)[0].(*Ack)
			if !ok {
				t.Fatalf("not an Ack: %#v", a)
			}
			frames++
			ids += len(a.IDs)
		}
		if ids != 50 || frames >= 50 {
			t.Fatalf("50 ids in %d frames (%d ids): not gathered", frames, ids)
		}
	})
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

// corkCounter wraps a real tunnel to see the writer's bursts: frames written between Cork and
// Uncork.
type corkCounter struct {
	Tunnel
	mu     sync.Mutex
	corked bool
	burst  int
	bursts []int
}

func (c *corkCounter) WriteFrame(f Frame) error {
	c.mu.Lock()
	if c.corked {
		c.burst++
	}
	c.mu.Unlock()
	return c.Tunnel.WriteFrame(f)
}

func (c *corkCounter) Cork() {
	c.mu.Lock()
	c.corked, c.burst = true, 0
	c.mu.Unlock()
	c.Tunnel.(Corker).Cork()
}

func (c *corkCounter) Uncork() error {
	c.mu.Lock()
	c.corked = false
	c.bursts = append(c.bursts, c.burst)
	c.mu.Unlock()
	return c.Tunnel.(Corker).Uncork()
}

func TestConnCorksBursts(t *testing.T) {
	agent, relay := wsPair(t, WSConfig{})
	cc := &corkCounter{Tunnel: relay}
	c := NewConn(cc, ConnConfig{Burst: 4, Queue: 16})
	for i := range 10 {
		if err := c.Send(context.Background(), &Report{ID: fmt.Sprint("r", i)}); err != nil {
			t.Fatal(err)
		}
	}
	runConn(t, c, nil)
	for i, f := range readFrames(t, agent, 10) {
		if r, ok := f.(*Report); !ok || r.ID != fmt.Sprint("r", i) {
			t.Fatalf("frame %d: %#v", i, f)
		}
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if fmt.Sprint(cc.bursts) != "[4 4 2]" {
		t.Fatalf("bursts %v, want [4 4 2]: ten frames ready together, burst of 4", cc.bursts)
	}
}

func TestConnControlAheadOfData(t *testing.T) {
	eachTransport(t, func(t *testing.T, agent, relay Tunnel) {
		// The relay side's queue is full of data when the agent's Ping arrives: its Pong still
		// leaves first.
		c := NewConn(relay, ConnConfig{Queue: 8})
		for i := range 8 {
			if err := c.Send(context.Background(), &Report{ID: fmt.Sprint("r", i)}); err != nil {
				t.Fatal(err)
			}
		}
		c.ctrl <- &Pong{Nonce: 9} // what the reader queues for a Ping
		// A relay's Recorded goes the same way, through SendControl (it would block on Send).
		if err := c.SendControl(context.Background(), &Recorded{IDs: []string{"x"}}); err != nil {
			t.Fatal(err)
		}
		runConn(t, c, nil)
		fs := readFrames(t, agent, 10)
		if p, ok := fs[0].(*Pong); !ok || p.Nonce != 9 {
			t.Fatalf("first frame %#v, want the Pong", fs[0])
		}
		if r, ok := fs[1].(*Recorded); !ok || r.IDs[0] != "x" {
			t.Fatalf("second frame %#v, want the Recorded", fs[1])
		}
	})
}

func TestConnAnswersPingAndStaysUp(t *testing.T) {
	eachTransport(t, func(t *testing.T, agent, relay Tunnel) {
		cfg := ConnConfig{PingEvery: 30 * time.Millisecond, DeadAfter: 200 * time.Millisecond}
		a, r := NewConn(agent, cfg), NewConn(relay, cfg)
		waitA, waitR := runConn(t, a, nil), runConn(t, r, nil)
		// Idle for many DeadAfter: Pings and Pongs keep both sides up.
		select {
		case <-a.Done():
			t.Fatalf("agent side closed: %v", waitA())
		case <-r.Done():
			t.Fatalf("relay side closed: %v", waitR())
		case <-time.After(time.Second):
		}
	})
}

func TestConnPongForRawPing(t *testing.T) {
	eachTransport(t, func(t *testing.T, agent, relay Tunnel) {
		var handled []Frame
		var mu sync.Mutex
		c := NewConn(relay, ConnConfig{})
		runConn(t, c, func(f Frame) error {
			mu.Lock()
			handled = append(handled, f)
			mu.Unlock()
			return nil
		})
		if err := agent.WriteFrame(&Ping{Nonce: 77}); err != nil {
			t.Fatal(err)
		}
		if err := agent.WriteFrame(&Ack{IDs: []string{"x"}}); err != nil {
			t.Fatal(err)
		}
		if p, ok := readFrames(t, agent, 1)[0].(*Pong); !ok || p.Nonce != 77 {
			t.Fatalf("answer %#v, want Pong 77", p)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			n := len(handled)
			mu.Unlock()
			if n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("handle saw %d frames, want only the Ack", n)
			}
			time.Sleep(5 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		if _, ok := handled[0].(*Ack); !ok {
			t.Fatalf("handle got %#v", handled[0])
		}
	})
}

func TestConnDetectsSilentPeer(t *testing.T) {
	eachTransport(t, func(t *testing.T, agent, relay Tunnel) {
		// The agent side's tunnel is alive at the transport level but nobody reads it or
		// answers: a half-open tunnel as far as frames go.
		_ = agent
		dead := 300 * time.Millisecond
		c := NewConn(relay, ConnConfig{PingEvery: 50 * time.Millisecond, DeadAfter: dead})
		start := time.Now()
		wait := runConn(t, c, nil)
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("silent peer not noticed")
		}
		// Run itself may take longer: closing QUIC waits a while for the peer.
		took := time.Since(start)
		if err := wait(); !errors.Is(err, ErrPeerTimeout) || c.Reason() != ReasonPeerTimeout {
			t.Fatalf("run: %v, reason %v; want a peer timeout", err, c.Reason())
		}
		if took < dead || took > dead+time.Second {
			t.Fatalf("silent peer noticed after %v, DeadAfter %v", took, dead)
		}
		if n := connGoroutines(); n != 0 {
			t.Fatalf("%d Conn goroutines left after Run", n)
		}
	})
}

func TestConnFinalFrameThenClose(t *testing.T) {
	eachTransport(t, func(t *testing.T, agent, relay Tunnel) {
		c := NewConn(relay, ConnConfig{})
		wait := runConn(t, c, nil)
		if err := c.SendWait(context.Background(), &Report{ID: "before"}); err != nil {
			t.Fatal(err)
		}
		c.Close(ReasonShutdown, &GoAway{Reason: "restart", ReconnectAfter: time.Second})
		c.Close(ReasonReplaced, nil) // the first reason wins
		fs := readFrames(t, agent, 2)
		if g, ok := fs[1].(*GoAway); !ok || g.Reason != "restart" {
			t.Fatalf("frames %#v, want the Report then the GoAway", fs)
		}
		if _, err := readWithin(t, agent, 10*time.Second); err == nil {
			t.Fatal("tunnel still open after the final frame")
		}
		wait()
		if c.Reason() != ReasonShutdown || c.Reason().String() != "shutdown" {
			t.Fatalf("reason %v", c.Reason())
		}
		if n := connGoroutines(); n != 0 {
			t.Fatalf("%d Conn goroutines left after Run", n)
		}
		if err := c.Send(context.Background(), &Report{ID: "after"}); !errors.Is(err, ErrClosed) {
			t.Fatalf("send after close: %v", err)
		}
	})
}

func TestConnCloseWithoutFinal(t *testing.T) {
	eachTransport(t, func(t *testing.T, agent, relay Tunnel) {
		c := NewConn(relay, ConnConfig{})
		wait := runConn(t, c, nil)
		c.Close(ReasonRevoked, nil)
		for {
			f, err := readWithin(t, agent, 10*time.Second)
			if err != nil {
				break
			}
			if _, ok := f.(*Ping); !ok {
				t.Fatalf("frame %#v after a close without final frame", f)
			}
		}
		if err := wait(); err == nil {
			t.Fatal("run returned nil")
		}
		if c.Reason().String() != "revoked" {
			t.Fatalf("reason %v", c.Reason())
		}
	})
}

func TestConnRunWaitsForBlockedWriter(t *testing.T) {
	// The peer reads nothing: the writer blocks once the transport's buffers are full. Close
	// with a final frame that cannot go: Run returns after FinalGrace, with the writer gone.
	eachTransport(t, func(t *testing.T, agent, relay Tunnel) {
		grace := 300 * time.Millisecond
		c := NewConn(relay, ConnConfig{FinalGrace: grace})
		wait := runConn(t, c, nil)
		body := make([]byte, 512<<10)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		for i := 0; ; i++ { // until the queue is full too
			if err := c.Send(ctx, &Webhook{ID: fmt.Sprint("w", i), Body: body}); err != nil {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("send %d: %v", i, err)
				}
				break
			}
		}
		start := time.Now()
		c.Close(ReasonShutdown, &GoAway{Reason: "stop"})
		wait()
		if took := time.Since(start); took < grace || took > grace+5*time.Second {
			t.Fatalf("run returned %v after close, grace %v", took, grace)
		}
		if n := connGoroutines(); n != 0 {
			t.Fatalf("%d Conn goroutines left after Run", n)
		}
	})
}

func TestConnSendWaitsForRoom(t *testing.T) {
	_, relay := wsPair(t, WSConfig{})
	c := NewConn(relay, ConnConfig{Queue: 2}) // not running: nothing drains the queue
	for i := range 2 {
		if err := c.Send(context.Background(), &Report{ID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Send(ctx, &Report{ID: "3"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send to a full queue: %v, want the context's deadline", err)
	}
	c.Close(ReasonShutdown, nil)
	if err := c.Send(context.Background(), &Report{ID: "4"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
	if err := c.Ack(context.Background(), "x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("ack after close: %v", err)
	}
}

func TestConnRefusesTooLargeFrame(t *testing.T) {
	// The relay side accepts smaller frames than the agent side sends. (Over WebSocket the
	// message limit refuses such a frame before the codec sees it.)
	env := newQUICEnv(t, QUICConfig{MaxFrame: 4 << 10})
	tlsConf, err := PinnedTLSConfig(env.fingerprint, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	agent, err := DialQUIC(ctx, env.ln.Addr().String(), tlsConf, QUICConfig{})
	if err != nil {
		t.Fatal(err)
	}
	relay, err := env.ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Close(); relay.Close() })

	c := NewConn(relay, ConnConfig{MaxFrame: 4 << 10})
	wait := runConn(t, c, nil)
	if err := agent.WriteFrame(&Report{ID: strings.Repeat("x", 8<<10)}); err != nil {
		t.Fatal(err)
	}
	f := readFrames(t, agent, 1)[0]
	if e, ok := f.(*Error); !ok || e.Code != CodeLimit || e.Reason != "frame over 4096 bytes" {
		t.Fatalf("answer %#v, want Error{CodeLimit, frame over 4096 bytes}", f)
	}
	if err := wait(); !errors.Is(err, ErrFrameTooLarge) || c.Reason() != ReasonFrameTooLarge {
		t.Fatalf("run: %v, reason %v", err, c.Reason())
	}
}

func TestConnReportWritten(t *testing.T) {
	eachTransport(t, func(t *testing.T, agent, relay Tunnel) {
		c := NewConn(agent, ConnConfig{})
		runConn(t, c, nil)
		for i := range 5 {
			if err := c.Send(context.Background(), &Report{ID: fmt.Sprint("r", i)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.SendWait(context.Background(), &Report{ID: "last"}); err != nil {
			t.Fatal(err)
		}
		fs := readFrames(t, relay, 6)
		if r, ok := fs[5].(*Report); !ok || r.ID != "last" {
			t.Fatalf("last frame %#v", fs[5])
		}
		c.Close(ReasonClosed, nil)
		if err := c.SendWait(context.Background(), &Report{ID: "late"}); !errors.Is(err, ErrClosed) {
			t.Fatalf("send wait after close: %v", err)
		}
	})
}

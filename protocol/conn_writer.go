package protocol

import (
	"fmt"
	"runtime"
	"time"
)

// ackYields is how many idle yields in a row end the gathering of an Ack frame.
const ackYields = 2

// writeLoop is the only writer of the tunnel. Frames that are ready together are written
// corked, in one system call; a frame's done hears its result once it has left. On Close it
// writes the final frame, if any, and closes the tunnel.
func (c *Conn) writeLoop() {
	defer close(c.writerDone)
	var dones []chan<- error
	for {
		o, ok := c.next()
		if !ok {
			c.writeFinal()
			return
		}
		if c.corker != nil {
			c.corker.Cork()
		}
		err := c.write(o, &dones)
		for n := 1; err == nil && n < c.cfg.Burst; n++ {
			if o, ok = c.ready(); !ok {
				break
			}
			err = c.write(o, &dones)
		}
		if c.corker != nil {
			if uerr := c.corker.Uncork(); err == nil {
				err = uerr
			}
		}
		for _, d := range dones { // a corked frame has left only now
			d <- err
		}
		clear(dones)
		dones = dones[:0]
		if err != nil {
			c.fail(ReasonWrite, fmt.Errorf("write frame: %w", err))
			return
		}
	}
}

func (c *Conn) write(o outFrame, dones *[]chan<- error) error {
	if o.done != nil {
		*dones = append(*dones, o.done)
	}
	if w, ok := o.f.(*Webhook); ok {
		return SendWebhook(c.t, w, c.cfg.Chunk)
	}
	return c.t.WriteFrame(o.f)
}

// next waits for a frame for the writer, control frames first; false once the Conn closes.
func (c *Conn) next() (outFrame, bool) {
	select {
	case <-c.done:
		return outFrame{}, false
	case f := <-c.ctrl:
		return outFrame{f: f}, true
	default:
	}
	select {
	case <-c.done:
		return outFrame{}, false
	case f := <-c.ctrl:
		return outFrame{f: f}, true
	case id := <-c.acks:
		return outFrame{f: &Ack{IDs: c.gatherAcks([]string{id})}}, true
	case o := <-c.data:
		return o, true
	}
}

// ready returns a frame waiting for the writer, if any, control frames first: a queued frame,
// or an Ack of the ids waiting. False when none is, or the Conn is closing.
func (c *Conn) ready() (outFrame, bool) {
	select {
	case <-c.done:
		return outFrame{}, false
	case f := <-c.ctrl:
		return outFrame{f: f}, true
	default:
	}
	select {
	case id := <-c.acks:
		ids := []string{id}
	drain:
		for len(ids) < c.cfg.MaxAckIDs {
			select {
			case id := <-c.acks:
				ids = append(ids, id)
			default:
				break drain
			}
		}
		return outFrame{f: &Ack{IDs: ids}}, true
	case o := <-c.data:
		return o, true
	default:
		return outFrame{}, false
	}
}

// gatherAcks adds the ids waiting to ids, up to MaxAckIDs. The callers that ack the webhooks
// of one group commit are woken one after the other, so the writer, woken by the first, would
// otherwise send an Ack frame per id: it yields to let the others, runnable by then, queue
// theirs, until a few yields in a row bring nothing.
func (c *Conn) gatherAcks(ids []string) []string {
	for idle := 0; len(ids) < c.cfg.MaxAckIDs && idle < ackYields; {
		select {
		case id := <-c.acks:
			ids = append(ids, id)
			idle = 0
		default:
			idle++
			runtime.Gosched()
		}
	}
	return ids
}

// writeFinal writes the final frame, if Close gave one, and closes the tunnel.
func (c *Conn) writeFinal() {
	c.mu.Lock()
	f := c.final
	c.mu.Unlock()
	if f != nil {
		if err := c.t.WriteFrame(f); err != nil {
			c.log.Debug("final frame not sent", "type", f.Type(), "err", err)
		}
	}
	c.t.Close()
}

// keepalive runs every so often while the Conn runs: it closes the Conn when nothing came
// from the peer for DeadAfter, and sends a Ping every PingEvery (jittered). It returns the
// delay to its next run, 0 once the Conn is closing. (Run closes the Conn with ReasonShutdown
// when its ctx ends, and then gives a final frame FinalGrace: graceFinal.)
func (c *Conn) keepalive() time.Duration {
	select {
	case <-c.done:
		return 0
	default:
	}
	now := time.Now()
	idle := now.Sub(c.epoch) - time.Duration(c.lastRead.Load())
	if idle >= c.cfg.DeadAfter {
		c.fail(ReasonPeerTimeout, fmt.Errorf("%w: no frame for %s", ErrPeerTimeout,
			idle.Round(time.Millisecond)))
		return 0
	}
	if !now.Before(c.nextPing) {
		c.nonce++
		select { // best effort: a full queue means the peer is not reading anyway
		case c.ctrl <- &Ping{Nonce: c.nonce}:
		default:
		}
		c.nextPing = now.Add(jitter(c.cfg.PingEvery))
	}
	return max(min(c.nextPing.Sub(now), c.cfg.DeadAfter-idle), time.Millisecond)
}

// graceFinal waits for the writer to write the final frame, at most FinalGrace, then makes
// sure the tunnel is closed.
func (c *Conn) graceFinal() {
	c.mu.Lock()
	final := c.final
	c.mu.Unlock()
	if final == nil {
		return
	}
	grace := time.NewTimer(c.cfg.FinalGrace)
	defer grace.Stop()
	select {
	case <-c.writerDone:
	case <-grace.C:
		c.log.Debug("final frame not written in time", "type", final.Type(), "grace", c.cfg.FinalGrace)
		c.t.Close()
	}
}

package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// dispatchLoop leases ready webhooks of the session's endpoints while the window has room
// (and the agent holds fewer than holdMax young webhooks without an outcome, holding.go) and
// Sends them on the Conn; it waits for new webhooks, a due retry or window room. Ordered
// endpoints go head by head (order.go); the others in windows.
func (s *session) dispatchLoop() {
	var ages *time.Timer // while the agent holds holdMax: when the oldest stops counting
	defer func() {
		if ages != nil {
			ages.Stop()
		}
	}()
	for {
		held, agesAt := s.holds.held(time.Now())
		s.mu.Lock()
		// What is in flight is held once acked: a report makes room too, and signals; so
		// does a held webhook ageing, at agesAt. Held back, the dispatcher waits for room for
		// a few (holdMax/16) to lease a batch, not one webhook per report.
		free := s.window - len(s.inflight)
		holdRoom := s.holdMax - held - len(s.inflight)
		heldBack := holdRoom < free && holdRoom < max(s.holdMax/16, 1)
		free = min(free, holdRoom)
		if heldBack {
			free = 0
		}
		if s.inBytes >= maxInflightBytes {
			free = 0 // an ack makes room, and signals
		}
		s.mu.Unlock()
		if free <= 0 {
			var aged <-chan time.Time
			if heldBack && !agesAt.IsZero() {
				if ages == nil {
					ages = time.NewTimer(time.Until(agesAt))
				} else {
					ages.Reset(time.Until(agesAt))
				}
				aged = ages.C
			}
			select {
			case <-s.wake:
				continue
			case <-aged:
				continue
			case <-s.conn.Done():
				return
			}
		}
		// Take the wake-up channels before leasing, so an append in between is not missed.
		waits := make([]<-chan struct{}, len(s.endpoints))
		var due time.Time // the earliest retry waiting; zero when none
		for i, e := range s.unordered {
			var d time.Time
			waits[i], d = s.queue.Ready(s.group, e)
			due = earliest(due, d)
		}
		for i, e := range s.ordered {
			// Its due is LeaseHead's: Ready's may be a record behind a head that waits.
			waits[len(s.unordered)+i], _ = s.queue.Ready(s.group, e)
		}
		n, err := s.leaseAndQueue(free)
		if err == nil && len(s.ordered) > 0 {
			var m int
			var d time.Time
			m, d, err = s.leaseHeads(free - n)
			n += m
			due = earliest(due, d)
		}
		switch {
		case errors.Is(err, persist.ErrClosed), errors.Is(err, errStopping), errors.Is(err, context.Canceled):
			return
		case err != nil:
			s.log.Warn("lease failed", "err", err)
			if !s.sleep(time.Second) {
				return
			}
			continue
		case n > 0:
			continue
		}
		if !s.waitReady(waits, due) {
			return
		}
	}
}

var errStopping = errors.New("session stopping")

// leaseAndQueue leases up to free webhooks, round-robin over the endpoints, marks them in
// flight and Sends them on the Conn (waiting while its small queue is full). It returns how
// many it queued.
func (s *session) leaseAndQueue(free int) (int, error) {
	queued := 0
	for i := 0; i < len(s.unordered) && free > 0; i++ {
		ep := s.unordered[(s.next+i)%len(s.unordered)]
		recs, err := s.queue.Lease(s.ctx, s.group, ep, min(free, s.leaseBatch()), s.leaseTTL)
		if err != nil {
			return queued, err
		}
		fresh, ok := s.addInflight(recs)
		if !ok {
			return queued, errStopping // run releases what addInflight took
		}
		for i, rec := range fresh {
			f, err := s.webhookFrame(rec)
			if err != nil {
				s.putBack(fresh[i:])
				return queued, err
			}
			if err := s.conn.Send(s.ctx, f); err != nil {
				return queued, errStopping // run releases what is in flight
			}
			queued++
		}
		free -= len(fresh)
	}
	s.next++
	return queued, nil
}

// addInflight records leased webhooks as in flight and returns the ones not already in
// flight here (a lease that expired and came back to this session is not sent twice).
// False when the session is stopping: the records are released at once.
func (s *session) addInflight(recs []*persist.Record) ([]*persist.Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isStopping() {
		if len(recs) > 0 {
			s.queue.Release(context.Background(), s.group, leasesOf(recs)) // best effort: else the lease ends
		}
		return nil, false
	}
	if len(recs) > 0 {
		s.keepLeasesLocked()
	}
	fresh := recs[:0]
	for _, r := range recs {
		if _, dup := s.inflight[r.ID]; !dup {
			s.inflight[r.ID] = flight{endpoint: r.Queue, lease: r.Lease, size: r.BodyLen}
			s.inBytes += r.BodyLen
			fresh = append(fresh, r)
			s.metrics.dispatched.WithLabelValues(r.Queue, s.group).Inc()
		}
	}
	return fresh, true
}

// putBack takes recs out of flight and makes them ready again (they were not sent).
func (s *session) putBack(recs []*persist.Record) {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	if len(s.takeInflight(nil, ids...)) > 0 {
		s.queue.Release(context.Background(), s.group, leasesOf(recs)) // best effort: else the lease ends
	}
}

// leasesOf maps the records' ids to their leases.
func leasesOf(recs []*persist.Record) map[string]uint64 {
	m := make(map[string]uint64, len(recs))
	for _, r := range recs {
		m[r.ID] = r.Lease
	}
	return m
}

// waitReady blocks until one of waits fires, the earliest retry is due, the fallback poll
// passes, or the session stops (false); with ordered endpoints, also until signal (an
// ordered head acked, nacked or reported, and then recorded; a claim freed).
func (s *session) waitReady(waits []<-chan struct{}, due time.Time) bool {
	d := pollEvery
	if !due.IsZero() {
		d = min(d, max(time.Until(due), 50*time.Millisecond))
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	cases := make([]reflect.SelectCase, 0, len(waits)+2)
	cases = append(cases,
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(s.conn.Done())},
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)})
	for _, w := range waits {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w)})
	}
	if len(s.ordered) > 0 {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(s.wake)})
	}
	chosen, _, _ := reflect.Select(cases)
	return chosen != 0
}

// earliest is the earlier of two times, where zero means none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// sleep waits d unless the session stops first (false).
func (s *session) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.conn.Done():
		return false
	}
}

// webhookFrame is the frame that carries leased record r. A body the queue left out of the
// lease (a large one, stored in parts) is streamed from Queue.Body as the frame is sent, a
// chunk at a time.
func (s *session) webhookFrame(r *persist.Record) (*protocol.Webhook, error) {
	var from io.Reader
	bodyLen := int64(len(r.Body))
	if r.Body == nil && r.BodyLen > 0 {
		rc, err := s.queue.Body(s.ctx, r.ID)
		if err != nil {
			return nil, fmt.Errorf("read body of %s: %w", r.ID, err)
		}
		from, bodyLen = rc, r.BodyLen
	}
	hs := make([]protocol.Header, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = protocol.Header{Name: h.Name, Value: h.Value}
	}
	return &protocol.Webhook{
		ID:         r.ID,
		Endpoint:   r.Queue,
		ReceivedAt: r.ReceivedAt,
		Replay:     r.Replay,
		Sync:       s.syncFlag(r),
		Method:     r.Method,
		Path:       r.Path,
		Query:      r.Query,
		Headers:    hs,
		BodyLen:    bodyLen,
		Body:       r.Body,
		BodyFrom:   from,
	}, nil
}

// leaseBatch is how many webhooks one Lease takes at most.
func (s *session) leaseBatch() int {
	if b, ok := s.queue.(LeaseBatcher); ok {
		return b.LeaseBatch()
	}
	return leaseBatch
}

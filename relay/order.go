package relay

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// Ordered endpoints (Endpoint.Ordered) are served head by head: each group of one is served
// by one session at a time (the first to claim it keeps it until it ends), which has at most
// one webhook of it in flight, leased with Queue.LeaseHead only when the one before was
// acked, nacked or reported. The queue never hands out a record behind a head that is leased
// or waits out a nack, so webhooks go out in id order, the order of the 202s; their frames
// carry the endpoint as OrderKey, so that a QUIC tunnel keeps them on one stream.

// splitOrdered splits the granted endpoints into those cfg declares unordered and ordered,
// each in the order granted.
func splitOrdered(cfg *Config, granted []string) (unordered, ordered []string) {
	for _, name := range granted {
		i := slices.IndexFunc(cfg.Endpoints, func(e Endpoint) bool { return e.Name == name })
		if i >= 0 && cfg.Endpoints[i].Ordered {
			ordered = append(ordered, name)
		} else {
			unordered = append(unordered, name)
		}
	}
	return unordered, ordered
}

// ownerKey names one ordered endpoint of one group.
type ownerKey struct{ group, endpoint string }

// owners keeps which session serves each ordered endpoint of a group. The hub holds it and
// gives each session a claim function over it.
type owners struct {
	mu sync.Mutex
	by map[ownerKey]*session
}

// claimer returns s's claim function: true when s serves endpoint of its group, taking it
// when no session does or the one that does is stopping. A stopping session sends nothing
// more and has released its head (releaseHeads), so that the agent's next session, which
// replaces it at once, need not wait until its tunnel has closed.
func (o *owners) claimer(s *session) func(endpoint string) bool {
	return func(endpoint string) bool {
		k := ownerKey{s.group, endpoint}
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.by == nil {
			o.by = map[ownerKey]*session{}
		}
		if cur := o.by[k]; cur != nil && cur != s && !cur.isStopping() {
			return false
		}
		o.by[k] = s
		return true
	}
}

// drop frees every endpoint s serves, once it has ended; it reports whether there was one,
// so that the caller wakes the other sessions to take it over.
func (o *owners) drop(s *session) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	freed := false
	for k, cur := range o.by {
		if cur == s {
			delete(o.by, k)
			freed = true
		}
	}
	return freed
}

// leaseHeads sends the head of each ordered endpoint that this session serves and has
// nothing of in flight, while free allows. It returns how many it sent and the earliest time
// a head that waits out a nack is due (zero when none).
func (s *session) leaseHeads(free int) (int, time.Time, error) {
	sent := 0
	var due time.Time
	for _, ep := range s.ordered {
		if free <= 0 {
			break
		}
		if s.headOut(ep) || !s.claim(ep) {
			continue
		}
		rec, d, err := s.queue.LeaseHead(s.ctx, s.group, ep, s.leaseTTL)
		if err != nil {
			return sent, due, err
		}
		if rec == nil {
			due = earliest(due, d)
			continue
		}
		fresh, ok := s.addHead(rec)
		if !ok {
			return sent, due, errStopping // addHead released it
		}
		if !fresh {
			continue // in flight here already (cannot be: nothing of ep is)
		}
		f, err := s.webhookFrame(rec)
		if err != nil {
			s.putBack([]*persist.Record{rec})
			return sent, due, err
		}
		f.OrderKey = ep
		if err := s.conn.Send(s.ctx, f); err != nil {
			return sent, due, errStopping // run releases what is in flight
		}
		sent++
		free--
	}
	return sent, due, nil
}

// headOut reports whether the session has a webhook of ordered endpoint ep in flight.
func (s *session) headOut(ep string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.heads[ep]
	return ok
}

// addHead records a leased head as in flight, and reports whether it was not already; ok
// is false when the session is stopping (then it is released at once).
func (s *session) addHead(r *persist.Record) (fresh, ok bool) {
	added, ok := s.addInflight([]*persist.Record{r})
	if !ok || len(added) == 0 {
		return false, ok
	}
	s.mu.Lock()
	s.heads[r.Queue] = r.ID
	s.mu.Unlock()
	return true, true
}

// releaseHeads makes the heads this stopping session has in flight ready again at once, for
// the session that takes its endpoints over. Its other webhooks wait for release.
func (s *session) releaseHeads() {
	s.mu.Lock()
	leases := map[string]uint64{}
	for ep, id := range s.heads {
		if f, ok := s.inflight[id]; ok {
			leases[id] = f.lease
			s.inBytes -= f.size
		}
		delete(s.inflight, id)
		s.metrics.released.WithLabelValues(ep, s.group).Inc()
	}
	clear(s.heads)
	s.mu.Unlock()
	if len(leases) > 0 {
		s.queue.Release(context.Background(), s.group, leases) // best effort: else the lease ends
	}
}

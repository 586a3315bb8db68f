package agent

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hookrelay/hookrelay/internal/admin"
	"github.com/hookrelay/hookrelay/persist"
)

// adminStore is the admin API's view of the agent's store: one entry per webhook (the
// relay's id, its endpoint), in the state of its least advanced copy (routes.go), with each
// route's copy under "routes". A copy of a route no longer configured shows on its own.
type adminStore struct {
	st *persist.Store
	rs *routeSet
}

var _ admin.RouteStore = adminStore{}

// List lists the copies in the endpoint's queues (every queue when f.Queue is ""), newest
// webhook first, one entry per webhook. With f.State, a webhook is listed when its own state
// is f.State, except Dead: a webhook with a dead copy is listed (as the relay lists a webhook
// dead in any group).
func (s adminStore) List(f persist.Filter) ([]*persist.Record, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var copies []*persist.Record
	for _, q := range s.st.Stats() {
		if f.Queue != "" && endpointOf(q.Queue) != f.Queue {
			continue
		}
		qf := f
		qf.Queue, qf.Limit = q.Queue, limit
		recs, err := s.st.List(qf)
		if err != nil {
			return nil, err
		}
		copies = append(copies, recs...)
	}
	// Newest webhook first; a webhook's copies side by side.
	slices.SortFunc(copies, func(a, b *persist.Record) int { return strings.Compare(b.ID, a.ID) })
	out := make([]*persist.Record, 0, min(limit, len(copies)))
	seen := map[string]bool{}
	for _, c := range copies {
		wid := webhookID(c.ID)
		if seen[wid] {
			continue
		}
		seen[wid] = true
		w, err := s.webhook(c)
		if err != nil {
			return nil, err
		}
		if f.State != 0 && f.State != persist.StateDead && w.State != f.State {
			continue
		}
		if out = append(out, w); len(out) == limit {
			break
		}
	}
	return out, nil
}

// webhook is the entry of the webhook one of whose copies is c: the least advanced copy, under
// the relay's id and the endpoint.
func (s adminStore) webhook(c *persist.Record) (*persist.Record, error) {
	ep, wid := endpointOf(c.Queue), webhookID(c.ID)
	base := c
	if s.rs.byQueue[c.Queue] != nil {
		cs, err := s.rs.copies(s.st, ep, wid)
		if err != nil {
			return nil, err
		}
		if len(cs) > 0 {
			base = leastAdvanced(cs).rec
		}
	}
	w := *base
	w.ID, w.Queue = wid, ep
	return &w, nil
}

// find returns a stored copy of webhook id (with its body), trying every route's copy.
func (s adminStore) find(id string) (*persist.Record, error) {
	wid := webhookID(id)
	ids := []string{wid}
	for _, d := range s.rs.all {
		if !d.r.first {
			ids = append(ids, d.r.copyID(wid))
		}
	}
	for _, cid := range ids {
		r, err := s.st.Get(cid)
		if !errors.Is(err, persist.ErrNotFound) {
			return r, err
		}
	}
	return nil, fmt.Errorf("get %s: %w", id, persist.ErrNotFound)
}

// Get returns webhook id's entry with its request (from one of its copies) and the attempts
// of all its copies, oldest first.
func (s adminStore) Get(id string) (*persist.Record, error) {
	c, err := s.find(id)
	if err != nil {
		return nil, err
	}
	w, err := s.webhook(c)
	if err != nil {
		return nil, err
	}
	w.Body, w.BodyLen, w.Headers, w.Size = c.Body, c.BodyLen, c.Headers, c.Size
	cs, err := s.Routes(w.ID)
	if err != nil {
		return nil, err
	}
	if len(cs) > 1 {
		var ds []persist.Delivery
		for _, r := range cs {
			ds = append(ds, r.Deliveries...)
		}
		slices.SortStableFunc(ds, func(a, b persist.Delivery) int { return a.At.Compare(b.At) })
		w.Deliveries = ds
	}
	return w, nil
}

// Routes returns the copies of webhook id by route name.
func (s adminStore) Routes(id string) (map[string]*persist.Record, error) {
	wid := webhookID(id)
	ids := make([]string, 0, len(s.rs.all))
	for _, d := range s.rs.all {
		ids = append(ids, d.r.copyID(wid))
	}
	recs, err := s.st.Peek(ids...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*persist.Record, len(recs))
	for _, r := range recs {
		if d := s.rs.byQueue[r.Queue]; d != nil {
			out[d.r.Name] = r
		}
	}
	return out, nil
}

// Replay replays every finished copy of webhook id (a copy still pending goes out anyway).
func (s adminStore) Replay(id string) error {
	cs, err := s.Routes(id)
	if err != nil {
		return err
	}
	if len(cs) == 0 {
		c, err := s.find(id) // a copy of a route no longer configured
		if err != nil {
			return err
		}
		return s.st.Replay(c.ID)
	}
	var first error
	replayed := false
	for _, r := range cs {
		err := s.st.Replay(r.ID)
		if err == nil {
			replayed = true
		} else if first == nil {
			first = err
		}
	}
	if replayed {
		return nil
	}
	return first
}

// ReplayRoute replays one route's copy of webhook id.
func (s adminStore) ReplayRoute(id, route string) error {
	d := s.rs.byName[route]
	if d == nil {
		return fmt.Errorf("replay %s: no route %q: %w", id, route, persist.ErrNotFound)
	}
	return s.st.Replay(d.r.copyID(webhookID(id)))
}

// ReplayDead replays the dead copies of the endpoint's queues (all when endpoint is "").
func (s adminStore) ReplayDead(endpoint string) (int, error) {
	n := 0
	for _, q := range s.st.Stats() {
		if endpoint != "" && endpointOf(q.Queue) != endpoint {
			continue
		}
		m, err := s.st.ReplayDead(q.Queue)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Delete removes every copy of webhook id.
func (s adminStore) Delete(id string) error {
	cs, err := s.Routes(id)
	if err != nil {
		return err
	}
	if len(cs) == 0 {
		c, err := s.find(id)
		if err != nil {
			return err
		}
		return s.st.Delete(c.ID)
	}
	for _, r := range cs {
		if err := s.st.Delete(r.ID); err != nil && !errors.Is(err, persist.ErrNotFound) {
			return err
		}
	}
	return nil
}

// Stats is the store's, one entry per route's queue.
func (s adminStore) Stats() []persist.QueueStats { return s.st.Stats() }

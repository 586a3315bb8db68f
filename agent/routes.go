package agent

import (
	"strings"

	"github.com/hookrelay/hookrelay/persist"
)

// Fan-out. Every route of an endpoint holds its own copy of each of the endpoint's webhooks in
// the store, a record of its own in a queue of its own, so each has its own retries, dead
// letters and quota. The first route of an endpoint (in config order) keeps the layout a
// single route always had, queue = endpoint and record id = the relay's id, so a store
// written before routes had names is read as it is. Every other route's queue is endpoint +
// "/" + name and its copies' ids are the relay's id + "~" + name (the relay's ids are ULIDs:
// they have no "~"). So reordering the routes of an endpoint hands the first one's waiting
// copies to the new first route, and renaming any other route leaves its copies behind.

// copySep separates the relay's id from the route name in a copy's id.
const copySep = "~"

// maxRouteName bounds a route name, so that a copy's id stays within persist's 128.
const maxRouteName = 64

// validRouteName reports whether s may name a route: letters, digits, "-", "_" and ".".
func validRouteName(s string) bool {
	if s == "" || len(s) > maxRouteName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// queueName is the store queue of the route's copies.
func (r *Route) queueName() string {
	if r.first {
		return r.Endpoint
	}
	return r.Endpoint + "/" + r.Name
}

// copyID is the id of the route's copy of webhook wid.
func (r *Route) copyID(wid string) string {
	if r.first {
		return wid
	}
	return wid + copySep + r.Name
}

// webhookID is the relay's id of a copy.
func webhookID(copyID string) string {
	wid, _, _ := strings.Cut(copyID, copySep)
	return wid
}

// endpointOf is the endpoint of a copy's queue.
func endpointOf(queue string) string {
	ep, _, _ := strings.Cut(queue, "/")
	return ep
}

// routeSet is the agent's deliverers, one per route, found by endpoint, name or queue.
// Static after New.
type routeSet struct {
	all        []*deliverer            // config order
	byEndpoint map[string][]*deliverer // config order within an endpoint
	byName     map[string]*deliverer
	byQueue    map[string]*deliverer
}

func (rs *routeSet) add(d *deliverer) {
	if rs.byEndpoint == nil {
		rs.byEndpoint, rs.byName, rs.byQueue = map[string][]*deliverer{}, map[string]*deliverer{}, map[string]*deliverer{}
	}
	rs.all = append(rs.all, d)
	rs.byEndpoint[d.r.Endpoint] = append(rs.byEndpoint[d.r.Endpoint], d)
	rs.byName[d.r.Name] = d
	rs.byQueue[d.r.queue] = d
}

// copyIDs lists the ids of every copy webhook wid of endpoint may have.
func (rs *routeSet) copyIDs(endpoint, wid string) []string {
	ds := rs.byEndpoint[endpoint]
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.r.copyID(wid)
	}
	return ids
}

// copyOf is one route's copy of a webhook.
type copyOf struct {
	d   *deliverer
	rec *persist.Record // without body
}

// copies reads the stored copies of webhook wid of endpoint (a copy not stored, such as one
// of a route added later, is left out).
func (rs *routeSet) copies(st *persist.Store, endpoint, wid string) ([]copyOf, error) {
	recs, err := st.Peek(rs.copyIDs(endpoint, wid)...)
	if err != nil {
		return nil, err
	}
	out := make([]copyOf, 0, len(recs))
	for _, r := range recs {
		if d := rs.byQueue[r.Queue]; d != nil {
			out = append(out, copyOf{d, r})
		}
	}
	return out, nil
}

// filtered reports whether a record is a copy its route's filter passed by.
func filtered(r *persist.Record) bool {
	return r.State == persist.StateDelivered && r.DeadReason != ""
}

// rank orders a copy's state from least to most advanced: waiting or retrying, being
// delivered, dead, delivered, filtered. A webhook's state is its least advanced copy's (so
// "filtered" only when every route filtered it).
func rank(r *persist.Record) int {
	switch {
	case r.State == persist.StateLeased:
		return 1
	case r.State == persist.StateDead:
		return 2
	case filtered(r):
		return 4
	case r.State == persist.StateDelivered:
		return 3
	}
	return 0
}

// finishedAll reports whether every copy is delivered, filtered or dead (and there is one).
func finishedAll(cs []copyOf) bool {
	for _, c := range cs {
		if c.rec.State != persist.StateDelivered && c.rec.State != persist.StateDead {
			return false
		}
	}
	return len(cs) > 0
}

// leastAdvanced is the copy whose state is the webhook's.
func leastAdvanced(cs []copyOf) copyOf {
	best := cs[0]
	for _, c := range cs[1:] {
		if rank(c.rec) < rank(best.rec) {
			best = c
		}
	}
	return best
}

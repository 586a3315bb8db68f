package agent

import (
	"net/url"
	"time"
)

// Status is the agent's own view, served under "status" by GET /admin/api/status (which
// `hookagent status` prints) and shown by the admin UI.
type Status struct {
	AgentID        string        `json:"agent_id"`
	Relay          string        `json:"relay"` // without credentials or query
	Connected      bool          `json:"connected"`
	Transport      string        `json:"transport"` // "" while no tunnel is up
	Session        string        `json:"session,omitempty"`
	ConnectedSince *time.Time    `json:"connected_since"` // null while no tunnel is up
	Routes         []RouteStatus `json:"routes"`
}

// RouteStatus is one route's queue (its own copies: routes.go).
type RouteStatus struct {
	Name     string     `json:"name"`
	Endpoint string     `json:"endpoint"`
	Filter   string     `json:"filter,omitempty"` // the route's filter expression
	Target   string     `json:"target"`           // without query (it may hold secrets)
	Queued   int        `json:"queued"`           // stored, not yet delivered or dead
	Bytes    int64      `json:"bytes"`            // stored bytes of those
	Oldest   *time.Time `json:"oldest"`           // arrival of the oldest waiting one; null when none
	Dead     int        `json:"dead"`             // dead letters held
}

// tunnelInfo is the current session, for Status.
type tunnelInfo struct {
	since   time.Time
	session string
}

// setTunnel records the current session (zero when none).
func (a *Agent) setTunnel(t tunnelInfo) {
	a.tunMu.Lock()
	a.tun = t
	a.tunMu.Unlock()
}

// Status returns the agent's current view: relay, tunnel and each route's queue.
func (a *Agent) Status() Status {
	s := Status{
		AgentID:   a.cfg.AgentID,
		Relay:     a.currentRelay(),
		Connected: a.Connected(),
		Transport: a.Transport(),
		Routes:    make([]RouteStatus, 0, len(a.cfg.Routes)),
	}
	a.tunMu.Lock()
	t := a.tun
	a.tunMu.Unlock()
	if s.Connected && !t.since.IsZero() {
		since := t.since.UTC()
		s.ConnectedSince, s.Session = &since, t.session
	}
	byQueue := map[string]int{}
	stats := a.store.Stats()
	for i, q := range stats {
		byQueue[q.Queue] = i
	}
	for _, r := range a.cfg.Routes {
		rs := RouteStatus{Name: r.Name, Endpoint: r.Endpoint, Filter: r.Filter, Target: displayURL(r.Target)}
		if i, ok := byQueue[r.queue]; ok {
			q := stats[i]
			rs.Queued, rs.Bytes, rs.Dead = q.Pending, q.Bytes, q.Dead
			if !q.Oldest.IsZero() {
				o := q.Oldest.UTC()
				rs.Oldest = &o
			}
		}
		s.Routes = append(s.Routes, rs)
	}
	return s
}

// displayURL is a URL fit for logs and status: without user info, query or fragment.
func displayURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable url)"
	}
	u.User = nil
	u.RawQuery, u.ForceQuery = "", false
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

package admin

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

const (
	defaultLimit = 100
	maxLimit     = 10000
)

// summary is one webhook in a list.
type summary struct {
	ID         string `json:"id"`
	Endpoint   string `json:"endpoint"`
	State      string `json:"state"`
	ReceivedAt string `json:"received_at"`
	Attempts   int    `json:"attempts"`
	// Routes (agent) is each route's copy, by route name (routes.go).
	Routes map[string]routeCopy `json:"routes,omitempty"`
	// Groups is each consumer group's state (relay); State is the least advanced of them.
	Groups map[string]string `json:"groups,omitempty"`
}

// detail is one webhook with its request and delivery attempts.
type detail struct {
	summary
	Method     string      `json:"method"`
	Path       string      `json:"path"`
	Query      string      `json:"query"`
	Headers    [][2]string `json:"headers"`
	BodyBase64 string      `json:"body_base64"`
	Size       int64       `json:"size"`
	Replay     bool        `json:"replay"`
	Deliveries []delivery  `json:"deliveries"`
	DeadReason string      `json:"dead_reason,omitempty"`
}

type delivery struct {
	At     string `json:"at"`
	Status int    `json:"status"`
	Ms     int64  `json:"ms"`
	Error  string `json:"error"`
	// The target's recorded answer, when there is one (agent: first 64 KiB of the body;
	// relay: exposing routes only, first 4 KiB).
	ResponseHeaders [][2]string `json:"response_headers,omitempty"`
	ResponseBody    string      `json:"response_body_base64,omitempty"`
}

// stateName is the name the API shows for a record's state on this side.
func (h *Handler) stateName(r *persist.Record) string {
	switch r.State {
	case persist.StateDelivered:
		if h.cfg.Side == Agent && r.DeadReason != "" {
			return "filtered" // persist.CompleteFiltered: a route's filter passed it by
		}
		return "delivered"
	case persist.StateDead:
		return "dead"
	}
	if h.cfg.Side == Agent {
		switch r.State {
		case persist.StateReady:
			if r.Attempts > 0 {
				return "retrying"
			}
			return "queued"
		case persist.StateLeased:
			return "delivering"
		case persist.StateAcked:
			return "acked" // not used by the agent; named rather than hidden
		}
	} else {
		switch r.State {
		case persist.StateReady:
			return "accepted"
		case persist.StateLeased:
			return "sent"
		case persist.StateAcked:
			return "acked"
		}
	}
	return "unknown"
}

// stateNames lists the names a state= filter accepts on this side.
func (h *Handler) stateNames() []string {
	if h.cfg.Side == Agent {
		return []string{"queued", "delivering", "retrying", "delivered", "filtered", "dead"}
	}
	return []string{"accepted", "sent", "acked", "delivered", "dead"}
}

// stateFilter maps a state name to the store state to list; exact reports whether that is
// enough (false: the name also depends on Attempts, so results are filtered by name).
func (h *Handler) stateFilter(name string) (st persist.State, exact bool, ok bool) {
	switch name {
	case "delivered":
		return persist.StateDelivered, h.cfg.Side != Agent, true // agent: or filtered
	case "dead":
		return persist.StateDead, true, true
	}
	if h.cfg.Side == Agent {
		switch name {
		case "filtered":
			return persist.StateDelivered, false, true
		case "queued", "retrying":
			return persist.StateReady, false, true
		case "delivering":
			return persist.StateLeased, true, true
		}
		return 0, false, false
	}
	switch name {
	case "accepted":
		return persist.StateReady, true, true
	case "sent":
		return persist.StateLeased, true, true
	case "acked":
		return persist.StateAcked, true, true
	}
	return 0, false, false
}

func (h *Handler) summarize(r *persist.Record) summary {
	return summary{
		ID:         r.ID,
		Endpoint:   r.Queue,
		State:      h.stateName(r),
		ReceivedAt: formatTime(r.ReceivedAt),
		Attempts:   r.Attempts,
		Routes:     h.routesOf(r.ID),
		Groups:     h.groupsJSON(r),
	}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// listQuery parses endpoint=, since= and limit= into a filter.
func listQuery(r *http.Request) (persist.Filter, string) {
	q := r.URL.Query()
	f := persist.Filter{Queue: q.Get("endpoint"), Limit: defaultLimit}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return f, "bad since: want an RFC 3339 time such as 2024-05-01T12:00:00Z"
		}
		f.Since = t
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return f, "bad limit: want a whole number from 1 to " + strconv.Itoa(maxLimit)
		}
		f.Limit = min(n, maxLimit)
	}
	return f, ""
}

// list returns up to f.Limit summaries matching f and, when name is set, the state name. When
// the name needs more than the store's state (agent: queued vs retrying), it lists more and
// filters until it has enough or the store has no more.
func (h *Handler) list(f persist.Filter, name string, exact bool) ([]summary, error) {
	want := f.Limit
	for {
		recs, err := h.cfg.Store.List(f)
		if err != nil {
			return nil, err
		}
		out := make([]summary, 0, min(len(recs), want))
		for _, r := range recs {
			s := h.summarize(r)
			if !exact && s.State != name {
				continue
			}
			if out = append(out, s); len(out) == want {
				break
			}
		}
		if exact || len(out) == want || len(recs) < f.Limit || f.Limit >= maxLimit {
			return out, nil
		}
		f.Limit = min(f.Limit*4, maxLimit)
	}
}

func (h *Handler) listWebhooks(w http.ResponseWriter, r *http.Request) {
	f, bad := listQuery(r)
	if bad != "" {
		writeError(w, http.StatusBadRequest, bad)
		return
	}
	name := r.URL.Query().Get("state")
	exact := true
	if name != "" {
		st, ex, ok := h.stateFilter(name)
		if !ok {
			writeError(w, http.StatusBadRequest,
				"bad state: want one of "+strings.Join(h.stateNames(), ", "))
			return
		}
		f.State, exact = st, ex
	}
	out, err := h.list(f, name, exact)
	if err != nil {
		h.storeError(w, "list webhooks", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhooks": out})
}

func (h *Handler) getWebhook(w http.ResponseWriter, r *http.Request) {
	rec, err := h.cfg.Store.Get(r.PathValue("id"))
	if err != nil {
		h.storeError(w, "get webhook", err)
		return
	}
	d := detail{
		summary:    h.summarize(rec),
		Method:     rec.Method,
		Path:       rec.Path,
		Query:      rec.Query,
		Headers:    make([][2]string, 0, len(rec.Headers)),
		BodyBase64: base64.StdEncoding.EncodeToString(rec.Body),
		Size:       rec.Size,
		Replay:     rec.Replay,
		Deliveries: deliveries(rec),
	}
	for _, hd := range rec.Headers {
		d.Headers = append(d.Headers, [2]string{hd.Name, hd.Value})
	}
	if rec.State == persist.StateDead {
		d.DeadReason = rec.DeadReason
	}
	writeJSON(w, http.StatusOK, d)
}

func (h *Handler) replayWebhook(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if route := r.URL.Query().Get("route"); route != "" {
		h.replayRoute(w, id, route)
		return
	}
	gs, group, ok := h.groupParam(w, r)
	if !ok {
		return
	}
	var err error
	if gs != nil {
		err = gs.ReplayGroup(group, id)
	} else {
		err = h.cfg.Store.Replay(id)
	}
	if err != nil {
		h.storeError(w, "replay webhook", err)
		return
	}
	h.log.Info("webhook replayed", "id", id, "group", group)
	if h.cfg.OnReplay != nil {
		h.cfg.OnReplay(id)
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"id": id})
}

func (h *Handler) listDead(w http.ResponseWriter, r *http.Request) {
	f, bad := listQuery(r)
	if bad != "" {
		writeError(w, http.StatusBadRequest, bad)
		return
	}
	f.State = persist.StateDead
	out, err := h.list(f, "dead", true)
	if err != nil {
		h.storeError(w, "list dead letters", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhooks": out})
}

func (h *Handler) replayDead(w http.ResponseWriter, r *http.Request) {
	endpoint := r.URL.Query().Get("endpoint")
	gs, group, ok := h.groupParam(w, r)
	if !ok {
		return
	}
	var n int
	var err error
	if gs != nil {
		n, err = gs.ReplayDeadGroup(group, endpoint)
	} else {
		n, err = h.cfg.Store.ReplayDead(endpoint)
	}
	if err != nil {
		h.storeError(w, "replay dead letters", err)
		return
	}
	h.log.Info("dead letters replayed", "endpoint", endpoint, "count", n)
	if h.cfg.OnReplay != nil && n > 0 {
		h.cfg.OnReplay("")
	}
	writeJSON(w, http.StatusAccepted, map[string]int{"count": n})
}

func (h *Handler) deleteDead(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	gs, group, ok := h.groupParam(w, r)
	if !ok {
		return
	}
	rec, err := h.cfg.Store.Get(id)
	if err != nil {
		h.storeError(w, "get webhook", err)
		return
	}
	if !isDead(rec, group) {
		state := h.stateName(rec)
		if group != "" {
			state = h.groupsJSON(rec)[group]
			if state == "" {
				state = "not held"
			}
			state = state + " in group " + group
		}
		writeError(w, http.StatusConflict, "webhook "+id+" is "+state+", not dead")
		return
	}
	switch {
	case gs == nil:
		err = h.cfg.Store.Delete(id)
	case group != "":
		err = gs.DeleteGroup(group, id)
	default:
		for _, g := range deadGroups(rec) { // every group where it is dead
			if err = gs.DeleteGroup(g, id); err != nil {
				break
			}
		}
		if len(rec.Groups) == 0 {
			err = h.cfg.Store.Delete(id)
		}
	}
	if err != nil {
		h.storeError(w, "delete dead letter", err)
		return
	}
	h.log.Info("dead letter deleted", "id", id, "groups", groupList(deadGroups(rec)))
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) listAgents(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Side != Relay {
		writeError(w, http.StatusNotFound, "no agents list on the agent")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": h.agents()})
}

func (h *Handler) agents() []AgentInfo {
	var out []AgentInfo
	if h.cfg.Agents != nil {
		out = h.cfg.Agents()
	}
	if out == nil {
		out = []AgentInfo{}
	}
	for i := range out {
		if out[i].Endpoints == nil {
			out[i].Endpoints = []string{}
		}
	}
	return out
}

// queueStats is persist.QueueStats as JSON.
type queueStats struct {
	Queue   string  `json:"queue"`
	Pending int     `json:"pending"`
	Bytes   int64   `json:"bytes"`
	Oldest  *string `json:"oldest"` // null when nothing is pending
	Dead    int     `json:"dead"`
}

func (h *Handler) statusPayload() map[string]any {
	stats := h.cfg.Store.Stats()
	qs := make([]queueStats, 0, len(stats))
	for _, s := range stats {
		q := queueStats{Queue: s.Queue, Pending: s.Pending, Bytes: s.Bytes, Dead: s.Dead}
		if !s.Oldest.IsZero() {
			o := formatTime(s.Oldest)
			q.Oldest = &o
		}
		qs = append(qs, q)
	}
	p := map[string]any{"side": h.cfg.Side.String(), "auth": h.tokenHash != nil, "queues": qs}
	if h.cfg.Status != nil {
		p["status"] = h.cfg.Status()
	}
	return p
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.statusPayload())
}

// storeError answers a store error: 404 not found, 409 wrong state, 503 closed, else 500.
func (h *Handler) storeError(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, persist.ErrNotFound):
		writeError(w, http.StatusNotFound, "webhook not found")
	case errors.Is(err, persist.ErrState):
		writeError(w, http.StatusConflict, what+": the webhook is not in a state for that")
	case errors.Is(err, persist.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "store closed")
	case errors.Is(err, persist.ErrInvalid):
		writeError(w, http.StatusBadRequest, what+": "+err.Error())
	default:
		h.log.Error(what, "err", err)
		writeError(w, http.StatusInternalServerError, what+": internal error")
	}
}

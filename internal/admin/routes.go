package admin

import (
	"encoding/base64"
	"net/http"

	"github.com/hookrelay/hookrelay/persist"
)

// RouteStore is a Store whose webhooks go out through several routes, each with a copy of its
// own (the agent). Its List and Get return one record per webhook, in the state of its least
// advanced copy; the API adds each copy under "routes".
type RouteStore interface {
	Store
	// Routes returns the copies of webhook id by route name, without bodies (nil when none).
	Routes(id string) (map[string]*persist.Record, error)
	// ReplayRoute replays one route's copy of webhook id (persist.ErrNotFound for a route
	// that has none).
	ReplayRoute(id, route string) error
}

// routeCopy is one route's copy of a webhook, as "routes" shows it.
type routeCopy struct {
	State      string     `json:"state"`
	Attempts   int        `json:"attempts"`
	Deliveries []delivery `json:"deliveries"`
	Reason     string     `json:"reason,omitempty"` // why it is dead or filtered
}

// routesOf is the "routes" of webhook id, or nil when the store has no routes.
func (h *Handler) routesOf(id string) map[string]routeCopy {
	rs, ok := h.cfg.Store.(RouteStore)
	if !ok {
		return nil
	}
	copies, err := rs.Routes(id)
	if err != nil {
		h.log.Warn("read a webhook's routes", "id", id, "err", err)
		return nil
	}
	out := make(map[string]routeCopy, len(copies))
	for name, r := range copies {
		c := routeCopy{State: h.stateName(r), Attempts: r.Attempts, Deliveries: deliveries(r), Reason: r.DeadReason}
		out[name] = c
	}
	return out
}

// deliveries is r's attempts as the API shows them.
func deliveries(r *persist.Record) []delivery {
	out := make([]delivery, 0, len(r.Deliveries))
	for _, dl := range r.Deliveries {
		x := delivery{At: formatTime(dl.At), Status: dl.Status, Ms: dl.Millis, Error: dl.Error}
		for _, h := range dl.ResponseHeaders {
			x.ResponseHeaders = append(x.ResponseHeaders, [2]string{h.Name, h.Value})
		}
		if len(dl.ResponseBody) > 0 {
			x.ResponseBody = base64.StdEncoding.EncodeToString(dl.ResponseBody)
		}
		out = append(out, x)
	}
	return out
}

// replayRoute answers POST webhooks/{id}/replay?route=NAME.
func (h *Handler) replayRoute(w http.ResponseWriter, id, route string) {
	rs, ok := h.cfg.Store.(RouteStore)
	if !ok {
		writeError(w, http.StatusBadRequest, "route: this side has no routes")
		return
	}
	if err := rs.ReplayRoute(id, route); err != nil {
		h.storeError(w, "replay webhook", err)
		return
	}
	h.log.Info("webhook replayed", "id", id, "route", route)
	if h.cfg.OnReplay != nil {
		h.cfg.OnReplay(id)
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "route": route})
}

package admin

import (
	"net/http"
	"slices"
	"strings"

	"github.com/hookrelay/hookrelay/persist"
)

// GroupStore is a Store with consumer groups (the relay's): replay, dead/replay and
// DELETE dead/{id} then take ?group=. group "" means every group where the webhook is
// acked or finished (Replay), dead (ReplayDead, DeleteGroup).
type GroupStore interface {
	ReplayGroup(group, id string) error
	ReplayDeadGroup(group, queue string) (int, error)
	// DeleteGroup removes the webhook from group: with it gone from every group, the
	// webhook itself.
	DeleteGroup(group, id string) error
}

// groupsJSON is a record's groups map as the API shows it: group → state name.
func (h *Handler) groupsJSON(r *persist.Record) map[string]string {
	if len(r.Groups) == 0 {
		return nil
	}
	out := make(map[string]string, len(r.Groups))
	for g, st := range r.Groups {
		c := *r
		c.State = st
		out[g] = h.stateName(&c)
	}
	return out
}

// groupParam reads ?group=: "" when absent. Given on a side without groups, or naming a
// group the store refuses, the request fails (written to w; ok false).
func (h *Handler) groupParam(w http.ResponseWriter, r *http.Request) (gs GroupStore, group string, ok bool) {
	group = r.URL.Query().Get("group")
	gs, has := h.cfg.Store.(GroupStore)
	if group != "" && !has {
		writeError(w, http.StatusBadRequest, "group: this side has no consumer groups")
		return nil, "", false
	}
	return gs, group, true
}

// deadGroups lists the groups where rec is dead, sorted; nil when it has no groups.
func deadGroups(rec *persist.Record) []string {
	var out []string
	for g, st := range rec.Groups {
		if st == persist.StateDead {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out
}

// isDead says whether rec is dead (in group, or in any group for "").
func isDead(rec *persist.Record, group string) bool {
	if group != "" {
		return rec.Groups[group] == persist.StateDead
	}
	return rec.State == persist.StateDead || len(deadGroups(rec)) > 0
}

// groupList names groups for a message.
func groupList(gs []string) string { return strings.Join(gs, ", ") }

package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

const (
	eventWindow = 100                    // newest records each poll compares
	eventPoll   = 500 * time.Millisecond // how often the store is polled for changes
	eventStats  = 3 * time.Second        // how often a stats event is sent
)

// seenRecord is what a stream last sent about a record.
type seenRecord struct {
	summary
	at time.Time
}

// events streams server-sent events until the client goes away or Close is called:
//
//	event: webhook   data: a summary, when a webhook appears or changes state or attempts
//	event: removed   data: {"id"}, when a listed webhook was deleted
//	event: stats     data: the GET status payload (plus "agents" on the relay), every few seconds
//
// The first poll sends the newest webhooks as they are, so a client that (re)connects is in
// step without racing its own GET of the list.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	h.streams.Add(1)
	defer h.streams.Add(-1)
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives a server's WriteTimeout
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, "retry: 2000\n\n"); err != nil {
		return
	}
	if err := h.sendStats(w); err != nil {
		return
	}
	lastStats, statsDue := time.Now(), false
	seen := make(map[string]seenRecord)
	poll := time.NewTicker(eventPoll)
	defer poll.Stop()
	stats := time.NewTicker(eventStats)
	defer stats.Stop()
	for {
		changed, removed, err := h.diff(seen)
		if err != nil {
			h.log.Debug("event stream ends", "err", err)
			return
		}
		for _, s := range changed {
			if err := writeEvent(w, "webhook", s); err != nil {
				return
			}
		}
		for _, id := range removed {
			if err := writeEvent(w, "removed", map[string]string{"id": id}); err != nil {
				return
			}
		}
		// queue depths follow the changes (at most once a second), not only the periodic tick
		statsDue = statsDue || len(changed) > 0 || len(removed) > 0
		if statsDue && time.Since(lastStats) >= time.Second {
			if err := h.sendStats(w); err != nil {
				return
			}
			lastStats, statsDue = time.Now(), false
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-h.done:
			return
		case <-poll.C:
		case <-stats.C:
			if err := h.sendStats(w); err != nil {
				return
			}
			lastStats, statsDue = time.Now(), false
		}
	}
}

// diff lists the newest records and compares them with seen, which it updates: changed holds
// new or changed summaries, oldest first; removed the ids that left the window because they
// were deleted (not because newer records pushed them out).
func (h *Handler) diff(seen map[string]seenRecord) (changed []summary, removed []string, err error) {
	recs, err := h.cfg.Store.List(persist.Filter{Limit: eventWindow})
	if err != nil {
		return nil, nil, fmt.Errorf("list webhooks: %w", err)
	}
	cur := make(map[string]seenRecord, len(recs))
	for i := len(recs) - 1; i >= 0; i-- {
		s := seenRecord{h.summarize(recs[i]), recs[i].ReceivedAt}
		cur[s.ID] = s
		if prev, ok := seen[s.ID]; !ok || !sameSummary(prev.summary, s.summary) {
			changed = append(changed, s.summary)
		}
	}
	var oldest time.Time
	if len(recs) > 0 {
		oldest = recs[len(recs)-1].ReceivedAt
	}
	for id, prev := range seen {
		if _, ok := cur[id]; ok {
			continue
		}
		if len(recs) < eventWindow || prev.at.After(oldest) {
			removed = append(removed, id)
		}
	}
	clear(seen)
	for id, s := range cur {
		seen[id] = s
	}
	return changed, removed, nil
}

func (h *Handler) sendStats(w io.Writer) error {
	p := h.statusPayload()
	if h.cfg.Side == Relay {
		p["agents"] = h.agents()
	}
	return writeEvent(w, "stats", p)
}

// writeEvent writes one server-sent event; json.Marshal output has no newline, so one data
// line carries it.
func writeEvent(w io.Writer, event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", event, err)
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
	return err
}

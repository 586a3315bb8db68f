package relay

import (
	"sync"
	"time"
)

// holdMax and holdYoung bound what an agent holds undelivered: the dispatcher leases nothing
// more for a session while holdMax of the webhooks its agent acked in the last holdYoung have
// no outcome yet (Config.holdMax and holdYoung override them, in tests).
//
// An agent acks a webhook once stored and delivers it after, so without this bound a relay
// with a backlog moves the whole backlog into the agent's store as fast as the agent stores,
// far faster than its targets take it. The agent then pays for its own backlog: past its
// in-memory window (2,048 records per route) each record is read back from Badger before its
// delivery, and its store's tables and value log grow with what waits. Over a 1,000,000 × 1 KiB
// backlog the agent spent 348 µs of CPU per webhook drained, against 228 over 50,000; with the
// bound (hookbench, 300,000): relay / agent 161–166 / 249–250 µs against 185–188 / 285–290, and
// 2.87–2.94k drained/s against 2.70–2.71k. What waits stays on the relay, which is built to keep
// it (the backlog shape's memory goal is the relay's).
//
// Only young webhooks count: one whose delivery retries (its target down) stops counting after
// holdYoung. So an agent whose target is down still receives (at most holdMax per holdYoung),
// and on an agent that fans webhooks out to several routes, one route's dead target does not
// stop the others for longer than that. holdMax stays under the agent's in-memory window, and
// far above what its deliverers hold at once (16 slots × 4 by default), so a draining agent is
// never short of work: reports come back within its delivery time.
const (
	holdMax   = 1024
	holdYoung = 2 * time.Second
)

// holdings remembers the last recentAcked ids a session's agent acked and has not reported,
// to take their reports without a store lookup, and counts the young ones (acked within
// holdYoung).
type holdings struct {
	mu    sync.Mutex
	young time.Duration
	at    map[string]time.Time // acked, not reported: when acked
	ring  []ackedAt            // in ack order, the last recentAcked acks
	aged  int                  // ring[:aged] acked before cut
	cut   time.Time            // entries acked before it no longer count
	count int                  // young: entries of ring[aged:] still in at with their time
}

type ackedAt struct {
	id string
	at time.Time
}

func newHoldings(young time.Duration) *holdings {
	return &holdings{young: young, at: map[string]time.Time{}}
}

// add remembers id as acked at now.
func (h *holdings) add(id string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.forgetLocked(id)
	if len(h.ring) >= recentAcked {
		e := h.ring[0]
		if h.aged == 0 && h.at[e.id].Equal(e.at) {
			h.count--
		}
		if h.at[e.id].Equal(e.at) {
			delete(h.at, e.id)
		}
		h.ring = h.ring[1:]
		h.aged = max(h.aged-1, 0)
	}
	h.at[id] = now
	h.ring = append(h.ring, ackedAt{id, now})
	h.count++
}

// has reports whether id is remembered as acked and not reported.
func (h *holdings) has(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.at[id]
	return ok
}

// reported forgets id; it reports whether id was remembered.
func (h *holdings) reported(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.forgetLocked(id)
}

func (h *holdings) forgetLocked(id string) bool {
	at, ok := h.at[id]
	if !ok {
		return false
	}
	delete(h.at, id)
	if !at.Before(h.cut) {
		h.count--
	}
	return true
}

// held returns how many young webhooks the agent holds at now, and when the oldest of them
// stops counting (zero when none does).
func (h *holdings) held(now time.Time) (int, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cut := now.Add(-h.young)
	if cut.After(h.cut) {
		h.cut = cut
	}
	for h.aged < len(h.ring) && h.ring[h.aged].at.Before(h.cut) {
		if e := h.ring[h.aged]; h.at[e.id].Equal(e.at) {
			h.count--
		}
		h.aged++
	}
	if h.aged == len(h.ring) {
		return h.count, time.Time{}
	}
	return h.count, h.ring[h.aged].at.Add(h.young)
}

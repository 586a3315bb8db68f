package jsqueue

import (
	"cmp"
	"slices"

	"github.com/hookrelay/hookrelay/persist"
)

// The mirror keeps, besides every webhook of an endpoint, the ones still open (unfinished in
// some group) in stream order, and the bytes they hold, and counts the finished ones that are
// dead. Leases, wake-ups, the quota and Stats look at these only: finished webhooks stay
// listed for keep_done, tens of thousands of them under load, and scanning them at every lease
// and append was most of a busy relay's CPU. Stats (every scrape, and every 5 s for the admin
// UI's charts) scanned them all, building a record of each, under the mirror's lock.

// reindexLocked moves e into or out of its endpoint's open list, and its dead count, after its
// state changed.
func (m *mirror) reindexLocked(e *entry) {
	u := m.unfinishedLocked(e)
	m.setOpenLocked(e, u)
	m.setDeadLocked(e, !u && m.anyDeadLocked(e))
}

// anyDeadLocked says whether a group e was accepted for has it dead: a finished webhook then
// shows as dead (dead ranks below delivered).
func (m *mirror) anyDeadLocked(e *entry) bool {
	for _, g := range m.groupsLocked(e) {
		if s := e.slot(g); !s.g.Deleted && s.g.State == persist.StateDead {
			return true
		}
	}
	return false
}

func (m *mirror) setDeadLocked(e *entry, d bool) {
	if d == e.dead {
		return
	}
	ep := e.meta.Queue
	if d {
		m.dead[ep]++
	} else if m.dead[ep]--; m.dead[ep] <= 0 {
		delete(m.dead, ep)
	}
	e.dead = d
}

func (m *mirror) setOpenLocked(e *entry, u bool) {
	if u == e.open {
		return
	}
	ep := e.meta.Queue
	list := m.open[ep]
	i, found := slices.BinarySearchFunc(list, e.seq, bySeq)
	if u {
		if !found {
			m.open[ep] = slices.Insert(list, i, e)
		}
		m.openBytes[ep] += e.meta.Size
	} else {
		if found && list[i] == e {
			m.open[ep] = slices.Delete(list, i, i+1)
		}
		m.openBytes[ep] -= e.meta.Size
		m.bodyBytes -= int64(len(e.body))
		e.body = nil
		if len(m.open[ep]) == 0 {
			delete(m.open, ep)
			delete(m.openBytes, ep)
		}
	}
	e.open = u
}

// closeLocked takes a removed entry out of the open list.
func (m *mirror) closeLocked(e *entry) { m.setOpenLocked(e, false) }

func bySeq(e *entry, seq uint64) int { return cmp.Compare(e.seq, seq) }

// bodyCache bounds the bytes of open webhooks' bodies the mirror holds, for leases to send
// without reading them from the stream first (a request to the stream's leader each).
const bodyCache = 64 << 20

// keepBodyLocked holds body (nil: none known) as e's while e is open and there is room.
func (m *mirror) keepBodyLocked(e *entry, body []byte) {
	if body == nil || e.body != nil || !e.open || m.bodyBytes+int64(len(body)) > bodyCache {
		return
	}
	e.body = body
	m.bodyBytes += int64(len(body))
}

package jsqueue

import (
	"cmp"
	"slices"
)

// The mirror keeps, besides every webhook of an endpoint, the ones still open (unfinished in
// some group) in stream order, and the bytes they hold. Leases, wake-ups and the quota look
// at these only: finished webhooks stay listed for keep_done, tens of thousands of them under
// load, and scanning them at every lease and append was most of a busy relay's CPU.

// reindexLocked moves e into or out of its endpoint's open list after its state changed.
func (m *mirror) reindexLocked(e *entry) {
	m.setOpenLocked(e, m.unfinishedLocked(e))
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

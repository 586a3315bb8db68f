package jsqueue

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// entry is what the mirror knows of one webhook: its metadata from the stream and each
// group's state from the bucket.
type entry struct {
	seq   uint64 // stream sequence: the cluster's order
	meta  meta
	slots map[string]slot // by group; a missing group is fresh (ready, never attempted)
	open  bool            // in the mirror's open list (mirror_open.go)
	dead  bool            // finished, dead in some group: counted in the mirror's dead
	body  []byte          // while open, within bodyCache; nil: not held (read it from the stream)
}

// slot is one group's state with the bucket revision it was read at (0: no key yet).
type slot struct {
	g   gstate
	rev uint64
}

// slot is group's state of the webhook; a group it was not accepted for has none (a
// removed one), so that every walk over the groups passes it by.
func (e *entry) slot(group string) slot {
	if len(e.meta.Groups) > 0 && !slices.Contains(e.meta.Groups, group) {
		return slot{g: gstate{Deleted: true}}
	}
	if s, ok := e.slots[group]; ok {
		return s
	}
	return slot{g: gstate{State: persist.StateReady}}
}

// mirror is this relay's in-memory view of the stream and the state bucket, kept current by
// watching both (so it sees what other relays append and change) and by this relay's own
// writes. It only picks candidates: every state change is a revision-checked write to the
// bucket, so a stale mirror can cost a retry, never a double lease.
type mirror struct {
	groups []string

	mu        sync.Mutex
	byID      map[string]*entry
	byEp      map[string][]*entry        // stream order
	open      map[string][]*entry        // by endpoint, those unfinished in some group, stream order
	openBytes map[string]int64           // by endpoint, the sizes of those in open
	dead      map[string]int             // by endpoint, the finished ones dead in some group
	early     map[string]map[string]slot // id → group → state seen before the webhook itself
	wake      map[string]chan struct{}   // by endpoint, closed on any change there
	reserved  map[string]int64           // bytes of appends in flight, by endpoint (quota)
	bodyBytes int64                      // of the bodies entries hold (bodyCache)
	closed    bool
	live      bool // caught up with the stream: a marker for an unknown id is for one long gone
	// through is the last stream sequence the watch delivered. It delivers in order, so
	// every webhook up to it is known; one appended here beyond it may have others, appended
	// meanwhile by other relays, before it that this relay has not seen yet.
	through  uint64
	advanced chan struct{} // closed (and replaced) when through moves on or the mirror closes
}

func newMirror(groups []string) *mirror {
	return &mirror{groups: groups, byID: map[string]*entry{}, byEp: map[string][]*entry{},
		open: map[string][]*entry{}, openBytes: map[string]int64{}, dead: map[string]int{},
		early: map[string]map[string]slot{}, wake: map[string]chan struct{}{}, reserved: map[string]int64{}}
}

// add records a webhook seen in the stream (or just appended here); a second sight is a no-op.
func (m *mirror) add(seq uint64, mt meta, body []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.addLocked(seq, mt, body)
}

func (m *mirror) addLocked(seq uint64, mt meta, body []byte) {
	if e, ok := m.byID[mt.ID]; ok {
		m.keepBodyLocked(e, body)
		return
	}
	e := &entry{seq: seq, meta: mt, slots: m.early[mt.ID]}
	delete(m.early, mt.ID)
	if e.slots == nil {
		e.slots = map[string]slot{}
	}
	if e.gone(m.groupsLocked(e)) {
		return
	}
	m.byID[mt.ID] = e
	list := m.byEp[mt.Queue]
	i, _ := slices.BinarySearchFunc(list, seq, bySeq)
	m.byEp[mt.Queue] = slices.Insert(list, i, e)
	m.reindexLocked(e)
	m.keepBodyLocked(e, body)
	m.notify(mt.Queue)
}

// watched records a webhook as the stream watch delivers it, in stream order: add, and move
// through on. An ordered endpoint's head waits for it (head), so a webhook this relay
// appended is woken for once the watch reaches it.
func (m *mirror) watched(seq uint64, mt *meta, body []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if seq > m.through {
		m.through = seq
		if m.advanced != nil {
			close(m.advanced)
			m.advanced = nil
		}
	}
	if mt == nil {
		return
	}
	if e, ok := m.byID[mt.ID]; ok {
		m.keepBodyLocked(e, body)
		m.notify(mt.Queue) // appended here, now in order: an ordered head may wait for it
		return
	}
	m.addLocked(seq, *mt, body)
}

// groupsLocked is the groups e was accepted for.
func (m *mirror) groupsLocked(e *entry) []string {
	if len(e.meta.Groups) > 0 {
		return e.meta.Groups
	}
	return m.groups
}

// gone says whether every group removed the webhook.
func (e *entry) gone(groups []string) bool {
	for _, g := range groups {
		if !e.slot(g).g.Deleted {
			return false
		}
	}
	return true
}

// set records a group's state at rev unless the mirror already holds a newer one.
func (m *mirror) set(id, group string, s slot) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.byID[id]
	if !ok {
		if s.g.Deleted && m.live {
			return // a removed webhook's marker: nothing to remember it for
		}
		if ids := m.early[id]; ids == nil || ids[group].rev < s.rev {
			if ids == nil {
				m.early[id] = map[string]slot{}
			}
			m.early[id][group] = s
		}
		return
	}
	if cur, ok := e.slots[group]; ok && cur.rev >= s.rev {
		return
	}
	e.slots[group] = s
	if e.gone(m.groupsLocked(e)) {
		m.removeLocked(e)
	} else {
		m.reindexLocked(e)
	}
	m.notify(e.meta.Queue)
}

func (m *mirror) removeLocked(e *entry) {
	delete(m.byID, e.meta.ID)
	m.closeLocked(e)
	m.setDeadLocked(e, false)
	list := m.byEp[e.meta.Queue]
	if i, ok := slices.BinarySearchFunc(list, e.seq, bySeq); ok && list[i] == e {
		m.byEp[e.meta.Queue] = slices.Delete(list, i, i+1)
	}
	if len(m.byEp[e.meta.Queue]) == 0 {
		delete(m.byEp, e.meta.Queue)
	}
}

// notify wakes the endpoint's waiters. m.mu is held.
func (m *mirror) notify(endpoint string) {
	if ch, ok := m.wake[endpoint]; ok {
		close(ch)
		delete(m.wake, endpoint)
	}
}

// waiter returns the channel closed on the endpoint's next change (closed already when the
// mirror is closed).
func (m *mirror) waiter(endpoint string) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	ch, ok := m.wake[endpoint]
	if !ok {
		ch = make(chan struct{})
		m.wake[endpoint] = ch
	}
	return ch
}

func (m *mirror) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for ep := range m.wake {
		m.notify(ep)
	}
	if m.advanced != nil {
		close(m.advanced)
		m.advanced = nil
	}
}

// waitThrough waits until the stream watch has delivered seq, for at most d; it reports
// whether it has. The watch is usually a moment behind an append here.
func (m *mirror) waitThrough(ctx context.Context, seq uint64, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		m.mu.Lock()
		if m.through >= seq {
			m.mu.Unlock()
			return true
		}
		if m.closed {
			m.mu.Unlock()
			return false
		}
		if m.advanced == nil {
			m.advanced = make(chan struct{})
		}
		ch := m.advanced
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		case <-t.C:
			return false
		}
	}
}

// snap is a copy of an entry's metadata and one group's state, taken under the lock.
type snap struct {
	seq  uint64
	meta meta
	slot slot
	body []byte // the mirror's copy, nil when not held
}

func (m *mirror) get(id, group string) (snap, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.byID[id]
	if !ok {
		return snap{}, false
	}
	return snap{e.seq, e.meta, e.slot(group), e.body}, true
}

// has says whether the mirror holds group's state of id at rev or newer.
func (m *mirror) has(id, group string, rev uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.byID[id]
	if !ok {
		return false
	}
	s, ok := e.slots[group]
	return ok && s.rev >= rev
}

// pick returns, in stream order, the first limit of the endpoint's entries whose state for
// group matches.
func (m *mirror) pick(endpoint, group string, match func(g *gstate) bool, limit int) []snap {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []snap
	for _, e := range m.open[endpoint] {
		if len(out) == limit {
			break
		}
		s := e.slot(group)
		if !s.g.Deleted && match(&s.g) {
			out = append(out, snap{e.seq, e.meta, s, e.body})
		}
	}
	return out
}

// due is when endpoint next has something for group: the earliest retry or lease end (not
// after now when a record is ready now), zero when nothing waits.
func (m *mirror) due(endpoint, group string, now time.Time) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	var due int64
	for _, e := range m.open[endpoint] {
		s := e.slot(group)
		var t int64
		switch {
		case s.g.Deleted:
			continue
		case s.g.State == persist.StateReady:
			t = s.g.Next
			if t == 0 {
				t = now.UnixNano()
			}
		case s.g.State == persist.StateLeased:
			t = s.g.Until
		default:
			continue
		}
		if due == 0 || t < due {
			due = t
		}
	}
	if due == 0 {
		return time.Time{}
	}
	return time.Unix(0, due)
}

// pendingBytes is what the endpoint's unfinished webhooks and appends in flight hold.
func (m *mirror) pendingBytesLocked(endpoint string) int64 {
	return m.reserved[endpoint] + m.openBytes[endpoint]
}

func (m *mirror) unfinishedLocked(e *entry) bool {
	for _, g := range m.groupsLocked(e) {
		if s := e.slot(g); s.g.unfinished() {
			return true
		}
	}
	return false
}

// reserve counts size against the endpoint's quota until unreserve; false when over it.
func (m *mirror) reserve(endpoint string, size, quota int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if quota > 0 && m.pendingBytesLocked(endpoint)+size > quota {
		return false
	}
	m.reserved[endpoint] += size
	return true
}

func (m *mirror) unreserve(endpoint string, size int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reserved[endpoint] -= size
}

// maxID is the largest id the mirror holds.
func (m *mirror) maxID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var id string
	for k := range m.byID {
		id = max(id, k)
	}
	return id
}

package persist

import (
	"container/list"
	"slices"
	"time"
)

const (
	// recentMax bounds the bytes the recent cache holds. Its records are live heap the GC
	// marks on every cycle, and both programs run under a soft memory limit that leaves the
	// GC a few MiB between cycles: with 4 MiB the agent's GC used 4.6–5.2 CPU-seconds over a
	// 50,000 backlog drained and the relay's 2.3–2.4, with 2 MiB 2.6–3.8 and 1.9; peak RSS
	// over the 64 KiB burst, relay / agent, 61–62 / 56–59 MiB against 66–68 / 59–61, rates
	// and CPU per webhook no worse (alternating hookbench runs, GODEBUG=gctrace=1).
	recentMax = 2 << 20
	// recentBodyMax is the largest body it keeps; bigger ones are read back from Badger.
	recentBodyMax = 64 << 10
)

// recent keeps the records written last as they were committed (metadata, and bodies up to
// recentBodyMax), so that the committer and Lease need not read back from Badger what was just
// written: on the relay a webhook is appended, leased, acked and finished within milliseconds,
// on the agent appended, leased and finished. Reading them back was a tenth of each process's
// CPU in the e2e benchmark. Oldest out first, within recentMax bytes. Guarded by Store.mu; the
// committer fills it while applying a batch, with the committed changes only, so it always
// agrees with the disk; deleted records leave it. Lease adds the metadata of what it read
// from disk while the record is unchanged since (cacheLeasedLocked).
type recent struct {
	bytes int64
	m     map[string]*list.Element // of *recentRec
	fifo  list.List
}

// recentRec is one record's metadata as stored (as decodeMeta would return it), and its body
// when kept. Neither is ever changed once cached: a new state replaces the entry.
type recentRec struct {
	id      string
	meta    *Record // without body
	bodyLen int
	body    []byte // nil when not kept (or empty)
	size    int64
}

func newRecent() *recent {
	return &recent{m: map[string]*list.Element{}}
}

// getLocked returns the cached record of id, or nil.
func (c *recent) getLocked(id string) *recentRec {
	if el, ok := c.m[id]; ok {
		return el.Value.(*recentRec)
	}
	return nil
}

// putLocked caches meta (canonical, see canonical) for id. A nil body with the same bodyLen
// keeps the body already cached: a change of state does not touch the body.
func (c *recent) putLocked(id string, meta *Record, bodyLen int, body []byte) {
	if old := c.getLocked(id); old != nil {
		if body == nil && old.bodyLen == bodyLen {
			body = old.body
		}
		c.delLocked(id)
	}
	if bodyLen > recentBodyMax {
		body = nil
	}
	r := &recentRec{id: id, meta: meta, bodyLen: bodyLen, body: body, size: metaSize(meta) + int64(len(body))}
	c.m[id] = c.fifo.PushBack(r)
	c.bytes += r.size
	for c.bytes > recentMax {
		c.removeLocked(c.fifo.Front())
	}
}

func (c *recent) delLocked(id string) {
	if el, ok := c.m[id]; ok {
		c.removeLocked(el)
	}
}

func (c *recent) removeLocked(el *list.Element) {
	r := el.Value.(*recentRec)
	c.bytes -= r.size
	c.fifo.Remove(el)
	if c.m[r.id] == el {
		delete(c.m, r.id)
	}
}

// record returns a copy of the cached record for a caller, with its body when withBody
// (false when the body is not kept): a copy, or the cached body itself when share
// (Options.SharedBodies).
func (r *recentRec) record(withBody, share bool) (*Record, bool) {
	if withBody && r.body == nil && r.bodyLen > 0 {
		return nil, false
	}
	rec := *r.meta
	if withBody {
		rec.Body = r.body
		if !share {
			rec.Body = slices.Clone(r.body)
		}
		if rec.Body == nil {
			rec.Body = []byte{}
		}
	}
	return &rec, true
}

// metaSize estimates the memory a cached record's metadata takes.
func metaSize(r *Record) int64 {
	n := 256 + len(r.ID) + len(r.Queue) + len(r.Method) + len(r.Path) + len(r.Query) + len(r.DeadReason) + len(r.Holder)
	for _, h := range r.Headers {
		n += 32 + len(h.Name) + len(h.Value)
	}
	for _, d := range r.Deliveries {
		n += 48 + len(d.Error)
	}
	return int64(n)
}

// canonicalize makes r's metadata what decodeMeta returns once stored, in place: times
// without monotonic reading or location, empty lists nil, no body. Its Deliveries are copied
// when an entry changes (they may be a cached record's); its Headers are a staged record's,
// the store's own (writeInsert copies a caller's), and never changed.
func canonicalize(r *Record) {
	r.Body = nil
	r.ReceivedAt = canonTime(r.ReceivedAt)
	r.NextAttempt = canonTime(r.NextAttempt)
	r.FinishedAt = canonTime(r.FinishedAt)
	if len(r.Headers) == 0 {
		r.Headers = nil
	}
	if len(r.Deliveries) == 0 {
		r.Deliveries = nil
	}
	for i := range r.Deliveries {
		if canonTime(r.Deliveries[i].At) != r.Deliveries[i].At { // the same representation
			r.Deliveries = slices.Clone(r.Deliveries)
			for j := i; j < len(r.Deliveries); j++ {
				r.Deliveries[j].At = canonTime(r.Deliveries[j].At)
			}
			break
		}
	}
}

func canonTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.Unix(0, t.UnixNano())
}

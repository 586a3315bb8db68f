package persist

import (
	"crypto/rand"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// IDGen makes ULIDs: monotonic within a millisecond, so ids sort by arrival. Entropy comes
// from ChaCha8 seeded by crypto/rand: unpredictable enough for ids, without a syscall each.
// The committer takes them as it stages appends, so they follow commit order; last keeps them
// increasing when the clock steps back (and across a restart, from the largest stored id).
type IDGen struct {
	mu   sync.Mutex
	ent  *ulid.MonotonicEntropy
	last uint64 // millisecond of the last id
}

// NewIDGen returns a generator seeded from crypto/rand.
func NewIDGen() *IDGen {
	var seed [32]byte
	rand.Read(seed[:])
	return &IDGen{ent: ulid.Monotonic(mrand.NewChaCha8(seed), 0)}
}

// After makes later ids sort after id when id is a ULID of a time not far ahead of now (a
// caller-given id may be anything).
func (g *IDGen) After(id string, now time.Time) {
	u, err := ulid.ParseStrict(id)
	if err != nil || u.Time() > ulid.Timestamp(now.Add(time.Hour)) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	// The next millisecond: within the same one the entropy would start afresh.
	g.last = max(g.last, u.Time()+1)
}

func (g *IDGen) Next(t time.Time) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := max(ulid.Timestamp(t), g.last)
	for {
		id, err := ulid.New(ms, g.ent)
		if err == nil {
			g.last = ms
			return id.String()
		}
		ms++ // entropy ran out within this millisecond
	}
}

package relay

import (
	"context"
	"crypto/sha256"
	"net/http"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// dedupSweepEvery is how often claim drops the expired entries.
const dedupSweepEvery = time.Minute

// dedup remembers the Standard Webhooks message ids (webhook-id) accepted per endpoint inside
// their replay window, so that a sender retrying after a lost answer gets the first answer
// again and the message is stored once. Keys are SHA-256(endpoint, 0, message id): fixed
// size whatever the sender's id.
//
// It is rebuilt at start from the store itself: every stored record keeps its headers, so
// the records received inside the window say which ids were accepted (seed). No separate
// index is written, and a restart inside the window still deduplicates. A record deleted
// inside its window (admin DELETE of a dead letter, or keep_done_max pushing out finished
// records faster than the window) is forgotten at the next restart; the window (twice the
// scheme's tolerance, 10 min by default) is far shorter than keep_done (24h by default).
type dedup struct {
	mu        sync.Mutex
	m         map[[sha256.Size]byte]*dedupEntry
	lastSweep time.Time
}

// dedupEntry is an accepted message (id set) or one being stored (id "", done open).
// Only messages whose signature verified get an entry, so a sender without the secret
// cannot fill the map.
type dedupEntry struct {
	id   string        // hookrelay id of the first copy; "" while it is being stored
	exp  time.Time     // the entry is forgotten after this
	done chan struct{} // closed, then dropped, when the first copy is stored or failed
}

// dedupClaim is held by the one request storing a new message id; done ends it.
type dedupClaim struct {
	d   *dedup
	key [sha256.Size]byte
	e   *dedupEntry
	win time.Duration
}

func newDedup() *dedup {
	return &dedup{m: map[[sha256.Size]byte]*dedupEntry{}, lastSweep: time.Now()}
}

func dedupKey(endpoint, msgID string) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(endpoint))
	h.Write([]byte{0})
	h.Write([]byte(msgID))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// claim looks msgID up. An id accepted inside its window returns that id (answer it again,
// do not store). Otherwise the caller gets a claim and must call its done once stored or
// failed; concurrent requests with the same id wait for it meanwhile (one lock per key), and
// get the stored id, or the claim when the first one failed. An error means ctx ended first.
func (d *dedup) claim(ctx context.Context, endpoint, msgID string, now time.Time, window time.Duration) (string, *dedupClaim, error) {
	key := dedupKey(endpoint, msgID)
	for {
		d.mu.Lock()
		d.sweepLocked(now)
		e := d.m[key]
		switch {
		case e == nil || (e.id != "" && now.After(e.exp)):
			e = &dedupEntry{done: make(chan struct{})}
			d.m[key] = e
			d.mu.Unlock()
			return "", &dedupClaim{d: d, key: key, e: e, win: window}, nil
		case e.id != "":
			d.mu.Unlock()
			return e.id, nil, nil
		}
		wait := e.done
		d.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return "", nil, ctx.Err()
		}
		now = time.Now()
	}
}

// done records the outcome of a claim: the stored id and its receive time, or "" when the
// message was not stored (the next copy will be).
func (c *dedupClaim) done(id string, at time.Time) {
	d := c.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if id == "" {
		if d.m[c.key] == c.e {
			delete(d.m, c.key)
		}
	} else {
		c.e.id, c.e.exp = id, at.Add(c.win)
	}
	close(c.e.done)
	c.e.done = nil // waiters hold their own copy; a stored entry needs none
}

// forget drops the entry of msgID when it names id: that webhook's answer went back to its
// sender, who owns the retries, so a resend is stored and delivered anew.
func (d *dedup) forget(endpoint, msgID, id string) {
	key := dedupKey(endpoint, msgID)
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.m[key]; e != nil && e.id == id {
		delete(d.m, key)
	}
}

func (d *dedup) sweepLocked(now time.Time) {
	if now.Sub(d.lastSweep) < dedupSweepEvery {
		return
	}
	d.lastSweep = now
	for k, e := range d.m {
		if e.id != "" && now.After(e.exp) {
			delete(d.m, k)
		}
	}
}

// seedDedup remembers the message ids accepted inside the replay window of every endpoint
// that verifies Standard Webhooks, from the records in the store.
func (s *Server) seedDedup(lv *live) {
	now := time.Now()
	for _, e := range lv.order {
		win := e.verifier.ReplayWindow()
		if win <= 0 {
			continue
		}
		n, err := s.dedup.seed(s.queue, e.name, win, now)
		if err != nil {
			s.log.Warn("could not read recent message ids: replays inside the window may be stored twice",
				"endpoint", e.name, "err", err)
			continue
		}
		if n > 0 {
			s.log.Info("remembered recent Standard Webhooks message ids", "endpoint", e.name, "count", n, "window", win)
		}
	}
}

// seed remembers the message ids of endpoint's records received inside window before now,
// read from their stored webhook-id header. An id already known keeps its entry; of two
// records with one id, the older (smaller id) is the first answer.
func (d *dedup) seed(q Queue, endpoint string, window time.Duration, now time.Time) (int, error) {
	recs, err := q.List(context.Background(), persist.Filter{Queue: endpoint, Since: now.Add(-window), Limit: 1 << 30})
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, r := range recs {
		msgID := headerValue(r.Headers, "Webhook-Id")
		if msgID == "" || (r.State == persist.StateDead && r.DeadReason == reasonReturned) {
			continue // a message returned to its sender is stored again when resent
		}
		key := dedupKey(endpoint, msgID)
		if e := d.m[key]; e != nil && (e.id == "" || e.id < r.ID) {
			continue
		}
		d.m[key] = &dedupEntry{id: r.ID, exp: r.ReceivedAt.Add(window)}
		n++
	}
	return n, nil
}

// headerValue is the first value of the stored header name (canonical form).
func headerValue(hs []persist.Header, name string) string {
	for _, h := range hs {
		if http.CanonicalHeaderKey(h.Name) == name {
			return h.Value
		}
	}
	return ""
}

package relay

import (
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

const (
	// preauthStale is how long a tunnel may wait for its Hello before a new tunnel, arriving
	// when max_pending_tunnels is reached, may take its place: a real agent says Hello within
	// a round trip of connecting, so the pending tunnels an attacker holds go first.
	preauthStale = time.Second
	// preauthRetry is the Retry-After of a tunnel refused for a pending cap.
	preauthRetry = 5
)

// preauth counts the tunnels not yet past their Hello, in total (max_pending_tunnels) and
// per client address (max_pending_tunnels_per_client; an IPv6 /64), so that connections
// that never authenticate cannot hold memory without limit. It has its own lock: a QUIC
// tunnel gives its slot back from Close, which the hub may call under its mu.
type preauth struct {
	metrics *metrics

	mu       sync.Mutex
	byClient map[netip.Addr]int
	slots    map[*preauthSlot]struct{}
}

// preauthSlot is one pending tunnel's place; leave gives it back. Its fields are guarded by
// preauth.mu.
type preauthSlot struct {
	p       *preauth
	client  netip.Addr
	since   time.Time
	t       protocol.Tunnel // once upgraded (WebSocket): a stale slot can then be evicted
	left    bool
	evicted bool
}

// preauthRefusal is a tunnel refused for a pending cap: status and msg are its HTTP answer
// (on QUIC, msg is the close reason), reason its metrics label.
type preauthRefusal struct {
	status int
	reason string
	msg    string
}

func newPreauth(m *metrics) *preauth {
	return &preauth{metrics: m, byClient: map[netip.Addr]int{}, slots: map[*preauthSlot]struct{}{}}
}

// enter takes a slot for a new tunnel from client under the caps of cfg. When the total cap
// is reached, the oldest upgraded tunnel pending for over preauthStale is closed to make
// room; if there is none the new tunnel is refused. Refusals are counted.
func (p *preauth) enter(client netip.Addr, cfg *Config) (*preauthSlot, *preauthRefusal) {
	k := clientKey(client)
	p.mu.Lock()
	var victim *preauthSlot
	var no *preauthRefusal
	switch {
	case p.byClient[k] >= cfg.MaxPendingTunnelsPerClient:
		no = &preauthRefusal{http.StatusTooManyRequests, "pending_client",
			"too many tunnels from your address waiting for their hello (max_pending_tunnels_per_client): retry later"}
	case len(p.slots) >= cfg.MaxPendingTunnels:
		if victim = p.oldestStaleLocked(); victim == nil {
			no = &preauthRefusal{http.StatusServiceUnavailable, "pending_total",
				"too many tunnels waiting for their hello (max_pending_tunnels): retry later"}
		} else {
			victim.evicted = true
			p.leaveLocked(victim)
		}
	}
	var slot *preauthSlot
	if no == nil {
		slot = &preauthSlot{p: p, client: k, since: time.Now()}
		p.slots[slot] = struct{}{}
		p.byClient[k]++
	}
	p.mu.Unlock()
	if victim != nil {
		p.metrics.handshakeFail.WithLabelValues("pending_evicted").Inc()
		victim.t.Close() // its serve ends the handshake and logs it
	}
	if no != nil {
		p.metrics.handshakeFail.WithLabelValues(no.reason).Inc()
	}
	return slot, no
}

// oldestStaleLocked is the upgraded slot pending longest, if that is over preauthStale.
func (p *preauth) oldestStaleLocked() *preauthSlot {
	var old *preauthSlot
	for s := range p.slots {
		if s.t != nil && (old == nil || s.since.Before(old.since)) {
			old = s
		}
	}
	if old == nil || time.Since(old.since) < preauthStale {
		return nil
	}
	return old
}

func (p *preauth) leaveLocked(s *preauthSlot) {
	if s.left {
		return
	}
	s.left = true
	delete(p.slots, s)
	if p.byClient[s.client]--; p.byClient[s.client] <= 0 {
		delete(p.byClient, s.client)
	}
}

// pending is how many tunnels hold a slot (tests).
func (p *preauth) pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.slots)
}

// attach records the tunnel of s, which may from now on be evicted. Nil-safe.
func (s *preauthSlot) attach(t protocol.Tunnel) {
	if s == nil {
		return
	}
	s.p.mu.Lock()
	s.t = t
	s.p.mu.Unlock()
}

// leave gives the slot back. Idempotent and nil-safe.
func (s *preauthSlot) leave() {
	if s == nil {
		return
	}
	s.p.mu.Lock()
	s.p.leaveLocked(s)
	s.p.mu.Unlock()
}

// wasEvicted reports whether enter closed this slot's tunnel to make room. Nil-safe.
func (s *preauthSlot) wasEvicted() bool {
	if s == nil {
		return false
	}
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return s.evicted
}

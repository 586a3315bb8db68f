package relay

import (
	"net/netip"
	"sync"
)

// clients counts, per client address, the ingress requests in flight and the body bytes
// they hold, so that one sender cannot take the whole ingress_buffer or every handler. An
// IPv6 client is counted by its /64, since one host commonly holds a whole /64.
type clients struct {
	mu sync.Mutex
	m  map[netip.Addr]*clientUse // by clientKey; an entry lives while it has requests
}

// clientUse is one client's share; its fields are guarded by clients.mu.
type clientUse struct {
	key      netip.Addr
	requests int
	bytes    int64
}

func clientKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a
}

// enter counts one more request of a; false (and nothing counted) when a already has
// limit requests in flight. Every true enter needs one leave.
func (c *clients) enter(a netip.Addr, limit int) (*clientUse, bool) {
	k := clientKey(a)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[netip.Addr]*clientUse)
	}
	u := c.m[k]
	if u == nil {
		u = &clientUse{key: k}
		c.m[k] = u
	}
	if u.requests >= limit {
		return nil, false
	}
	u.requests++
	return u, true
}

// leave ends a request of u, after it released its bytes.
func (c *clients) leave(u *clientUse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if u.requests--; u.requests == 0 {
		delete(c.m, u.key)
	}
}

// reserve adds n bytes to u's share; false (nothing added) when that would pass limit.
func (c *clients) reserve(u *clientUse, n, limit int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if u.bytes+n > limit {
		return false
	}
	u.bytes += n
	return true
}

func (c *clients) release(u *clientUse, n int64) {
	c.mu.Lock()
	u.bytes -= n
	c.mu.Unlock()
}

// inFlight is the number of requests of a in flight (tests and the attack measurement).
func (c *clients) inFlight(a netip.Addr) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if u := c.m[clientKey(a)]; u != nil {
		return u.requests
	}
	return 0
}

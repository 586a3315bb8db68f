package verify

import (
	"context"
	"crypto/sha256"
	"runtime"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Unauthenticated requests must not be able to keep every core busy hashing guesses: bcrypt
// comparisons run at most bcryptSlots at a time in the process (across endpoints), at most
// bcryptWaiters more wait for a slot, and the rest are answered "busy" (429) at once.
var (
	bcryptSlots   = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))
	bcryptWaiters = make(chan struct{}, 4*cap(bcryptSlots))
)

// compareBcrypt compares pass with hash in one of the process's bcrypt slots. busy is true
// when none was free and the waiting room was full, or ctx ended while waiting.
func compareBcrypt(ctx context.Context, hash, pass []byte) (ok, busy bool) {
	select {
	case bcryptSlots <- struct{}{}:
	default:
		select {
		case bcryptWaiters <- struct{}{}:
		default:
			return false, true
		}
		select {
		case bcryptSlots <- struct{}{}:
			<-bcryptWaiters
		case <-ctx.Done():
			<-bcryptWaiters
			return false, true
		}
	}
	defer func() { <-bcryptSlots }()
	return bcrypt.CompareHashAndPassword(hash, pass) == nil, false
}

// passedTTL is how long an Authorization header bcrypt accepted is accepted again without a
// comparison: a sender's requests in a burst cost one bcrypt, not one each. Only accepted
// headers are kept (as SHA-256 sums), so guesses cannot fill the cache.
const (
	passedTTL = time.Minute
	passedMax = 64
)

// passedCache holds the sums of recently accepted Authorization headers.
type passedCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]time.Time // sum -> expiry
}

func (c *passedCache) has(key [sha256.Size]byte, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.m[key]
	return ok && now.Before(exp)
}

func (c *passedCache) add(key [sha256.Size]byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[sha256.Size]byte]time.Time)
	}
	if len(c.m) >= passedMax {
		for k, exp := range c.m {
			if !now.Before(exp) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= passedMax {
			clear(c.m)
		}
	}
	c.m[key] = now.Add(passedTTL)
}

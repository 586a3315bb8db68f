package agent

import (
	"math/rand/v2"
	"time"
)

// backoff is the wait before retry attempt+1 (attempt counts from 0), for both reconnects and
// deliveries: a ceiling of base·2^attempt capped at limit, and a random wait between floor and
// that ceiling (full jitter), so that many agents or records do not retry in step.
func backoff(floor, base, limit time.Duration, attempt int) time.Duration {
	c := limit
	if attempt < 40 {
		if e := base << attempt; e > 0 && e < limit {
			c = e
		}
	}
	if c <= floor {
		return floor
	}
	return floor + time.Duration(rand.Int64N(int64(c-floor)+1))
}

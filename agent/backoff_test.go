package agent

import (
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	for _, tc := range []struct {
		floor, base, limit time.Duration
		attempt            int
		lo, hi             time.Duration
	}{
		{time.Second, time.Second, time.Hour, 0, time.Second, time.Second},
		{time.Second, time.Second, time.Hour, 3, time.Second, 8 * time.Second},
		{time.Second, time.Second, 5 * time.Second, 10, time.Second, 5 * time.Second},
		{time.Second, time.Second, time.Hour, 1000, time.Second, time.Hour},
		{time.Millisecond, 500 * time.Millisecond, 30 * time.Second, 2, time.Millisecond, 2 * time.Second},
	} {
		seenAbove := false
		for range 200 {
			d := backoff(tc.floor, tc.base, tc.limit, tc.attempt)
			if d < tc.lo || d > tc.hi {
				t.Fatalf("backoff(%v, %v, %v, %d) = %v, want in [%v, %v]", tc.floor, tc.base, tc.limit, tc.attempt, d, tc.lo, tc.hi)
			}
			seenAbove = seenAbove || d > tc.lo+(tc.hi-tc.lo)/2
		}
		if tc.hi > tc.lo && !seenAbove {
			t.Errorf("backoff(%v, %v, %v, %d): no jitter in the upper half in 200 draws", tc.floor, tc.base, tc.limit, tc.attempt)
		}
	}
}

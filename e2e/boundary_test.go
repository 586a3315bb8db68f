package e2e

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// Bodies at the sizes where the way a body is carried changes (empty; the 64 KiB tunnel
// chunk; the stores' 512 KiB segments and 1 MiB staging flush, each -1, exact and +1) are
// kept byte-exact across a kill -9 of the relay while it holds them and a kill -9 of the
// agent while it retries them, then delivered; over WebSocket and over QUIC. A body of exactly 1 MiB was staged in parts,
// and the store's Open took those parts for an unfinished append's and deleted them: the
// webhook was accepted and never delivered.
func TestBoundaryBodiesSurviveRestarts(t *testing.T) {
	for _, tr := range []string{"ws", "quic"} {
		t.Run(tr, func(t *testing.T) { boundaryBodies(t, tr) })
	}
}

func boundaryBodies(t *testing.T, transport string) {
	w := newWorld(t, worldOpts{transport: transport})
	var accept atomic.Bool
	var mu sync.Mutex
	tried := map[string]bool{}
	got := map[string][32]byte{}
	w.target.hook.Store(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			rw.WriteHeader(500)
			return
		}
		id := r.Header.Get("hookrelay-id")
		mu.Lock()
		defer mu.Unlock()
		tried[id] = true
		if !accept.Load() {
			rw.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		got[id] = sum
	}))
	agent := w.agents[0]
	agent.kill() // the relay holds them first

	var sizes []int
	for _, edge := range []int{64 << 10, 512 << 10, 1 << 20, 2 << 20} {
		sizes = append(sizes, edge-1, edge, edge+1)
	}
	sizes = append(sizes, 0, 1)
	want := map[string][32]byte{}
	for i, n := range sizes {
		body := make([]byte, n)
		rand.NewChaCha8([32]byte{byte(i), 1}).Read(body)
		id, err := postLarge(w, body)
		if err != nil {
			t.Fatalf("post %d bytes: %v", n, err)
		}
		want[id] = sha256.Sum256(body)
	}
	// check waits until count (called under mu) reaches every webhook posted.
	check := func(what string, count func() int) {
		t.Helper()
		testutil.CheckFor(t, 2*time.Minute, 50*time.Millisecond, func() error {
			mu.Lock()
			n := count()
			mu.Unlock()
			if n < len(want) {
				return fmt.Errorf("%s: %d of %d", what, n, len(want))
			}
			return nil
		})
	}

	w.relay.kill()
	w.relay.start()
	w.waitRelay()
	agent.start()
	// Every one attempted: the agent holds them all (it delivers only what it stored).
	check("attempted", func() int { return len(tried) })
	agent.kill()
	accept.Store(true)
	agent.start()
	check("delivered", func() int { return len(got) })
	mu.Lock()
	defer mu.Unlock()
	for id, sum := range want {
		if got[id] != sum {
			t.Errorf("%s: the target got another body", id)
		}
	}
}

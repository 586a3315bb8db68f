package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

// largeRSSMax bounds the peak RSS (VmHWM, from start) of relay and agent while three 10 MiB
// webhooks go through at once: bodies stream from ingress to disk to tunnel to disk to the
// target, never whole in memory (before they did, the relay peaked at 138 MiB and the agent at
// 124 MiB here; 43 and 39 after).
const largeRSSMax = 64 << 10 // KiB

// Three 10 MiB webhooks posted at once reach the target byte-exact with their
// Content-Length, and neither process's peak RSS follows the bodies.
func TestLargeBodiesStreamed(t *testing.T) {
	w := newWorld(t, worldOpts{})
	var mu sync.Mutex
	got := map[string][32]byte{}
	w.target.hook.Store(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil || n != r.ContentLength {
			t.Errorf("target read %d bytes (%v), Content-Length %d", n, err, r.ContentLength)
			rw.WriteHeader(500)
			return
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		mu.Lock()
		got[r.Header.Get("hookrelay-id")] = sum
		mu.Unlock()
	}))
	const n, size = 3, 10 << 20
	want := map[string][32]byte{}
	var wg sync.WaitGroup
	for i := range n {
		body := make([]byte, size)
		rand.NewChaCha8([32]byte{byte(i)}).Read(body)
		sum := sha256.Sum256(body)
		wg.Go(func() {
			id, err := postLarge(w, body)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			want[id] = sum
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	testutil.CheckFor(t, 2*time.Minute, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) < n {
			return fmt.Errorf("%d of %d delivered", len(got), n)
		}
		return nil
	})
	mu.Lock()
	for id, sum := range want {
		if got[id] != sum {
			t.Errorf("%s: the target got another body", id)
		}
	}
	mu.Unlock()
	relay, agent := w.relay.peakRSS(), w.agents[0].peakRSS()
	t.Logf("peak RSS: relay %d MiB, agent %d MiB", relay>>10, agent>>10)
	if relay > largeRSSMax || agent > largeRSSMax {
		t.Errorf("peak RSS relay %d KiB, agent %d KiB: want both at most %d KiB", relay, agent, largeRSSMax)
	}
}

// postLarge posts body to the world's endpoint and returns the id of the 202.
func postLarge(w *world, body []byte) (string, error) {
	resp, err := w.client.Post(fmt.Sprintf("http://127.0.0.1:%d/h/e2e/large", w.relayPort), "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	var out struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("post: %d (%v)", resp.StatusCode, err)
	}
	return out.ID, nil
}

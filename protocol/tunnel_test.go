package protocol

import (
	"crypto/rand"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
)

// exchangeAll writes every sample frame from one side and reads them on the other, both
// ways. Unordered, it accepts them in any order (QUIC spreads frames over streams).
func exchangeAll(t *testing.T, a, b Tunnel, ordered bool) {
	t.Helper()
	for _, dir := range []struct {
		name     string
		from, to Tunnel
	}{{"a to b", a, b}, {"b to a", b, a}} {
		errc := make(chan error, 1)
		go func() {
			for _, tc := range sampleFrames() {
				if err := dir.from.WriteFrame(tc.f); err != nil {
					errc <- fmt.Errorf("write %s: %w", tc.name, err)
					return
				}
			}
			errc <- nil
		}()
		want := sampleFrames()
		for i := range sampleFrames() {
			got, err := readWithin(t, dir.to, 10*time.Second)
			if err != nil {
				t.Fatalf("%s: read frame %d: %v", dir.name, i, err)
			}
			j := 0
			if !ordered {
				for j < len(want)-1 && !reflect.DeepEqual(got, want[j].f) {
					j++
				}
			}
			if !reflect.DeepEqual(got, want[j].f) {
				t.Fatalf("%s: frame %d:\n got %#v\nwant %#v", dir.name, i, got, want[j].f)
			}
			want = append(want[:j], want[j+1:]...)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// largeWebhooks sends three 5 MiB webhooks concurrently with SendWebhook from one tunnel and
// rebuilds them with an Assembler on the other.
func largeWebhooks(t *testing.T, from, to Tunnel) {
	t.Helper()
	bodies := map[string][]byte{}
	for _, id := range []string{"w1", "w2", "w3"} {
		bodies[id] = make([]byte, 5<<20)
		rand.Read(bodies[id])
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for id, body := range bodies {
		wg.Go(func() {
			w := &Webhook{ID: id, Endpoint: "github", Method: "POST", Body: body}
			if err := SendWebhook(from, w, 0); err != nil {
				t.Errorf("send %s: %v", id, err)
			}
			if w.BodyLen != 0 || len(w.Body) != 5<<20 {
				t.Errorf("SendWebhook modified its webhook")
			}
		})
	}
	var a Assembler
	got := map[string][]byte{}
	for frames := 0; len(got) < len(bodies); frames++ {
		f, err := readWithin(t, to, 20*time.Second)
		if err != nil {
			t.Fatalf("after %d frames: %v", frames, err)
		}
		switch f := f.(type) {
		case *Webhook:
			if f.BodyLen != 5<<20 || len(f.Body) != DefaultChunk {
				t.Fatalf("first frame: body %d of %d, want %d of %d", len(f.Body), f.BodyLen,
					DefaultChunk, 5<<20)
			}
		case *Chunk:
			if len(f.Data) > DefaultChunk {
				t.Fatalf("chunk of %d bytes, over %d", len(f.Data), DefaultChunk)
			}
		}
		w, done, err := a.Add(f)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			got[w.ID] = w.Body
		}
	}
	sameBodies(t, got, bodies)
}

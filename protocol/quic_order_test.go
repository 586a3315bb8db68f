package protocol

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// TestQUICOrderKeyKeepsOrder: webhooks sharing an OrderKey arrive whole in the order sent
// over 4 data streams, though their ids hash to every stream and the first ones are big (a
// big webhook on one stream would be overtaken by small ones on the others).
func TestQUICOrderKeyKeepsOrder(t *testing.T) {
	const streams, n = 4, 120
	client, server := newQUICEnv(t, QUICConfig{Streams: streams}).pair(t, "")
	if err := server.WriteFrame(&Ping{Nonce: 1}); err != nil { // the relay's Welcome
		t.Fatal(err)
	}
	if _, err := readWithin(t, client, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	used := map[uint32]bool{}
	size := func(i int) int { return max(1<<20>>(i/4), 10) } // 1 MiB first, then smaller
	errs := make(chan error, 1)
	go func() {
		for i := range n {
			id := fmt.Sprintf("w%03d", i)
			used[hashID(id)%streams] = true
			body := bytes.Repeat([]byte{byte(i)}, size(i))
			if err := SendWebhook(server, &Webhook{ID: id, Endpoint: "ep", OrderKey: "ep", Body: body}, 64<<10); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	var a Assembler
	for i := 0; i < n; {
		f, err := readWithin(t, client, 20*time.Second)
		if err != nil {
			t.Fatalf("after %d webhooks: %v", i, err)
		}
		w, done, err := a.Add(f)
		if err != nil {
			t.Fatal(err)
		}
		if !done {
			continue
		}
		if want := fmt.Sprintf("w%03d", i); w.ID != want {
			t.Fatalf("webhook %d arrived as %s, want %s: overtaken", i, w.ID, want)
		}
		if len(w.Body) != size(i) || w.Body[0] != byte(i) {
			t.Fatalf("webhook %s body differs", w.ID)
		}
		i++
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if len(used) != streams {
		t.Fatalf("test ids use %d of %d streams", len(used), streams)
	}
}

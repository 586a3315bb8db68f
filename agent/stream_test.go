package agent

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/protocol"
)

// A body over sinkOver goes from the tunnel into the store's parts and from there to the
// target: it arrives byte-exact, with its Content-Length, and the agent acks it.
func TestLargeBodyStreamedToTarget(t *testing.T) {
	body := make([]byte, 6<<20+321)
	rand.NewChaCha8([32]byte{3}).Read(body)
	want := sha256.Sum256(body)
	got := make(chan [32]byte, 4)
	tg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		if r.ContentLength != n {
			t.Errorf("Content-Length %d, body %d bytes", r.ContentLength, n)
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		got <- sum
	}))
	t.Cleanup(tg.Close)
	fr := newFakeRelay(t)
	a := newTestAgent(t, fr.url(), fastRoute(tg.URL))
	runAgent(t, a)
	c := fr.welcome(t)
	c.send(t, &protocol.Webhook{ID: "big1", Endpoint: "ep", Method: "POST", ReceivedAt: time.Now(),
		BodyLen: int64(len(body)), BodyFrom: bytes.NewReader(body)})
	ack := nextOf[*protocol.Ack](t, c, nil)
	if len(ack.IDs) != 1 || ack.IDs[0] != "big1" {
		t.Fatalf("ack %v, want big1", ack.IDs)
	}
	select {
	case sum := <-got:
		if sum != want {
			t.Fatal("the target got another body")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("not delivered within 20s")
	}
}

package protocol

import (
	"bytes"
	"errors"
	"testing"
)

// split cuts body into a Webhook frame and Chunk frames of at most n bytes each, the way
// SendWebhook puts them on the wire.
func split(id string, body []byte, n int) []Frame {
	first := min(n, len(body))
	out := []Frame{&Webhook{ID: id, Endpoint: "e", BodyLen: int64(len(body)), Body: body[:first]}}
	for off := first; off < len(body); off += n {
		out = append(out, &Chunk{ID: id, Offset: int64(off), Data: body[off:min(off+n, len(body))]})
	}
	return out
}

func TestAssemblerWholeAndMultiChunk(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int
		chunk  int
		frames int
	}{
		{"empty body", 0, 10, 1},
		{"one frame", 10, 10, 1},
		{"exact multiple", 30, 10, 3},
		{"ragged tail", 31, 10, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := binaryBody(tc.size)
			frames := split("w1", body, tc.chunk)
			if len(frames) != tc.frames {
				t.Fatalf("split into %d frames, want %d", len(frames), tc.frames)
			}
			var a Assembler
			for i, f := range frames {
				w, done, err := a.Add(f)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if last := i == len(frames)-1; done != last {
					t.Fatalf("frame %d: done = %v", i, done)
				}
				if done {
					if w.ID != "w1" || w.Endpoint != "e" || !bytes.Equal(w.Body, body) ||
						w.BodyLen != int64(len(body)) {
						t.Fatalf("assembled %q len %d, want body of %d", w.ID, len(w.Body), len(body))
					}
				}
			}
			if a.pending() != 0 {
				t.Fatalf("%d pending after completion", a.pending())
			}
		})
	}
}

func TestAssemblerInterleaved(t *testing.T) {
	bodies := map[string][]byte{"a": binaryBody(95), "b": bytes.Repeat([]byte("b"), 42),
		"c": binaryBody(7)}
	var queues [][]Frame
	for id, body := range bodies {
		queues = append(queues, split(id, body, 10))
	}
	var a Assembler
	got := map[string][]byte{}
	interleave(t, &a, queues, func(_ int, w *Webhook) { got[w.ID] = w.Body })
	sameBodies(t, got, bodies)
}

// interleave hands a the queues' frames round-robin, one frame of each queue in turn, and
// calls done for each webhook completed (i is its queue). An error fails the test.
func interleave(t *testing.T, a *Assembler, queues [][]Frame, done func(i int, w *Webhook)) {
	t.Helper()
	for more := true; more; {
		more = false
		for i := range queues {
			if len(queues[i]) == 0 {
				continue
			}
			more = true
			w, complete, err := a.Add(queues[i][0])
			queues[i] = queues[i][1:]
			if err != nil {
				t.Fatalf("webhook %d: %v", i, err)
			}
			if complete {
				done(i, w)
			}
		}
	}
}

// sameBodies checks that every webhook of want was assembled with exactly its body.
func sameBodies(t *testing.T, got, want map[string][]byte) {
	t.Helper()
	for id, body := range want {
		if !bytes.Equal(got[id], body) {
			t.Errorf("webhook %s: %d bytes assembled, want %d", id, len(got[id]), len(body))
		}
	}
}

func TestAssemblerErrors(t *testing.T) {
	body := binaryBody(30)
	for _, tc := range []struct {
		name    string
		maxBody int64
		frames  []Frame
	}{
		{"chunk for unknown id", 0, []Frame{&Chunk{ID: "nope", Data: []byte("x")}}},
		{"chunk offset skips ahead", 0, []Frame{split("w", body, 10)[0], split("w", body, 10)[2]}},
		{"chunk offset repeats", 0, []Frame{split("w", body, 10)[0], split("w", body, 10)[1],
			split("w", body, 10)[1]}},
		{"chunk past body length", 0, []Frame{split("w", body, 10)[0],
			&Chunk{ID: "w", Offset: 10, Data: binaryBody(21)}}},
		{"body over MaxBody", 29, []Frame{split("w", body, 10)[0]}},
		{"whole body over MaxBody", 29, []Frame{&Webhook{ID: "w", BodyLen: 30, Body: body}}},
		{"body part longer than BodyLen", 0, []Frame{&Webhook{ID: "w", BodyLen: 3, Body: body}}},
		{"negative BodyLen", 0, []Frame{&Webhook{ID: "w", BodyLen: -1}}},
		{"same id again mid-body", 0, []Frame{split("w", body, 10)[0], split("w", body, 10)[0]}},
		{"not a webhook frame", 0, []Frame{&Ack{IDs: []string{"w"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := Assembler{MaxBody: tc.maxBody}
			var err error
			for _, f := range tc.frames {
				if _, _, err = a.Add(f); err != nil {
					break
				}
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want an error wrapping ErrMalformed", err)
			}
		})
	}
}

func TestAssemblerDoesNotKeepCallerBuffer(t *testing.T) {
	first := []byte("0123456789")
	var a Assembler
	if _, _, err := a.Add(&Webhook{ID: "w", BodyLen: 12, Body: first}); err != nil {
		t.Fatal(err)
	}
	copy(first, "XXXXXXXXXX")
	w, done, err := a.Add(&Chunk{ID: "w", Offset: 10, Data: []byte("ab")})
	if err != nil || !done || string(w.Body) != "0123456789ab" {
		t.Fatalf("got %q, %v, %v", w.Body, done, err)
	}
}

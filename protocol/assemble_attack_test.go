package protocol

// Attempts a malicious relay makes on the agent's Assembler, and what each now gets.

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Attempt: a relay opens 64 webhooks that each declare a 32 MiB body and sends a few bytes of
// each, never the rest. The agent used to preallocate every declared body (2 GiB of heap).
// Now: the heap grows by what was sent, not what was declared, and the relay gets an error
// naming the bound it broke (which ends its session).
func TestAttackDeclaredBodiesExhaustAgentMemory(t *testing.T) {
	const budget = 64 << 20
	var a Assembler
	before := heapInUse()
	var err error
	for i := range 64 {
		_, _, err = a.Add(&Webhook{ID: fmt.Sprintf("w%d", i), Endpoint: "e", BodyLen: DefaultMaxBody, Body: []byte("few bytes")})
		if err != nil {
			break
		}
		if grown := int64(heapInUse()) - int64(before); grown > budget {
			t.Fatalf("after %d incomplete webhooks the heap grew by %d MiB (budget %d MiB)", i+1, grown>>20, budget>>20)
		}
	}
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "incomplete webhooks") {
		t.Fatalf("64 incomplete 32 MiB webhooks: err %v, want an error naming the incomplete-webhooks bound", err)
	}
	if grown := int64(heapInUse()) - int64(before); grown > budget {
		t.Fatalf("heap grew by %d MiB (budget %d MiB)", grown>>20, budget>>20)
	}
	runtime.KeepAlive(&a)
}

// Attempt: many small incomplete webhooks (under the bytes bound) to grow the agent's map
// without end. Now: the count bound ends it.
func TestAttackManySmallIncompleteWebhooks(t *testing.T) {
	a := Assembler{MaxPending: 10}
	var err error
	n := 0
	for ; n < 1000 && err == nil; n++ {
		_, _, err = a.Add(&Webhook{ID: fmt.Sprintf("w%d", n), BodyLen: 2, Body: []byte("x")})
	}
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "MaxPending") || n != 11 {
		t.Fatalf("after %d webhooks: %v, want the MaxPending error at the 11th", n, err)
	}
	if a.pending() != 10 {
		t.Fatalf("%d pending, want 10", a.pending())
	}
}

// Attempt: bodies just under the count bound whose declared lengths add up past the byte
// bound. Now: the MaxPendingBytes error; finishing a webhook frees its share.
func TestAttackDeclaredBytesBound(t *testing.T) {
	a := Assembler{MaxPendingBytes: 100}
	if _, _, err := a.Add(&Webhook{ID: "a", BodyLen: 60, Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	_, _, err := a.Add(&Webhook{ID: "b", BodyLen: 41, Body: []byte("x")})
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "MaxPendingBytes") {
		t.Fatalf("60 + 41 declared bytes over 100: %v, want the MaxPendingBytes error", err)
	}
	if _, done, err := a.Add(&Chunk{ID: "a", Offset: 1, Data: make([]byte, 59)}); err != nil || !done {
		t.Fatalf("finish a: %v %v", done, err)
	}
	if _, _, err := a.Add(&Webhook{ID: "b", BodyLen: 100, Body: []byte("x")}); err != nil {
		t.Fatalf("after a finished, 100 declared bytes: %v", err)
	}
	// A broken chunk drops its webhook and its share too.
	if _, _, err := a.Add(&Chunk{ID: "b", Offset: 7, Data: []byte("x")}); err == nil {
		t.Fatal("chunk at a wrong offset accepted")
	}
	if _, _, err := a.Add(&Webhook{ID: "c", BodyLen: 100, Body: []byte("x")}); err != nil {
		t.Fatalf("after b was dropped, 100 declared bytes: %v", err)
	}
}

// Normal traffic still assembles byte-exact at the bounds: as many large bodies in 256 KiB
// chunks, interleaved, as the defaults allow.
func TestAssemblerLargeBodiesAtTheBounds(t *testing.T) {
	const n = DefaultMaxPendingBytes / DefaultMaxBody
	bodies := make([][]byte, n)
	queues := make([][]Frame, n)
	for i := range bodies {
		bodies[i] = binaryBody(DefaultMaxBody - i)
		bodies[i][0] = byte(i)
		queues[i] = split(fmt.Sprintf("w%d", i), bodies[i], DefaultChunk)
	}
	var a Assembler
	got := 0
	interleave(t, &a, queues, func(i int, w *Webhook) {
		got++
		if !bytes.Equal(w.Body, bodies[i]) || int64(cap(w.Body)) > w.BodyLen {
			t.Fatalf("webhook %d: %d bytes (cap %d), want %d byte-exact", i, len(w.Body), cap(w.Body), len(bodies[i]))
		}
	})
	if got != n || a.pending() != 0 {
		t.Fatalf("%d assembled, %d pending; want %d, 0", got, a.pending(), n)
	}
}

// FuzzAssembler feeds frames decoded from arbitrary bytes: the Assembler must never panic,
// never exceed its bounds, and every webhook it completes must hold exactly the bytes sent for
// it, in order.
func FuzzAssembler(f *testing.F) {
	f.Add([]byte{0, 1, 10, 3, 1, 1, 3, 3, 1, 1, 6, 4})
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3})
	f.Add(bytes.Repeat([]byte{0, 7, 255, 2}, 40))
	f.Fuzz(func(t *testing.T, ops []byte) {
		a := Assembler{MaxBody: 64, MaxPending: 3, MaxPendingBytes: 100}
		sent := map[string][]byte{} // what was sent for each open id
		for len(ops) >= 4 {
			kind, id, x, y := ops[0]%2, fmt.Sprintf("w%d", ops[1]%5), int64(ops[2]), int(ops[3]%40)
			ops = ops[4:]
			data := make([]byte, y)
			for i := range data {
				data[i] = byte(len(ops) + i) // distinct per frame, so a misplaced part shows
			}
			var fr Frame
			if kind == 0 {
				fr = &Webhook{ID: id, BodyLen: x - 20, Body: data}
			} else {
				fr = &Chunk{ID: id, Offset: x % 80, Data: data}
			}
			w, done, err := a.Add(fr)
			switch {
			case err != nil:
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("error %v does not wrap ErrMalformed", err)
				}
				if kind == 1 || a.partial[id] == nil {
					delete(sent, id)
				}
			case kind == 0:
				sent[id] = append([]byte(nil), data...)
			default:
				sent[id] = append(sent[id], data...)
			}
			if done {
				if want := sent[id]; !bytes.Equal(w.Body, want) || int64(len(w.Body)) != w.BodyLen {
					t.Fatalf("webhook %s: %x (BodyLen %d), sent %x", id, w.Body, w.BodyLen, want)
				}
				delete(sent, id)
			}
			if a.pending() > a.MaxPending || a.declared > a.MaxPendingBytes {
				t.Fatalf("bounds broken: %d pending, %d declared bytes", a.pending(), a.declared)
			}
		}
	})
}

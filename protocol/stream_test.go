package protocol

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// bufSink is a BodySink into memory, for the tests.
type bufSink struct {
	buf     bytes.Buffer
	aborted bool
}

func (b *bufSink) Take(p []byte) { b.buf.Write(p) }
func (b *bufSink) Abort()        { b.aborted = true }

// A body read from BodyFrom crosses a real tunnel in chunks and reaches the Assembler's sink
// byte-exact; the webhook comes out with no body in memory, and BodyFrom is closed.
func TestStreamedBodyToSink(t *testing.T) {
	client, server := wsPair(t, WSConfig{})
	body := make([]byte, 3<<20+777)
	rand.NewChaCha8([32]byte{7}).Read(body)
	from := &closeReader{Reader: bytes.NewReader(body)}
	errc := make(chan error, 1)
	go func() {
		errc <- SendWebhook(server, &Webhook{ID: "big", Endpoint: "e", BodyLen: int64(len(body)), BodyFrom: from}, 0)
	}()
	sinks := map[string]*bufSink{}
	a := Assembler{SinkOver: DefaultChunk, Sink: func(w *Webhook) BodySink {
		s := &bufSink{}
		sinks[w.ID] = s
		return s
	}}
	frames := 0
	for {
		f, err := readWithin(t, client, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		frames++
		w, done, err := a.Add(f)
		if err != nil {
			t.Fatal(err)
		}
		if !done {
			continue
		}
		if w.Body != nil || w.BodyLen != int64(len(body)) {
			t.Fatalf("webhook with %d body bytes in memory, BodyLen %d", len(w.Body), w.BodyLen)
		}
		break
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if want := (len(body) + DefaultChunk - 1) / DefaultChunk; frames != want {
		t.Fatalf("%d frames, want %d", frames, want)
	}
	if s := sinks["big"]; s == nil || !bytes.Equal(s.buf.Bytes(), body) || s.aborted {
		t.Fatal("the sink did not get the body byte-exact")
	}
	if !from.closed {
		t.Fatal("BodyFrom not closed")
	}
}

// A streamed webhook broken off by a malformed chunk, or left incomplete by Reset, aborts its
// sink.
func TestStreamedSinkAborted(t *testing.T) {
	var made []*bufSink
	a := Assembler{SinkOver: 10, Sink: func(*Webhook) BodySink {
		s := &bufSink{}
		made = append(made, s)
		return s
	}}
	body := bytes.Repeat([]byte("x"), 100)
	if _, _, err := a.Add(&Webhook{ID: "a", BodyLen: 100, Body: body[:20]}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Add(&Chunk{ID: "a", Offset: 30, Data: body[30:40]}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("chunk at a wrong offset: %v", err)
	}
	if _, _, err := a.Add(&Webhook{ID: "b", BodyLen: 100, Body: body[:20]}); err != nil {
		t.Fatal(err)
	}
	a.Reset()
	if len(made) != 2 || !made[0].aborted || !made[1].aborted || a.pending() != 0 || a.declared != 0 {
		t.Fatalf("sinks %d, aborted %v; pending %d, declared %d", len(made), made, a.pending(), a.declared)
	}
}

type closeReader struct {
	*bytes.Reader
	closed bool
}

func (c *closeReader) Close() error { c.closed = true; return nil }

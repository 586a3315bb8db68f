package protocol

// Attempts an unauthenticated peer makes on a relay's frame reading, and what each now gets.

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// stallReader gives a 4-byte length prefix declaring n bytes, then blocks until release is
// closed, then ends: a peer that declares a frame and sends none of it.
type stallReader struct {
	hdr     []byte
	stalled *sync.WaitGroup
	release chan struct{}
}

func (r *stallReader) Read(p []byte) (int, error) {
	if len(r.hdr) > 0 {
		n := copy(p, r.hdr)
		r.hdr = r.hdr[n:]
		return n, nil
	}
	if r.stalled != nil {
		r.stalled.Done()
		r.stalled = nil
	}
	<-r.release
	return 0, io.EOF
}

// Attempt: 200 peers each send a length prefix declaring a 1 MiB frame and nothing more. The
// reader used to allocate the declared length at once (200 MiB). Now: each reader holds at
// most readStep ahead of the bytes received, and the frames end as truncated.
func TestAttackDeclaredFrameLengthHeldOpen(t *testing.T) {
	const peers = 200
	before := heapInUse()
	var stalled, done sync.WaitGroup
	release := make(chan struct{})
	stalled.Add(peers)
	var errs [peers]error
	for i := range peers {
		hdr := binary.BigEndian.AppendUint32(nil, DefaultMaxFrame)
		rd := NewReader(&stallReader{hdr: hdr, stalled: &stalled, release: release}, 0)
		done.Go(func() { _, errs[i] = rd.ReadFrame() })
	}
	stalled.Wait()
	grew := int64(heapInUse()) - int64(before)
	close(release)
	done.Wait()
	t.Logf("%d readers each waiting for a declared 1 MiB frame: heap +%.1f MiB", peers, float64(grew)/(1<<20))
	if grew > 32<<20 {
		t.Errorf("heap grew by %d MiB for %d declared, unsent 1 MiB frames, want < 32 MiB", grew>>20, peers)
	}
	for _, err := range errs {
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("truncated frame: %v, want io.ErrUnexpectedEOF", err)
		}
	}
	// An over-limit length is still refused before anything is read or allocated.
	hdr := binary.BigEndian.AppendUint32(nil, DefaultMaxFrame+1)
	_, err := NewReader(&stallReader{hdr: hdr, release: release}, 0).ReadFrame()
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("over-limit length: %v, want ErrFrameTooLarge", err)
	}
}

// helloWithEmptyNames is a Hello frame payload (no length prefix) listing n empty endpoints.
func helloWithEmptyNames(n int) []byte {
	b := []byte{byte(FrameHello), 0, Version, 1, 'a', 1, 't'}
	b = binary.AppendUvarint(b, uint64(n))
	b = append(b, make([]byte, n)...)
	return append(b, 0) // no capabilities
}

// Attempt: before any authentication, a Hello lists a million empty endpoint names (1 MB
// on the wire, 16 MB decoded). Now: the Hello is malformed, naming the limit of MaxHelloList (1024),
// and decoding it allocates about its own size, not 16 times it.
func TestAttackHelloMillionEmptyNames(t *testing.T) {
	b := helloWithEmptyNames(1_000_000)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	f, err := DecodeFrame(b)
	runtime.ReadMemStats(&m1)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "limit 1024") {
		t.Fatalf("hello of a million endpoints: %T, %v; want ErrMalformed naming limit 1024", f, err)
	}
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 4<<20 {
		t.Errorf("decoding a %d-byte hello allocated %d MiB", len(b), alloc>>20)
	}
	h, err := DecodeFrame(helloWithEmptyNames(MaxHelloList))
	if err != nil || len(h.(*Hello).Endpoints) != MaxHelloList {
		t.Fatalf("hello of %d endpoints (the limit): %v", MaxHelloList, err)
	}
}

// Attempt: a QUIC peer opens the control stream and all 16 data streams and, before any Hello,
// pushes data down a data stream (the listener used to start 17 readers and drain every
// stream). Now: until the control stream's first frame only the control stream is read, so the
// data stream stalls at its small flow-control window; Admit's slot is held until the Hello.
func TestAttackQUICStreamsBeforeHello(t *testing.T) {
	var pending atomic.Int32
	env := newQUICEnv(t, QUICConfig{Admit: func(net.Addr) (func(), error) {
		pending.Add(1)
		return func() { pending.Add(-1) }, nil
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, env.ln.Addr().String(), quicTLS(&tls.Config{InsecureSkipVerify: true}),
		QUICConfig{}.withDefaults().quicConfig(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	streams := make([]*quic.Stream, 1+maxQUICStreams)
	for i := range streams {
		s, err := conn.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pre := []byte{preambleControl, maxQUICStreams}
		if i > 0 {
			pre = []byte{preambleData, byte(i - 1)}
		}
		if _, err := s.Write(pre); err != nil {
			t.Fatal(err)
		}
		streams[i] = s
	}
	server, err := env.ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	if n := pending.Load(); n != 1 {
		t.Fatalf("%d connections held by Admit before the hello, want 1", n)
	}

	big := AppendFrame(nil, &Chunk{ID: "x", Data: make([]byte, 900<<10)})
	streams[1].SetWriteDeadline(time.Now().Add(time.Second))
	n, err := streams[1].Write(big)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a data stream took %d bytes before any hello (err %v), want it stalled", n, err)
	}

	if _, err := streams[0].Write(AppendFrame(nil, &Hello{Version: Version, AgentID: "a"})); err != nil {
		t.Fatal(err)
	}
	if f, err := readWithin(t, server, 5*time.Second); err != nil {
		t.Fatal(err)
	} else if _, ok := f.(*Hello); !ok {
		t.Fatalf("first frame %T, want the hello", f)
	}
	for deadline := time.Now().Add(5 * time.Second); pending.Load() != 0; {
		if time.Now().After(deadline) {
			t.Fatal("Admit's slot not released after the hello")
		}
		time.Sleep(10 * time.Millisecond)
	}
	streams[2].SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := streams[2].Write(big); err != nil {
		t.Fatalf("data stream after the hello: %v", err)
	}
	if f, err := readWithin(t, server, 10*time.Second); err != nil {
		t.Fatal(err)
	} else if c, ok := f.(*Chunk); !ok || len(c.Data) != 900<<10 {
		t.Fatalf("frame after the hello: %T, want the 900 KiB chunk", f)
	}
}

// Attempt: a QUIC peer connects while the relay's pending caps are full. Now: Admit refuses it
// and the connection is closed with the refusal's error code and reason.
func TestAttackQUICRefusedByAdmit(t *testing.T) {
	env := newQUICEnv(t, QUICConfig{Admit: func(net.Addr) (func(), error) {
		return nil, &Refusal{Code: CodeLimit, Reason: "too many tunnels waiting"}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tlsConf, err := PinnedTLSConfig(env.fingerprint, "")
	if err != nil {
		t.Fatal(err)
	}
	tun, err := DialQUIC(ctx, env.ln.Addr().String(), tlsConf, QUICConfig{})
	if err == nil {
		_, err = readWithin(t, tun, 5*time.Second)
		tun.Close()
	}
	var app *quic.ApplicationError
	if !errors.As(err, &app) || app.ErrorCode != quic.ApplicationErrorCode(CodeLimit) ||
		!strings.Contains(app.ErrorMessage, "too many tunnels waiting") {
		t.Fatalf("refused connection: %v, want application error %d with the reason", err, CodeLimit)
	}
}

// Attempt: an authenticated peer sends an Ack (or, from a relay, a Recorded) of a million
// empty ids: 1 MB on the wire, 16 MB decoded, every frame. Now: malformed past MaxIDList,
// which ends the session; at the limit it decodes.
func TestAttackAckMillionEmptyIDs(t *testing.T) {
	for _, typ := range []FrameType{FrameAck, FrameRecorded} {
		frame := func(n int) []byte {
			b := binary.AppendUvarint([]byte{byte(typ)}, uint64(n))
			return append(b, make([]byte, n)...)
		}
		if f, err := DecodeFrame(frame(1_000_000)); !errors.Is(err, ErrMalformed) || f != nil {
			t.Fatalf("type %d with a million ids: %v, %v; want ErrMalformed", typ, f, err)
		}
		if _, err := DecodeFrame(frame(MaxIDList)); err != nil {
			t.Fatalf("type %d with %d ids (the limit): %v", typ, MaxIDList, err)
		}
	}
}

// Attempt: an agent sends a Response (or a Report) of a million empty headers: 2 MB on the
// wire, 32 MB decoded. Now: malformed past MaxResponseHeaderList; at the limit it decodes.
func TestAttackResponseMillionEmptyHeaders(t *testing.T) {
	for _, typ := range []FrameType{FrameResponse, FrameReport} {
		frame := func(n int) []byte {
			b := []byte{byte(typ), 1, 'w'}
			if typ == FrameReport {
				b = append(b, make([]byte, 1+2+4+1+8)...) // outcome, status, attempts, error, at
			} else {
				b = append(b, 0, 200)
			}
			b = binary.AppendUvarint(b, uint64(n))
			return append(append(b, make([]byte, 2*n)...), 0) // n empty headers, empty body
		}
		if f, err := DecodeFrame(frame(1_000_000)); !errors.Is(err, ErrMalformed) || f != nil {
			t.Fatalf("type %d with a million headers: %v, %v; want ErrMalformed", typ, f, err)
		}
		if _, err := DecodeFrame(frame(MaxResponseHeaderList)); err != nil {
			t.Fatalf("type %d with %d headers (the limit): %v", typ, MaxResponseHeaderList, err)
		}
	}
}

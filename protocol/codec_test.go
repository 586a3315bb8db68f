package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

var testTime = time.Date(2025, 11, 25, 9, 42, 1, 123456789, time.UTC)

// binaryBody holds every byte value, so an encoding that mangles any of them shows.
func binaryBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// sampleFrames has each frame type at least twice: its zero value and a full one. Decoded
// frames come back in UTC with nil for empty slices, so the samples are written that way.
func sampleFrames() []struct {
	name string
	f    Frame
} {
	headers := []Header{
		{"Content-Type", "application/json"},
		{"X-Hub-Signature-256", "sha256=abc"},
		{"Set-Cookie", "a=1"}, {"Set-Cookie", "b=2"}, {"set-cookie", "c=3"},
		{"X-Empty", ""}, {"", "no name"},
	}
	for i := range 40 {
		headers = append(headers, Header{"X-Repeat", fmt.Sprint(i)})
	}
	return []struct {
		name string
		f    Frame
	}{
		{"hello zero", &Hello{}},
		{"hello", &Hello{Version: Version, AgentID: "edge-1", Token: "tok\x00en",
			Endpoints: []string{"github", "stripe", ""}, Capabilities: []string{"sync"},
			Expose: []string{"stripe"}, Group: "audit"}},
		{"welcome zero", &Welcome{}},
		{"recorded", &Recorded{IDs: []string{"01A", "01B"}}},
		{"recorded empty", &Recorded{}},
		{"welcome", &Welcome{SessionID: "s1", Endpoints: []string{"github"}, Window: 1000,
			MaxFrame: DefaultMaxFrame, ServerTime: testTime, Version: Version}},
		{"webhook zero", &Webhook{}},
		{"webhook", &Webhook{ID: "01JDQ0000000000000000000", Endpoint: "github",
			ReceivedAt: testTime, Replay: true, Sync: true, Method: "POST", Path: "/a/b", Query: "x=1&y=%20",
			Headers: headers, BodyLen: 300, Body: binaryBody(256)}},
		{"webhook utf8 and max", &Webhook{ID: "é", Endpoint: "日本", Method: "PATCH",
			BodyLen: math.MaxInt64, ReceivedAt: time.Unix(0, -1).UTC()}},
		{"chunk zero", &Chunk{}},
		{"chunk", &Chunk{ID: "w1", Offset: 1 << 40, Data: binaryBody(1000)}},
		{"ack zero", &Ack{}},
		{"ack", &Ack{IDs: []string{"a", "b", "a", ""}}},
		{"nack zero", &Nack{}},
		{"nack", &Nack{ID: "w1", Reason: "disk full", RetryAfter: 90 * time.Second}},
		{"nack negative", &Nack{ID: "w1", RetryAfter: -time.Nanosecond}},
		{"report zero", &Report{}},
		{"report", &Report{ID: "w1", Outcome: OutcomeDead, Status: 503, Attempts: 20,
			Error: "503 Service Unavailable", At: testTime}},
		{"report with response", &Report{ID: "w1", Outcome: OutcomeDead, Status: 409, Attempts: 1,
			At: testTime, Headers: []Header{{"X-Reason", "conflict"}, {"", ""}}, Body: []byte("{\"e\":1}")}},
		{"response zero", &Response{}},
		{"response", &Response{ID: "w1", Status: 422, Headers: headers, Body: binaryBody(3000)}},
		{"verdict zero", &Verdict{}},
		{"verdict", &Verdict{ID: "w1", Returned: true}},
		{"ping zero", &Ping{}},
		{"ping", &Ping{Nonce: math.MaxUint64}},
		{"pong zero", &Pong{}},
		{"pong", &Pong{Nonce: 42}},
		{"goaway zero", &GoAway{}},
		{"goaway", &GoAway{Reason: "restart", ReconnectAfter: 5 * time.Second}},
		{"error zero", &Error{}},
		{"error", &Error{Code: CodeUnauthorized, Reason: "bad token"}},
	}
}

func TestRoundTripEveryFrame(t *testing.T) {
	seen := map[FrameType]bool{}
	for _, tc := range sampleFrames() {
		t.Run(tc.name, func(t *testing.T) {
			seen[tc.f.Type()] = true
			b := AppendFrame([]byte("prefix"), tc.f)[len("prefix"):]
			if n := binary.BigEndian.Uint32(b); int(n) != len(b)-4 {
				t.Fatalf("length prefix %d, want %d", n, len(b)-4)
			}
			if FrameType(b[4]) != tc.f.Type() {
				t.Fatalf("type byte %d, want %d", b[4], tc.f.Type())
			}
			got, err := DecodeFrame(b[4:])
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.f) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, tc.f)
			}
		})
	}
	for ft := FrameHello; ft <= FrameVerdict; ft++ {
		if !seen[ft] && ft != frameReserved {
			t.Errorf("frame type %d has no sample", ft)
		}
	}
}

func TestDecodedFrameDoesNotAliasInput(t *testing.T) {
	w := &Webhook{ID: "w1", Headers: []Header{{"A", "b"}}, BodyLen: 3, Body: []byte("abc")}
	b := AppendFrame(nil, w)[4:]
	got, err := DecodeFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'X'
	}
	if !reflect.DeepEqual(got, w) {
		t.Fatalf("decoded frame changed with its input: %#v", got)
	}
}

func TestReaderStream(t *testing.T) {
	var stream bytes.Buffer
	big := &Webhook{ID: "big", BodyLen: 200 << 10, Body: binaryBody(200 << 10)} // aliased read
	var want []Frame
	for _, tc := range sampleFrames() {
		want = append(want, tc.f)
	}
	want = append(want, big, &Ping{Nonce: 7})
	for _, f := range want {
		stream.Write(AppendFrame(nil, f))
	}
	rd := NewReader(&stream, 0)
	for i, w := range want {
		got, err := rd.ReadFrame()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("frame %d:\n got %#v\nwant %#v", i, got, w)
		}
	}
	if _, err := rd.ReadFrame(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

// frameReserved is the type number Credit had: a peer of the first release may send it.
const frameReserved FrameType = 8

// creditFrame is a Credit frame as the first release encoded it (type 8, u32 window).
var creditFrame = []byte{0, 0, 0, 5, byte(frameReserved), 0, 0, 0, 3}

func TestReaderSkipsUnknownTypes(t *testing.T) {
	var stream []byte
	stream = append(stream, 0, 0, 0, 4, 200, 1, 2, 3) // a future frame type
	stream = AppendFrame(stream, &Ping{Nonce: 1})
	stream = append(stream, 0, 0, 0, 1, 0) // type 0, no payload
	stream = append(stream, creditFrame...)
	stream = AppendFrame(stream, &Pong{Nonce: 2})
	rd := NewReader(bytes.NewReader(stream), 0)
	for _, want := range []Frame{&Ping{Nonce: 1}, &Pong{Nonce: 2}} {
		got, err := rd.ReadFrame()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("got %#v, %v; want %#v", got, err, want)
		}
	}
	for _, b := range [][]byte{{250, 9, 9}, creditFrame[4:]} {
		if f, err := DecodeFrame(b); f != nil || err != nil {
			t.Fatalf("DecodeFrame of unknown type %d: %v, %v; want nil, nil", b[0], f, err)
		}
	}
}

// TestReaderRejectsHugeLengthWithoutAllocating feeds a length of 4 GiB-1 to a Reader limited to
// 1 MiB: it must fail with ErrFrameTooLarge having allocated nothing near that size.
func TestReaderRejectsHugeLengthWithoutAllocating(t *testing.T) {
	for _, n := range []uint32{math.MaxUint32, DefaultMaxFrame + 1} {
		src := io.MultiReader(bytes.NewReader(binary.BigEndian.AppendUint32(nil, n)),
			strings.NewReader(strings.Repeat("x", 64)))
		rd := NewReader(src, DefaultMaxFrame)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := rd.ReadFrame()
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("length %d: %v, want ErrFrameTooLarge", n, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 256<<10 {
			t.Fatalf("length %d: allocated %d bytes before rejecting", n, grew)
		}
		if _, err2 := rd.ReadFrame(); !errors.Is(err2, ErrFrameTooLarge) {
			t.Fatalf("second read after a bad length: %v, want the same error", err2)
		}
	}
}

func TestReaderTruncatedStream(t *testing.T) {
	full := AppendFrame(nil, &Nack{ID: "w1", Reason: "full"})
	for cut := 1; cut < len(full); cut++ {
		_, err := NewReader(bytes.NewReader(full[:cut]), 0).ReadFrame()
		if err == nil || err == io.EOF {
			t.Fatalf("cut at %d: %v, want an unexpected-EOF error", cut, err)
		}
	}
	var zero []byte
	zero = append(zero, 0, 0, 0, 0)
	if _, err := NewReader(bytes.NewReader(zero), 0).ReadFrame(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("zero length: %v, want ErrMalformed", err)
	}
}

func TestDecodeMalformed(t *testing.T) {
	// Every strict prefix of every sample lacks a field, except a frame cut right before the
	// fields appended in version 2: a Welcome's version (a version-1 Welcome:
	// TestWelcomeOfVersion1), a Hello's expose list and group, a Report's response.
	for _, tc := range sampleFrames() {
		b := AppendFrame(nil, tc.f)[4:]
		legacy, legacy2 := -1, -1
		switch f := tc.f.(type) {
		case *Welcome:
			legacy = len(b) - 2
		case *Hello:
			legacy2 = len(b) - len(appendStr(nil, f.Group))
			legacy = legacy2 - len(appendStrs(nil, f.Expose))
		case *Report:
			legacy = len(b) - len(appendBytes(appendHeaders(nil, f.Headers), f.Body))
		}
		for cut := 0; cut < len(b); cut++ {
			if cut == legacy || cut == legacy2 {
				if _, err := DecodeFrame(b[:cut]); err != nil {
					t.Fatalf("%s without its appended fields: %v", tc.name, err)
				}
				continue
			}
			f, err := DecodeFrame(b[:cut])
			if !errors.Is(err, ErrMalformed) || f != nil {
				t.Fatalf("%s cut at %d of %d: %v, %v; want ErrMalformed", tc.name, cut, len(b), f, err)
			}
		}
	}
	u64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	cases := map[string][]byte{
		"ack count past end":   {byte(FrameAck), 0xff, 0xff, 0xff, 0x0f, 1, 'a'},
		"varint overflow":      append([]byte{byte(FrameAck)}, bytes.Repeat([]byte{0xff}, 11)...),
		"string past end":      {byte(FrameNack), 5, 'a', 'b'},
		"chunk offset too big": append(append([]byte{byte(FrameChunk), 0}, u64(1<<63)...), 0),
		"body part over body length": func() []byte {
			return AppendFrame(nil, &Webhook{ID: "w", BodyLen: 2, Body: []byte("abc")})[4:]
		}(),
		"headers count past end": func() []byte {
			b := AppendFrame(nil, &Webhook{ID: "w"})[4:]
			i := 1 + 2 + 1 + 8 + 1 + 3 // type, id, endpoint, time, flags, method/path/query
			if b[i] != 0 {
				panic("headers count not where expected")
			}
			b[i] = 0x7f
			return b
		}(),
	}
	for name, b := range cases {
		if f, err := DecodeFrame(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, %v; want ErrMalformed", name, f, err)
		}
	}
}

// FuzzDecode feeds arbitrary bytes to DecodeFrame and to a Reader: neither may panic, and a
// frame that decodes must encode back to something that decodes to the same frame.
func FuzzDecode(f *testing.F) {
	for _, tc := range sampleFrames() {
		f.Add(AppendFrame(nil, tc.f)[4:])
	}
	f.Add([]byte{})
	f.Add([]byte{byte(FrameAck), 0xff, 0xff, 0xff, 0xff, 0x0f})
	// Large counts: past the bytes left, past MaxHelloList, and at it.
	f.Add([]byte{byte(FrameHello), 0, Version, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(helloWithEmptyNames(MaxHelloList + 1))
	f.Add(helloWithEmptyNames(MaxHelloList))
	f.Add([]byte{byte(FrameRecorded), 0x80, 0x80, 0x04, 0, 0, 0})
	f.Add([]byte{byte(FrameWebhook), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x7f})
	f.Add(creditFrame[4:])                                                         // the reserved type: skipped
	f.Add(append(slices.Clone(creditFrame), AppendFrame(nil, &Ping{Nonce: 1})...)) // for the Reader
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeFrame(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not wrapping ErrMalformed: %v", err)
			}
		} else if fr != nil {
			again, err := DecodeFrame(AppendFrame(nil, fr)[4:])
			if err != nil {
				t.Fatalf("re-decode: %v", err)
			}
			if !reflect.DeepEqual(fr, again) {
				t.Fatalf("unstable round trip:\n%#v\n%#v", fr, again)
			}
		}
		rd := NewReader(bytes.NewReader(b), 4096)
		for range 100 {
			if _, err := rd.ReadFrame(); err != nil {
				break
			}
		}
	})
}

func BenchmarkDecodeWebhook(b *testing.B) {
	w := &Webhook{ID: "01JDQ0000000000000000000", Endpoint: "github", ReceivedAt: testTime,
		Method: "POST", Path: "/x", Headers: []Header{{"Content-Type", "application/json"},
			{"User-Agent", "GitHub-Hookshot/abc"}, {"X-GitHub-Event", "push"},
			{"X-Hub-Signature-256", "sha256=0123456789abcdef"}}, BodyLen: 1024, Body: binaryBody(1024)}
	enc := AppendFrame(nil, w)[4:]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeFrame(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// A Welcome from a relay of version 1 ends before the appended version: it decodes, with
// Version 0, so an agent can tell it speaks to an old relay.
func TestWelcomeOfVersion1(t *testing.T) {
	b := AppendFrame(nil, &Welcome{SessionID: "s1", Window: 8, ServerTime: testTime, Version: 7})
	v1 := b[4 : len(b)-2] // without the length prefix and the appended u16
	f, err := DecodeFrame(v1)
	if err != nil {
		t.Fatal(err)
	}
	if w := f.(*Welcome); w.SessionID != "s1" || w.Window != 8 || w.Version != 0 {
		t.Fatalf("decoded %+v, want the v1 fields and Version 0", w)
	}
}

package persist

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMetaRoundTrip(t *testing.T) {
	at := time.Unix(0, time.Now().UnixNano())
	full := &Record{
		ID: "X", Queue: "q", ReceivedAt: at, Method: "PATCH", Path: "/a/b%2F", Query: "x=1&x=2",
		Headers: []Header{{"A", "1"}, {"a", ""}, {"Bin", "\x00\xff"}}, Replay: true,
		State: StateDead, Attempts: 7, NextAttempt: at.Add(time.Second),
		Deliveries: []Delivery{{At: at, Status: 500, Millis: 3, Error: "e"}, {At: at, Status: 0, Millis: -1}},
		Reported:   true, DeadReason: "max attempts", Size: 123, FinishedAt: at.Add(time.Minute),
		Holder: "edge-1",
	}
	for _, r := range []*Record{full, {ID: "Y", Queue: "q", State: StateReady}} {
		v := encodeMeta(r, 1<<20)
		got, bodyLen, err := decodeMeta(r.ID, v)
		if err != nil || bodyLen != 1<<20 {
			t.Fatalf("decode: %v, body %d", err, bodyLen)
		}
		want := *r
		want.BodyLen = 1 << 20 // decoded from the metadata, as encodeMeta was told
		if !reflect.DeepEqual(got, &want) {
			t.Fatalf("round trip\n%+v\nwant\n%+v", got, &want)
		}
		sum, _, err := decodeSummary(v)
		if err != nil || sum != summaryOf(r) {
			t.Fatalf("summary %+v %v, want %+v", sum, err, summaryOf(r))
		}
		// Every truncation fails cleanly, except one right before the appended holder: a
		// record written before holder existed, which decodes with none.
		old := len(v) - 1 - len(r.Holder)
		for n := range len(v) {
			got, _, err := decodeMeta(r.ID, v[:n])
			if n == old {
				if err != nil || got.Holder != "" {
					t.Fatalf("a record without holder: %v, holder %q", err, got.Holder)
				}
				continue
			}
			if err == nil {
				t.Fatalf("decoded %d of %d bytes without error", n, len(v))
			}
		}
	}
}

func TestKeys(t *testing.T) {
	if id := bodyKeyID(bodyKey("01ABC", 70000)); id != "01ABC" {
		t.Fatalf("body key id %q", id)
	}
	for _, k := range []string{"", "b", "m01ABC", "b01ABC"} {
		if id := bodyKeyID([]byte(k)); id != "" {
			t.Fatalf("bodyKeyID(%q) = %q", k, id)
		}
	}
	if segments(0) != 0 || segments(1) != 1 || segments(segSize) != 1 || segments(segSize+1) != 2 {
		t.Fatal("segments")
	}
}

// FuzzDecodeMeta: metadata read from disk never panics the decoder, whatever the bytes.
func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta(&Record{Queue: "q", State: StateReady}, 0))
	f.Add(encodeMeta(&Record{Queue: "q", State: StateDead, Headers: []Header{{"a", "b"}},
		Deliveries: []Delivery{{Status: 1}}, DeadReason: "x"}, 10))
	f.Add([]byte{metaVersion, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, v []byte) {
		r, n, err := decodeMeta("id", v)
		if err == nil && (r == nil || n < 0) {
			t.Fatal("nil record without error")
		}
		if err == nil {
			// What decodes must encode back to the same record.
			again, n2, err := decodeMeta("id", encodeMeta(r, n))
			if err != nil || n2 != n || !reflect.DeepEqual(again, r) {
				t.Fatalf("re-encode: %v", err)
			}
		}
	})
}

// A delivery's recorded response (appended after parts) survives a round trip, on a record
// with and without staged parts; the same record without responses encodes as before.
func TestMetaResponsesRoundTrip(t *testing.T) {
	at := time.Unix(0, time.Now().UnixNano())
	for _, parts := range []string{"", "p1"} {
		r := &Record{ID: "X", Queue: "q", State: StateDead, parts: parts,
			Deliveries: []Delivery{
				{At: at, Status: 503, Error: "e"},
				{At: at, Status: 409, ResponseHeaders: []Header{{"X-Why", "conflict"}, {"A", ""}},
					ResponseBody: []byte("{\"error\":\"no\"}")},
			}}
		got, _, err := decodeMeta(r.ID, encodeMeta(r, 0))
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("parts %q: round trip %v\n%+v\nwant\n%+v", parts, err, got, r)
		}
		plain := *r
		plain.Deliveries = []Delivery{r.Deliveries[0]}
		if v := encodeMeta(&plain, 0); parts == "" && v[len(v)-1] != 0 { // ends with the empty holder
			t.Fatalf("a record without responses got a responses section")
		}
	}
}

// BenchmarkDecodeMeta: reading back a typical record's metadata (what a cold lease, an ack's
// check and an outcome read do).
func BenchmarkDecodeMeta(b *testing.B) {
	r := &Record{ID: "01J0000000000000000000000", Queue: "github", State: StateReady, Method: "POST",
		Path: "/hooks/github", Query: "a=1",
		Headers: []Header{{"Content-Type", "application/json"}, {"User-Agent", "GitHub-Hookshot/abc"},
			{"X-Github-Event", "push"}, {"X-Github-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
			{"X-Hub-Signature-256", "sha256=" + strings.Repeat("a", 64)}, {"Content-Length", "1024"}},
		Deliveries: []Delivery{{At: time.Now(), Status: 503, Millis: 3, Error: "status 503"}}}
	v := encodeMeta(r, 1024)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := decodeMeta(r.ID, v); err != nil {
			b.Fatal(err)
		}
	}
}

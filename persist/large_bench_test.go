package persist

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkLargeBody measures storing one 10 MiB body durably, written in 64 KiB pieces as
// a tunnel or an ingress hands it over: through a BodyWriter and AppendBody (agent profile),
// against a baseline of the same bytes appended to a plain file and fdatasynced once.
//
//	go test -bench=LargeBody -run='^$' -benchtime=20x ./persist
func BenchmarkLargeBody(b *testing.B) {
	body := make([]byte, 10<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	const piece = 64 << 10
	b.Run("store", func(b *testing.B) {
		s := openT(b, "", nil)
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			w, err := s.NewBody()
			if err != nil {
				b.Fatal(err)
			}
			for off := 0; off < len(body); off += piece {
				if _, err := w.Write(body[off : off+piece]); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.AppendBody(context.Background(), &Record{Queue: "q", Method: "POST"}, w); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline-file", func(b *testing.B) {
		dir := b.TempDir()
		b.SetBytes(int64(len(body)))
		n := 0
		for b.Loop() {
			n++
			f, err := os.Create(filepath.Join(dir, "body"+string(rune('a'+n%26))))
			if err != nil {
				b.Fatal(err)
			}
			for off := 0; off < len(body); off += piece {
				if _, err := f.Write(body[off : off+piece]); err != nil {
					b.Fatal(err)
				}
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}

package persist

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// testLogger discards info and below so Badger's warnings still show.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// openT opens a store in dir (a new temp dir when ""), closed at cleanup.
func openT(t testing.TB, dir string, mod func(*Options)) *Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	o := Options{Dir: dir, Small: true, Logger: testLogger(t), MinFree: -1}
	if mod != nil {
		mod(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rec(queue string, body string) *Record {
	return &Record{
		Queue: queue, Method: "POST", Path: "/x", Query: "a=1",
		Headers: []Header{{"Content-Type", "application/json"}, {"X-Dup", "1"}, {"X-Dup", "2"}},
		Body:    []byte(body),
	}
}

func appendT(t testing.TB, s *Store, r *Record) *Record {
	t.Helper()
	if err := s.Append(context.Background(), r); err != nil {
		t.Fatalf("append: %v", err)
	}
	return r
}

// diskUsage is the space the files under dir take on disk (allocated blocks, as du counts:
// Badger preallocates sparse files, so their length says little).
func diskUsage(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n += allocated(fi)
		return nil
	})
	if err != nil {
		t.Fatalf("disk usage: %v", err)
	}
	return n
}

func listDir(t testing.TB, dir string) string {
	ents, _ := os.ReadDir(dir)
	s := ""
	for _, e := range ents {
		fi, _ := e.Info()
		s += fmt.Sprintf("%s len=%d disk=%d\n", e.Name(), fi.Size(), allocated(fi))
	}
	return s
}

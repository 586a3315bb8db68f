package relay_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/relay"
)

// testdata/prev-store.tar.gz holds two data_dirs written by the relay of commit bc63c79 (the
// release before the Queue interface): "stopped" ended with SIGTERM, "killed" with kill -9
// (its webhooks are only in Badger's write-ahead log). Both got the same four webhooks. Made
// with that commit's binary (git worktree add /tmp/prev bc63c79; go build -o
// /tmp/hookrelay-prev ./cmd/hookrelay) and, for DIR in stopped (kill -TERM) and killed
// (kill -KILL):
//
//	relay.yaml: addr: 127.0.0.1:18931, data_dir: out/DIR, endpoints: [{name: fixture, tokens: ["sha256:9f86…0a08"]}]
//	hookrelay-prev serve --config relay.yaml &
//	python3 -c "import sys; sys.stdout.buffer.write(bytes(range(256))*3)" > bin.dat
//	curl -X POST -H 'Content-Type: application/octet-stream' -H 'User-Agent: fixture' --data-binary @bin.dat http://127.0.0.1:18931/h/fixture
//	curl -X POST -H 'User-Agent: fixture' -H 'X-Multi: a' -H 'X-Multi: b' -H 'X-Multi: c, d' -H 'Content-Type: application/json' --data-binary '{"n":2}' http://127.0.0.1:18931/h/fixture
//	curl -X PUT -H 'User-Agent: fixture' -H 'Content-Type: text/plain' --data-binary 'path and query' 'http://127.0.0.1:18931/h/fixture/a/b%2Fc/d?x=1&x=2&y=%20z'
//	curl -X GET -H 'User-Agent: fixture' http://127.0.0.1:18931/h/fixture/empty
//	kill -TERM|-KILL $!; rm -f out/killed/LOCK
//	tar --sparse --owner=0 --group=0 --numeric-owner -czf prev-store.tar.gz -C out stopped killed
//
// Badger's value log and memtable files are sparse (128 MiB each, a few KiB used): tar
// --sparse keeps the archive at 2 KiB, and unpack skips the holes.
func TestOpensPreviousReleaseStore(t *testing.T) {
	root := t.TempDir()
	unpack(t, filepath.Join("testdata", "prev-store.tar.gz"), root)
	binBody := bytes.Repeat(func() []byte {
		b := make([]byte, 256)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}(), 3)
	type want struct {
		method, path, query string
		headers             []persist.Header
		body                []byte
	}
	ua := persist.Header{Name: "User-Agent", Value: "fixture"}
	wants := []want{
		{"POST", "", "", []persist.Header{{Name: "Accept", Value: "*/*"}, {Name: "Content-Length", Value: "768"},
			{Name: "Content-Type", Value: "application/octet-stream"}, ua}, binBody},
		{"POST", "", "", []persist.Header{{Name: "Accept", Value: "*/*"}, {Name: "Content-Length", Value: "7"},
			{Name: "Content-Type", Value: "application/json"}, ua,
			{Name: "X-Multi", Value: "a"}, {Name: "X-Multi", Value: "b"}, {Name: "X-Multi", Value: "c, d"}}, []byte(`{"n":2}`)},
		{"PUT", "/a/b%2Fc/d", "x=1&x=2&y=%20z", []persist.Header{{Name: "Accept", Value: "*/*"}, {Name: "Content-Length", Value: "14"},
			{Name: "Content-Type", Value: "text/plain"}, ua}, []byte("path and query")},
		{"GET", "/empty", "", []persist.Header{{Name: "Accept", Value: "*/*"}, ua}, []byte{}},
	}
	for _, dir := range []string{"stopped", "killed"} {
		t.Run(dir, func(t *testing.T) {
			q, err := relay.OpenBadgerQueue(persist.Options{Dir: filepath.Join(root, dir)})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer q.Close()
			recs, err := q.List(t.Context(), persist.Filter{Limit: 100})
			if err != nil || len(recs) != len(wants) {
				t.Fatalf("list: %d records, %v; want %d", len(recs), err, len(wants))
			}
			slices.Reverse(recs) // oldest first, the order they were sent
			for i, w := range wants {
				r := recs[i]
				if r.Queue != "fixture" || r.Method != w.method || r.Path != w.path || r.Query != w.query ||
					r.State != persist.StateReady || !slices.Equal(r.Headers, w.headers) || r.BodyLen != int64(len(w.body)) {
					t.Fatalf("webhook %d: %+v\nwant %+v", i, r, w)
				}
				rc, err := q.Body(t.Context(), r.ID)
				if err != nil {
					t.Fatalf("body %d: %v", i, err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.Equal(got, w.body) {
					t.Fatalf("body %d: %q %v, want %q", i, got, err, w.body)
				}
			}
			// The store still takes webhooks, after the old ones in id order, and hands them out.
			nr := &persist.Record{Queue: "fixture", Method: "POST", Body: []byte("new")}
			if err := q.Append(t.Context(), nr); err != nil {
				t.Fatalf("append: %v", err)
			}
			leased, err := q.Lease(t.Context(), relay.DefaultGroup, "fixture", 10, 60e9)
			if err != nil || len(leased) != len(wants)+1 || leased[len(wants)].ID != nr.ID {
				t.Fatalf("lease after append: %d records, %v", len(leased), err)
			}
		})
	}
}

// unpack extracts a tar.gz into dir, leaving the all-zero blocks of files as holes.
func unpack(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("read %s: %v", archive, err)
		}
		path := filepath.Join(dir, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o700); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg, tar.TypeGNUSparse: // the reader fills the holes with zeros
			if err := writeSparse(path, tr, h.Size); err != nil {
				t.Fatalf("unpack %s: %v", h.Name, err)
			}
		}
	}
}

func writeSparse(path string, r io.Reader, size int64) error {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	buf := make([]byte, 64<<10)
	zero := make([]byte, len(buf))
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if bytes.Equal(buf[:n], zero[:n]) {
				_, err = out.Seek(int64(n), io.SeekCurrent)
			} else {
				_, err = out.Write(buf[:n])
			}
			if err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := out.Truncate(size); err != nil {
		return err
	}
	return out.Close()
}

package persist

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
)

// recordingHandler keeps the records it is given.
type recordingHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func TestBadgerLoggerWarningsOnly(t *testing.T) {
	h := &recordingHandler{}
	l := badgerLogger{l: slog.New(h)}
	l.Debugf("debug %d", 1)
	l.Infof("info %d\n", 2)
	l.Warningf("warn %d\n", 3)
	l.Errorf("error %d", 4)
	if len(h.recs) != 2 || h.recs[0].Level != slog.LevelWarn || h.recs[0].Message != "warn 3" ||
		h.recs[1].Level != slog.LevelError || h.recs[1].Message != "error 4" {
		t.Fatalf("records: %+v", h.recs)
	}

	// A store's own Badger logs go to its logger: opening one says nothing at warning level.
	h2 := &recordingHandler{}
	s, err := Open(Options{Dir: t.TempDir(), Small: true, Logger: slog.New(h2), MinFree: -1})
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, s.Close())
	for _, r := range h2.recs {
		if r.Level < slog.LevelWarn {
			t.Errorf("badger logged below warning: %s", r.Message)
		}
	}
}

// TestTreeHoldsNoMetadata: a record's metadata, rewritten by each state change, goes to the
// value log, so the LSM tree (whose compactions' table builders were most of the agent's heap
// at its peak) holds keys and pointers only, not the 500 bytes of headers of every record.
func TestTreeHoldsNoMetadata(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, nil)
	const n = 3000
	hdr := strings.Repeat("h", 400)
	var wg sync.WaitGroup
	for p := range 16 {
		wg.Go(func() {
			for i := p; i < n; i += 16 {
				r := rec("q", "body")
				r.Headers = append(r.Headers, Header{"X-Big", hdr})
				if err := s.Append(context.Background(), r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil { // flushes the memtable into a table
		t.Fatal(err)
	}
	var tables int64
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".sst") {
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			tables += fi.Size()
		}
	}
	if perRecord := tables / n; tables == 0 || perRecord > 200 {
		t.Fatalf("the LSM tree holds %d bytes for %d records (%d each): metadata is in it", tables, n, perRecord)
	}
	t.Logf("LSM tree: %d bytes for %d records (%d each; 624 with the metadata in it)", tables, n, tables/n)
}

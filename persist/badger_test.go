package persist

import (
	"context"
	"log/slog"
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

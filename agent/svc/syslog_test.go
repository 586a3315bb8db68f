package svc

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// recordLogger stands in for the Windows Event Log (kardianos' Logger).
type recordLogger struct{ lines []string }

func (r *recordLogger) add(level string, v ...any) error {
	r.lines = append(r.lines, level+" "+fmt.Sprint(v...))
	return nil
}
func (r *recordLogger) Error(v ...any) error   { return r.add("E", v...) }
func (r *recordLogger) Warning(v ...any) error { return r.add("W", v...) }
func (r *recordLogger) Info(v ...any) error    { return r.add("I", v...) }
func (r *recordLogger) Errorf(f string, a ...any) error {
	return r.add("E", fmt.Sprintf(f, a...))
}
func (r *recordLogger) Warningf(f string, a ...any) error {
	return r.add("W", fmt.Sprintf(f, a...))
}
func (r *recordLogger) Infof(f string, a ...any) error { return r.add("I", fmt.Sprintf(f, a...)) }

func TestSysLogHandler(t *testing.T) {
	rec := &recordLogger{}
	log := slog.New(newSysLogHandler(rec)).With("agent_id", "edge-1")
	log.Debug("hidden")
	log.Info("connected", "transport", "quic")
	log.Warn("retrying")
	log.WithGroup("route").Error("dead", "endpoint", "github")
	want := []struct{ level, part string }{
		{"I", "msg=connected agent_id=edge-1 transport=quic"},
		{"W", "msg=retrying agent_id=edge-1"},
		{"E", "msg=dead agent_id=edge-1 route.endpoint=github"},
	}
	if len(rec.lines) != len(want) {
		t.Fatalf("got %d entries %q, want %d", len(rec.lines), rec.lines, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(rec.lines[i], w.level+" ") || !strings.Contains(rec.lines[i], w.part) || strings.Contains(rec.lines[i], "\n") {
			t.Errorf("entry %d = %q, want level %s with %q on one line", i, rec.lines[i], w.level, w.part)
		}
	}
}

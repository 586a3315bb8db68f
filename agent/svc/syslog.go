package svc

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/kardianos/service"
)

// useSystemLog points slog.Default() at the service manager's log (the
// Windows Event Log), for services that have no stderr.
func useSystemLog(s service.Service) error {
	l, err := s.SystemLogger(nil)
	if err != nil {
		return fmt.Errorf("open system log: %w", err)
	}
	slog.SetDefault(slog.New(newSysLogHandler(l)))
	return nil
}

// sysLogHandler formats records as slog text and writes each as one entry of
// a kardianos service.Logger, at the matching severity.
type sysLogHandler struct {
	out  service.Logger
	text slog.Handler // writes into *buf
	mu   *sync.Mutex  // guards buf, shared by handlers derived with With*
	buf  *bytes.Buffer
}

func newSysLogHandler(out service.Logger) *sysLogHandler {
	buf := &bytes.Buffer{}
	return &sysLogHandler{
		out:  out,
		text: slog.NewTextHandler(buf, nil),
		mu:   &sync.Mutex{},
		buf:  buf,
	}
}

func (h *sysLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.text.Enabled(ctx, l)
}

func (h *sysLogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	if err := h.text.Handle(ctx, r); err != nil {
		return err
	}
	line := string(bytes.TrimRight(h.buf.Bytes(), "\n"))
	switch {
	case r.Level >= slog.LevelError:
		return h.out.Error(line)
	case r.Level >= slog.LevelWarn:
		return h.out.Warning(line)
	default:
		return h.out.Info(line)
	}
}

func (h *sysLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.text = h.text.WithAttrs(attrs)
	return &c
}

func (h *sysLogHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.text = h.text.WithGroup(name)
	return &c
}

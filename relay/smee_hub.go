package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/persist"
)

const (
	// smeeInlineMax is the largest body handed to streams with its record; larger ones are
	// read from the store by each stream, so that a slow stream never holds big bodies.
	smeeInlineMax = 64 << 10
	// smeeSubBuffer is how many records a stream may fall behind before it reads the rest
	// from the store instead.
	smeeSubBuffer = 256
	smeeMarksFile = "smee-marks.json"
)

// smeeHub hands each webhook an endpoint stores to the smee streams attached to it, and
// remembers per endpoint where its last stream ended (in data_dir, so that a relay restart
// keeps it): a client that reconnects without Last-Event-ID (a restarted smee-client or
// gosmee) first gets what arrived since then.
type smeeHub struct {
	path    string // marks file
	log     *slog.Logger
	closing chan struct{} // closed at shutdown: every stream ends
	once    sync.Once

	mu    sync.Mutex
	subs  map[string]map[*smeeSub]struct{} // by endpoint
	marks map[string]string                // endpoint → the last id its last stream sent (or its cursor)
}

// smeeSub is one attached stream's inbox.
type smeeSub struct {
	endpoint string
	ch       chan *persist.Record
	lag      chan struct{} // signalled when ch was full and a record was left out
}

func newSmeeHub(dataDir string, log *slog.Logger) *smeeHub {
	h := &smeeHub{
		path:    filepath.Join(dataDir, smeeMarksFile),
		log:     log,
		closing: make(chan struct{}),
		subs:    map[string]map[*smeeSub]struct{}{},
		marks:   map[string]string{},
	}
	data, err := os.ReadFile(h.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		log.Warn("smee stream marks unreadable: streams without Last-Event-ID start from keep_done", "err", err)
	default:
		if err := json.Unmarshal(data, &h.marks); err != nil {
			log.Warn("smee stream marks unreadable: streams without Last-Event-ID start from keep_done", "err", err)
			h.marks = map[string]string{}
		}
	}
	return h
}

// subscribe attaches a stream to endpoint; the caller detaches it with leave.
func (h *smeeHub) subscribe(endpoint string) *smeeSub {
	sub := &smeeSub{endpoint: endpoint, ch: make(chan *persist.Record, smeeSubBuffer), lag: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs[endpoint] == nil {
		h.subs[endpoint] = map[*smeeSub]struct{}{}
	}
	h.subs[endpoint][sub] = struct{}{}
	return sub
}

// leave detaches sub and records cursor (the last id it sent) as where the endpoint's last
// stream ended.
func (h *smeeHub) leave(sub *smeeSub, cursor string) {
	h.mu.Lock()
	delete(h.subs[sub.endpoint], sub)
	if len(h.subs[sub.endpoint]) == 0 {
		delete(h.subs, sub.endpoint)
	}
	h.marks[sub.endpoint] = cursor
	data, err := json.Marshal(h.marks)
	h.mu.Unlock()
	if err == nil {
		err = writeFileAtomic(h.path, data)
	}
	if err != nil {
		h.log.Warn("smee stream mark not saved: after a restart, streams without Last-Event-ID may repeat webhooks", "err", err)
	}
}

// attached reports how many streams endpoint has.
func (h *smeeHub) attached(endpoint string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs[endpoint])
}

// publish hands rec (just stored) to endpoint's streams without ever blocking ingress: a
// stream whose inbox is full is told to read from the store.
func (h *smeeHub) publish(endpoint string, rec *persist.Record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs[endpoint]) == 0 {
		return
	}
	c := *rec
	if len(c.Body) > smeeInlineMax {
		c.Body = nil // read from the store by each stream
	}
	for sub := range h.subs[endpoint] {
		select {
		case sub.ch <- &c:
		default:
			select {
			case sub.lag <- struct{}{}:
			default:
			}
		}
	}
}

// startCursor is where a new stream of endpoint starts: after lastEventID when it is a
// webhook id, else after the endpoint's last stream, and never before keep_done ago.
func (h *smeeHub) startCursor(endpoint, lastEventID string, floor time.Time) string {
	low := floorID(floor)
	if u, err := ulid.ParseStrict(lastEventID); err == nil {
		return max(u.String(), low)
	}
	h.mu.Lock()
	mark := h.marks[endpoint]
	h.mu.Unlock()
	return max(mark, low)
}

// shutdown ends every stream. Idempotent.
func (h *smeeHub) shutdown() { h.once.Do(func() { close(h.closing) }) }

// floorID is the smallest id a webhook received at t can have, so that "after floorID(t)"
// means "received at t or later".
func floorID(t time.Time) string {
	var u ulid.ULID
	if err := u.SetTime(ulid.Timestamp(t)); err != nil {
		return ""
	}
	return u.String()
}

// writeFileAtomic replaces path with data: a crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// idTime is the time in a webhook id (a ULID).
func idTime(id string) (time.Time, bool) {
	u, err := ulid.ParseStrict(id)
	if err != nil {
		return time.Time{}, false
	}
	return ulid.Time(u.Time()), true
}

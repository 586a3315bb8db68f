package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/hookrelay/hookrelay/protocol"
)

// storeCopies stores w once per route of its endpoint (ds, routes.go) and returns how many
// copies it stored and how many were stored before (persist.ErrExists); err is the first other
// failure. The copies are appended at once, so they share a group commit, and the caller acks
// only after all of them are durable: after a crash between two commits the relay offers w
// again and the copies missing are added then. A streamed body goes into the first copy
// from the tunnel and from there, a part at a time, into the others (a body in parts cannot
// be shared: each copy's retention deletes its own).
func (s *session) storeCopies(w *protocol.Webhook, ds []*deliverer) (stored, existed int, err error) {
	st := s.env.store
	headers := make([]persist.Header, len(w.Headers))
	for i, h := range w.Headers {
		headers[i] = persist.Header(h)
	}
	b := s.takeBody(w)
	if b == nil && len(ds) == 1 { // the common case, without the slices below
		return tally(st.Append(context.Background(), copyRecord(w, ds[0], headers)))
	}
	recs := make([]*persist.Record, len(ds))
	for i, d := range ds {
		recs[i] = copyRecord(w, d, headers)
	}
	errs := make([]error, len(recs))
	switch {
	case b == nil:
		var wg sync.WaitGroup
		for i, r := range recs {
			wg.Go(func() { errs[i] = st.Append(context.Background(), r) })
		}
		wg.Wait()
	case b.err != nil:
		return 0, 0, fmt.Errorf("stage body: %w", b.err)
	default:
		errs[0] = st.AppendBody(context.Background(), recs[0], b.bw)
		if errs[0] != nil && !errors.Is(errs[0], persist.ErrExists) {
			return 0, 0, errs[0]
		}
		for i := 1; i < len(recs); i++ {
			errs[i] = s.copyBody(recs[0].ID, recs[i])
		}
	}
	return tally(errs...)
}

// copyRecord is the record of w's copy for the route of d.
func copyRecord(w *protocol.Webhook, d *deliverer, headers []persist.Header) *persist.Record {
	return &persist.Record{
		ID:         d.r.copyID(w.ID),
		Queue:      d.r.queue,
		ReceivedAt: w.ReceivedAt,
		Method:     w.Method,
		Path:       w.Path,
		Query:      w.Query,
		Headers:    headers,
		Body:       w.Body,
		Replay:     w.Replay,
	}
}

// tally counts the copies stored and those stored before (persist.ErrExists) from their
// appends' errors; err is the first other failure.
func tally(errs ...error) (stored, existed int, err error) {
	for _, e := range errs {
		switch {
		case e == nil:
			stored++
		case errors.Is(e, persist.ErrExists):
			existed++
		case err == nil:
			err = e
		}
	}
	return stored, existed, err
}

// copyBody appends rec with the body of the stored record src, read a part at a time.
func (s *session) copyBody(src string, rec *persist.Record) error {
	st := s.env.store
	if has, err := st.Has(rec.ID); err != nil || has {
		if has {
			return fmt.Errorf("copy %s: %w", rec.ID, persist.ErrExists)
		}
		return err
	}
	rc, err := st.Body(src)
	if err != nil {
		return fmt.Errorf("read body to copy: %w", err)
	}
	defer rc.Close()
	bw, err := st.NewBody()
	if err != nil {
		return fmt.Errorf("stage body copy: %w", err)
	}
	if _, err := io.Copy(bw, rc); err != nil {
		bw.Abort()
		return fmt.Errorf("copy body: %w", err)
	}
	return st.AppendBody(context.Background(), rec, bw)
}

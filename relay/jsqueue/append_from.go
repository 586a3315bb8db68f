package jsqueue

import (
	"context"
	"fmt"
	"io"

	"github.com/hookrelay/hookrelay/persist"
)

// AppendFrom is Append with the body read from body. The body is read whole before it is
// published (in parts of the max payload, as Append does): the caller bounds it (max_body).
// Streaming it part by part as it arrives is left for later; the Badger store does so.
func (q *Queue) AppendFrom(ctx context.Context, r *persist.Record, body io.Reader) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return fmt.Errorf("append: read body: %w", err)
	}
	r.Body = b
	return q.Append(ctx, r)
}

package jsqueue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Standard Webhooks message ids are remembered cluster-wide in a third bucket,
// <Name>_MSGIDS: key m.<sha256(endpoint, 0, message id)>, value the hookrelay id of the
// first copy, each key with the replay window as its own TTL (so the bucket needs no sweep).
// The key is created only if absent, which is what makes one copy the first across relays.

// openMsgIDs opens (or creates) the message id bucket; per-key TTLs need LimitMarkerTTL.
func (q *Queue) openMsgIDs(ctx context.Context) error {
	cfg := jetstream.KeyValueConfig{
		Bucket: q.opts.Name + "_MSGIDS", History: 1, Storage: jetstream.FileStorage, Replicas: q.opts.Replicas,
		LimitMarkerTTL: time.Minute,
	}
	kv, err := q.js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = q.js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) { // another relay created it meanwhile
			kv, err = q.js.KeyValue(ctx, cfg.Bucket)
		}
	}
	q.msgIDs = kv
	return err
}

func msgIDKey(endpoint, msgID string) string {
	h := sha256.New()
	h.Write([]byte(endpoint))
	h.Write([]byte{0})
	h.Write([]byte(msgID))
	return "m." + hex.EncodeToString(h.Sum(nil))
}

// MessageID returns the id of the webhook some relay of the cluster accepted for endpoint's
// sender message id msgID inside its replay window, or "" when none is known. A read may be
// served by a replica that is behind: "" is a hint, RememberMessageID decides.
func (q *Queue) MessageID(ctx context.Context, endpoint, msgID string) (string, error) {
	if err := q.check(); err != nil {
		return "", fmt.Errorf("message id: %w", err)
	}
	e, err := q.msgIDs.Get(ctx, msgIDKey(endpoint, msgID))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("message id: %w", err)
	}
	return string(e.Value()), nil
}

// RememberMessageID records id, just appended, as the first copy of endpoint's msgID for
// window, unless another relay recorded one first: then it returns that one's id, and the
// caller deletes its own copy and answers with the first.
func (q *Queue) RememberMessageID(ctx context.Context, endpoint, msgID, id string, window time.Duration) (string, error) {
	if err := q.check(); err != nil {
		return "", fmt.Errorf("remember message id: %w", err)
	}
	key := msgIDKey(endpoint, msgID)
	// A per-key TTL under a second is refused; a window that short remembers nothing anyway.
	_, err := q.msgIDs.Create(ctx, key, []byte(id), jetstream.KeyTTL(max(window, time.Second)))
	if !errors.Is(err, jetstream.ErrKeyExists) {
		if err != nil {
			return "", fmt.Errorf("remember message id: %w", err)
		}
		return id, nil
	}
	// The key exists; a read served by a replica that is behind may not show it yet: ask
	// again for a while rather than store the message twice.
	var e jetstream.KeyValueEntry
	err = retryNotFound(ctx, func() error {
		e, err = q.msgIDs.Get(ctx, key)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("remember message id: read the first: %w", err)
	}
	return string(e.Value()), nil
}

// retryNotFound calls get until it finds the key, for up to two seconds (bounded by ctx).
func retryNotFound(ctx context.Context, get func() error) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := get()
		if !errors.Is(err, jetstream.ErrKeyNotFound) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ForgetMessageID drops endpoint's msgID when it still names id: that webhook's answer went
// back to its sender (sync), who owns the retries, so a resend is stored anew on any relay.
func (q *Queue) ForgetMessageID(ctx context.Context, endpoint, msgID, id string) error {
	if err := q.check(); err != nil {
		return fmt.Errorf("forget message id: %w", err)
	}
	key := msgIDKey(endpoint, msgID)
	e, err := q.msgIDs.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("forget message id: %w", err)
	}
	if string(e.Value()) != id {
		return nil
	}
	if err := q.msgIDs.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil &&
		!errors.Is(err, jetstream.ErrKeyExists) { // changed meanwhile: not ours any more
		return fmt.Errorf("forget message id: %w", err)
	}
	return nil
}

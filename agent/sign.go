package agent

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/persist"
)

// Sign is a route's `sign:`: hookrelay signs what it delivers, so the target verifies
// hookrelay alone, whatever scheme the sender used.
type Sign struct {
	StandardWebhooks *StandardWebhooksSign `yaml:"standard_webhooks"`
}

// StandardWebhooksSign signs each attempt per the Standard Webhooks specification:
// webhook-id is hookrelay's id, webhook-timestamp the attempt's time, webhook-signature
// "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)).
type StandardWebhooksSign struct {
	// Secret is "whsec_" + base64 of the key (24 to 64 bytes, as the specification asks);
	// the prefix may be left out.
	Secret string `yaml:"secret"`

	key []byte // decoded Secret, set by validate
}

// Standard Webhooks header names (canonical), and where a sender's own ones move.
const (
	swID        = "Webhook-Id"
	swTimestamp = "Webhook-Timestamp"
	swSignature = "Webhook-Signature"
	swOriginal  = "Hookrelay-Original-"
)

func (s *Sign) validate() error {
	if s.StandardWebhooks == nil {
		return fmt.Errorf("sign: no scheme (standard_webhooks: {secret: whsec_…})")
	}
	sw := s.StandardWebhooks
	if sw.Secret == "" {
		return fmt.Errorf("sign.standard_webhooks.secret: missing (whsec_ + base64 of 24 to 64 random bytes; or secret_file / secret_env)")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(strings.TrimSpace(sw.Secret), "whsec_"))
	if err != nil {
		return fmt.Errorf("sign.standard_webhooks.secret: not whsec_ + base64: %w", err)
	}
	if len(key) < 24 || len(key) > 64 {
		return fmt.Errorf("sign.standard_webhooks.secret: key is %d bytes (24 to 64, as the Standard Webhooks specification asks)", len(key))
	}
	sw.key = key
	return nil
}

// apply moves the sender's webhook-* headers to hookrelay-original-webhook-* and signs the
// attempt over body (read to its end: a large body streamed from the store is hashed as it
// is read, never whole in memory): id is hookrelay's id, at the attempt's time.
func (sw *StandardWebhooksSign) apply(h http.Header, id string, at time.Time, body io.Reader) error {
	for _, k := range []string{swID, swTimestamp, swSignature} {
		if v, ok := h[k]; ok && !(k == swID && len(v) == 1 && v[0] == id) { // not the default we set
			h[swOriginal+k] = v
		}
		delete(h, k)
	}
	ts := strconv.FormatInt(at.Unix(), 10)
	sig, err := standardSignature(sw.key, id, ts, body)
	if err != nil {
		return fmt.Errorf("sign: read body: %w", err)
	}
	h[swID] = []string{id}
	h[swTimestamp] = []string{ts}
	h[swSignature] = []string{"v1," + sig}
	return nil
}

// standardSignature is base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)).
func standardSignature(key []byte, id, ts string, body io.Reader) (string, error) {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	if _, err := io.Copy(mac, body); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// sign signs an attempt of rec on its route, reading a body the lease left out (a large
// one) from the store.
func (d *deliverer) sign(h http.Header, rec *persist.Record) error {
	var body io.Reader = bytes.NewReader(rec.Body)
	if rec.Body == nil && rec.BodyLen > 0 {
		rc, err := d.a.store.Body(rec.ID)
		if err != nil {
			return fmt.Errorf("sign: read body: %w", err)
		}
		defer rc.Close()
		body = rc
	}
	return d.r.Sign.StandardWebhooks.apply(h, webhookID(rec.ID), time.Now(), body)
}

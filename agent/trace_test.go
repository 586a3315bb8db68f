package agent

import (
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/hookrelay/hookrelay/internal/testutil"
	"github.com/hookrelay/hookrelay/internal/tracing"
	"github.com/hookrelay/hookrelay/relay"
)

// otlpReceiver is an OTLP/HTTP trace endpoint that decodes what it receives.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
	svc   map[string]string // span id (hex) → service.name
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	rc := &otlpReceiver{svc: map[string]string{}}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("OTLP export to %s as %q", r.URL.Path, r.Header.Get("Content-Type"))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Error(err)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			t.Errorf("OTLP body does not decode: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		for _, rs := range req.ResourceSpans {
			svc := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					svc = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					rc.spans = append(rc.spans, sp)
					rc.svc[hex.EncodeToString(sp.SpanId)] = svc
				}
			}
		}
		rc.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Write(out)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// spanOf returns the span named name whose hookrelay.id is id.
func (rc *otlpReceiver) spanOf(name, id string) *tracepb.Span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, sp := range rc.spans {
		if sp.Name != name {
			continue
		}
		for _, a := range sp.Attributes {
			if a.Key == tracing.AttrID && a.GetValue().GetStringValue() == id {
				return sp
			}
		}
	}
	return nil
}

// TestTraces: with otel on both sides, the relay exports an ingress span and the agent a span
// per attempt whose parent is it, both naming the webhook; the target gets the sender's
// traceparent unchanged, or where there was none one naming the delivery span.
func TestTraces(t *testing.T) {
	rc := newOTLPReceiver(t)
	s := startRelayWith(t, false, func(c *relay.Config) {
		c.OTel = &tracing.Config{Endpoint: rc.URL, ServiceName: "relay-under-test"}
	})
	tg := newTarget(t, nil)
	autoAgent(t, "ws://"+s.Addr(), "", tg, func(c *Config) {
		c.OTel = &tracing.Config{Endpoint: rc.URL + "/"}
	})
	plain := postWebhook(t, s, "no trace from the sender")
	const senderTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	const senderSpan = "00f067aa0ba902b7"
	senderTP := "00-" + senderTrace + "-" + senderSpan + "-01"
	req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/h/ep/x", strings.NewReader("traced"))
	req.Header.Set("Traceparent", senderTP)
	req.Header.Set(tracing.Header, "00-11111111111111111111111111111111-2222222222222222-01") // forged: dropped
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ ID string }
	err = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if err != nil || out.ID == "" {
		t.Fatalf("ingress: %d %v", resp.StatusCode, err)
	}
	traced := out.ID
	waitDelivered(t, tg, plain, traced)

	var ing, del *tracepb.Span
	for _, c := range []struct {
		id string
		tp func(ing, del *tracepb.Span) string
	}{
		{plain, func(ing, del *tracepb.Span) string {
			return "00-" + hex.EncodeToString(del.TraceId) + "-" + hex.EncodeToString(del.SpanId) + "-01"
		}},
		{traced, func(*tracepb.Span, *tracepb.Span) string { return senderTP }},
	} {
		testutil.CheckFor(t, 15*time.Second, 50*time.Millisecond, func() error {
			ing, del = rc.spanOf("hookrelay.ingress", c.id), rc.spanOf("hookrelay.delivery", c.id)
			if ing == nil || del == nil {
				return fmt.Errorf("%s: ingress span %v, delivery span %v", c.id, ing != nil, del != nil)
			}
			return nil
		})
		if string(del.TraceId) != string(ing.TraceId) || string(del.ParentSpanId) != string(ing.SpanId) {
			t.Errorf("%s: delivery span (trace %x parent %x) is not the ingress span's (trace %x span %x) child",
				c.id, del.TraceId, del.ParentSpanId, ing.TraceId, ing.SpanId)
		}
		if got := tg.requests(c.id)[0].Header.Get("Traceparent"); got != c.tp(ing, del) {
			t.Errorf("%s: target got traceparent %q, want %q", c.id, got, c.tp(ing, del))
		}
		if got := tg.requests(c.id)[0].Header.Get(tracing.Header); got != "" {
			t.Errorf("%s: target got %s %q", c.id, tracing.Header, got)
		}
		rc.mu.Lock()
		isvc, dsvc := rc.svc[hex.EncodeToString(ing.SpanId)], rc.svc[hex.EncodeToString(del.SpanId)]
		rc.mu.Unlock()
		if isvc != "relay-under-test" || dsvc != "hookagent" {
			t.Errorf("services %q and %q, want relay-under-test and hookagent", isvc, dsvc)
		}
	}
	if hex.EncodeToString(ing.TraceId) != senderTrace || hex.EncodeToString(ing.ParentSpanId) != senderSpan {
		t.Errorf("ingress span of the traced webhook: trace %x parent %x, want the sender's %s %s",
			ing.TraceId, ing.ParentSpanId, senderTrace, senderSpan)
	}
}

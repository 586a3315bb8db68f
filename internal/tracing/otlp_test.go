package tracing

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector decodes OTLP/HTTP exports with the OpenTelemetry project's own message types.
type collector struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*collectortrace.ExportTraceServiceRequest
	hdr  []http.Header
	path []string
}

func newCollector(t *testing.T, answer func(n int) int) *collector {
	c := &collector{}
	var n atomic.Int32
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			t.Errorf("export does not decode: %v", err)
		}
		c.mu.Lock()
		c.reqs = append(c.reqs, &req)
		c.hdr = append(c.hdr, r.Header.Clone())
		c.path = append(c.path, r.URL.Path)
		c.mu.Unlock()
		if code := answer(int(n.Add(1))); code != http.StatusOK {
			http.Error(w, "not now", code)
			return
		}
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *collector) requests() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reqs)
}

// TestExportOTLP: a span goes out as the OTLP specification encodes it: ids, parent, kind,
// times, every attribute type, error status, the resource, to {endpoint}/v1/traces with the
// configured headers.
func TestExportOTLP(t *testing.T) {
	c := newCollector(t, func(int) int { return http.StatusOK })
	tr, err := New(&Config{Endpoint: c.URL + "/otel/", Headers: map[string]string{"X-Api-Key": "k1"}}, "svc-default", "v9")
	if err != nil {
		t.Fatal(err)
	}
	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	s := tr.Start("deliver", trace.SpanKindClient, parent,
		attribute.String("hookrelay.id", "wh1"), attribute.Int("n", 7), attribute.Bool("b", true),
		attribute.Float64("f", 1.5), attribute.StringSlice("ss", []string{"x", "y"}),
		attribute.Int64Slice("is", []int64{1, 2}), attribute.BoolSlice("bs", []bool{false}),
		attribute.Float64Slice("fs", []float64{0.25}))
	before := time.Now()
	s.End(503, "")
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.requests() != 1 {
		t.Fatalf("%d exports, want 1", c.requests())
	}
	if c.path[0] != "/otel/v1/traces" || c.hdr[0].Get("Content-Type") != "application/x-protobuf" ||
		c.hdr[0].Get("X-Api-Key") != "k1" || !strings.HasPrefix(c.hdr[0].Get("User-Agent"), "hookrelay-otlp/v9") {
		t.Fatalf("export to %s with %v", c.path[0], c.hdr[0])
	}
	rs := c.reqs[0].ResourceSpans
	if len(rs) != 1 || len(rs[0].ScopeSpans) != 1 || len(rs[0].ScopeSpans[0].Spans) != 1 {
		t.Fatalf("request %v", c.reqs[0])
	}
	res := map[string]string{}
	for _, a := range rs[0].Resource.Attributes {
		res[a.Key] = a.Value.GetStringValue()
	}
	if res["service.name"] != "svc-default" || res["service.version"] != "v9" {
		t.Fatalf("resource %v", res)
	}
	if got := rs[0].ScopeSpans[0].Scope.GetName(); got != "github.com/hookrelay/hookrelay" {
		t.Fatalf("scope %q", got)
	}
	sp := rs[0].ScopeSpans[0].Spans[0]
	if sp.Name != "deliver" || sp.Kind != tracepb.Span_SPAN_KIND_CLIENT ||
		hex.EncodeToString(sp.TraceId) != "0af7651916cd43dd8448eb211c80319c" ||
		hex.EncodeToString(sp.ParentSpanId) != "b7ad6b7169203331" || len(sp.SpanId) != 8 {
		t.Fatalf("span %v", sp)
	}
	if sp.Flags&0xff != 1 || sp.Flags&uint32(tracepb.SpanFlags_SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK) == 0 {
		t.Fatalf("flags %#x: want sampled, parent remote", sp.Flags)
	}
	end := time.Unix(0, int64(sp.EndTimeUnixNano))
	if sp.StartTimeUnixNano == 0 || sp.StartTimeUnixNano > sp.EndTimeUnixNano || end.Before(before) {
		t.Fatalf("times %d..%d", sp.StartTimeUnixNano, sp.EndTimeUnixNano)
	}
	if sp.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || sp.Status.GetMessage() != "status 503" {
		t.Fatalf("status %v", sp.Status)
	}
	attrs := map[string]*commonpb.AnyValue{}
	for _, a := range sp.Attributes {
		attrs[a.Key] = a.Value
	}
	arr := func(k string) []*commonpb.AnyValue { return attrs[k].GetArrayValue().GetValues() }
	if attrs["hookrelay.id"].GetStringValue() != "wh1" || attrs["n"].GetIntValue() != 7 ||
		!attrs["b"].GetBoolValue() || attrs["f"].GetDoubleValue() != 1.5 ||
		attrs["http.response.status_code"].GetIntValue() != 503 ||
		len(arr("ss")) != 2 || arr("ss")[1].GetStringValue() != "y" ||
		len(arr("is")) != 2 || arr("is")[1].GetIntValue() != 2 ||
		len(arr("bs")) != 1 || arr("bs")[0].GetBoolValue() ||
		len(arr("fs")) != 1 || arr("fs")[0].GetDoubleValue() != 0.25 {
		t.Fatalf("attributes %v", sp.Attributes)
	}
}

func stubSpans(n int) []sdktrace.ReadOnlySpan {
	stubs := make(tracetest.SpanStubs, n)
	for i := range stubs {
		stubs[i] = tracetest.SpanStub{Name: "s", StartTime: time.Now(), EndTime: time.Now()}
	}
	return stubs.Snapshots()
}

// TestExportRetries: 429/502/503/504 are retried, with the collector's Retry-After; other
// failures are not, and the error names the status and what the collector said.
func TestExportRetries(t *testing.T) {
	c := newCollector(t, func(n int) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	e := newExporter(c.URL+"/v1/traces", nil, "t")
	if err := e.ExportSpans(context.Background(), stubSpans(2)); err != nil {
		t.Fatal(err)
	}
	if c.requests() != 2 || len(c.reqs[1].ResourceSpans[0].ScopeSpans[0].Spans) != 2 {
		t.Fatalf("%d requests, want a 503 then the same export again", c.requests())
	}

	bad := newCollector(t, func(int) int { return http.StatusBadRequest })
	e = newExporter(bad.URL+"/v1/traces", nil, "t")
	err := e.ExportSpans(context.Background(), stubSpans(1))
	if err == nil || !strings.Contains(err.Error(), "400 Bad Request") || !strings.Contains(err.Error(), "not now") {
		t.Fatalf("err = %v", err)
	}
	if bad.requests() != 1 {
		t.Fatalf("a 400 was tried %d times", bad.requests())
	}

	busy := newCollector(t, func(int) int { return http.StatusTooManyRequests })
	e = newExporter(busy.URL+"/v1/traces", nil, "t")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.ExportSpans(ctx, stubSpans(1)); err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("err = %v", err)
	}
	if busy.requests() != 1 {
		t.Fatalf("%d requests within a deadline shorter than the backoff", busy.requests())
	}
}

// TestProgramsLinkNoGRPC: neither program links gRPC (the exporter here exists for that; see
// exporter). A new dependency that brings it back fails here rather than in the binary's size.
func TestProgramsLinkNoGRPC(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	out, err := exec.Command(gobin, "list", "-deps", "github.com/hookrelay/hookrelay/cmd/hookagent",
		"github.com/hookrelay/hookrelay/cmd/hookrelay").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "google.golang.org/grpc") {
			t.Fatalf("the programs link %s", p)
		}
	}
}

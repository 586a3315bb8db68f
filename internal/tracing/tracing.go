// Package tracing exports OpenTelemetry traces over OTLP/HTTP for both programs: a span for
// each webhook's ingress (relay) and one per delivery attempt (agent), joined by the webhook
// id and by trace context that travels with the webhook (the Hookrelay-Trace header, see
// Header). Off by default; a nil *Tracer is valid and does nothing, so the cost when off is a
// nil check.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Header carries the ingress span's context (W3C traceparent form) with a webhook from the
// relay to the agent, stored with it on both sides. A sender's header of that name is
// dropped at ingress, and the agent never forwards hookrelay-* headers to a target.
const Header = "Hookrelay-Trace"

// AttrID is the attribute naming the webhook on every span.
const AttrID = "hookrelay.id"

// Config is `otel:` on either side.
type Config struct {
	// Endpoint is the OTLP/HTTP collector's base URL (http://127.0.0.1:4318); traces go to
	// its /v1/traces. Required when otel is given.
	Endpoint string `yaml:"endpoint"`
	// ServiceName is the service.name resource attribute; default hookrelay or hookagent.
	ServiceName string `yaml:"service_name"`
	// Headers are sent with every export (a collector's API key). Optional.
	Headers map[string]string `yaml:"headers"`
}

// Validate checks c; key names it in errors ("otel").
func (c *Config) Validate(key string) error {
	if c.Endpoint == "" {
		return fmt.Errorf("config %s.endpoint: missing (the OTLP/HTTP collector, e.g. http://127.0.0.1:4318)", key)
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("config %s.endpoint: %q is not an http(s) URL with a host (e.g. http://127.0.0.1:4318)", key, c.Endpoint)
	}
	return nil
}

// Tracer exports spans; nil when tracing is off.
type Tracer struct {
	tp   *sdktrace.TracerProvider
	tr   trace.Tracer
	prop propagation.TraceContext
}

// New starts an exporter to cfg.Endpoint; spans name the service (cfg.ServiceName, else
// defaultService) and version. cfg nil means off: New returns nil.
func New(cfg *Config, defaultService, version string) (*Tracer, error) {
	if cfg == nil {
		return nil, nil
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("otel endpoint: %w", err)
	}
	u.Path = joinPath(u.Path, "/v1/traces")
	exp := newExporter(u.String(), cfg.Headers, version)
	name := cfg.ServiceName
	if name == "" {
		name = defaultService
	}
	res := resource.NewSchemaless(attribute.String("service.name", name), attribute.String("service.version", version))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
		sdktrace.WithResource(res),
	)
	return &Tracer{tp: tp, tr: tp.Tracer("github.com/hookrelay/hookrelay")}, nil
}

func joinPath(base, p string) string {
	for len(base) > 0 && base[len(base)-1] == '/' {
		base = base[:len(base)-1]
	}
	return base + p
}

// Close flushes what is buffered (bounded by ctx) and stops the exporter. Nil-safe.
func (t *Tracer) Close(ctx context.Context) error {
	if t == nil {
		return nil
	}
	err := t.tp.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("otel: flush on close: %w", err)
	}
	return err
}

// Span is one started span; nil when tracing is off (its methods then do nothing).
type Span struct {
	s   trace.Span
	ctx context.Context
}

// Start begins a span of the given kind named name, whose parent is the context in
// traceparent (W3C form; "" or invalid: a new trace).
func (t *Tracer) Start(name string, kind trace.SpanKind, traceparent string, attrs ...attribute.KeyValue) *Span {
	if t == nil {
		return nil
	}
	ctx := context.Background()
	if traceparent != "" {
		ctx = t.prop.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
	}
	ctx, s := t.tr.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	return &Span{s: s, ctx: ctx}
}

// Traceparent is the span's context in W3C traceparent form ("" when off).
func (s *Span) Traceparent() string {
	if s == nil {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(s.ctx, c)
	return c["traceparent"]
}

// SetAttributes adds attributes.
func (s *Span) SetAttributes(attrs ...attribute.KeyValue) {
	if s != nil {
		s.s.SetAttributes(attrs...)
	}
}

// End ends the span with an HTTP status (0: none) and an error message ("" for none);
// 5xx and errors mark it failed.
func (s *Span) End(status int, errMsg string) {
	if s == nil {
		return
	}
	if status != 0 {
		s.s.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	if errMsg != "" {
		s.s.SetStatus(codes.Error, errMsg)
	} else if status >= 500 {
		s.s.SetStatus(codes.Error, fmt.Sprintf("status %d", status))
	}
	s.s.End()
}

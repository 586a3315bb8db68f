package relay

import (
	"context"
	"net/http"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookrelay/hookrelay/internal/tracing"
	"github.com/hookrelay/hookrelay/persist"
)

type spanKey struct{}

// startIngressSpan starts the ingress span of r (a child of the sender's traceparent, when it
// sent one) and returns r carrying it for traceOf. Both are as given when otel is off.
func (s *Server) startIngressSpan(r *http.Request) (*tracing.Span, *http.Request) {
	span := s.tracer.Start("hookrelay.ingress", trace.SpanKindServer, r.Header.Get("Traceparent"),
		attribute.String("http.request.method", r.Method))
	if span == nil {
		return nil, r
	}
	return span, r.WithContext(context.WithValue(r.Context(), spanKey{}, span))
}

// traceOf is the ingress span startIngressSpan put in r, or nil.
func traceOf(r *http.Request) *tracing.Span {
	span, _ := r.Context().Value(spanKey{}).(*tracing.Span)
	return span
}

// withTrace drops a sender's own tracing.Header from hs (sorted by name, as storedHeaders
// returns them) and adds traceparent under it, in order, when not "".
func withTrace(hs []persist.Header, traceparent string) []persist.Header {
	hs = slices.DeleteFunc(hs, func(h persist.Header) bool { return h.Name == tracing.Header })
	if traceparent == "" {
		return hs
	}
	i, _ := slices.BinarySearchFunc(hs, tracing.Header, func(h persist.Header, name string) int {
		switch {
		case h.Name < name:
			return -1
		case h.Name > name:
			return 1
		}
		return 0
	})
	return slices.Insert(hs, i, persist.Header{Name: tracing.Header, Value: traceparent})
}

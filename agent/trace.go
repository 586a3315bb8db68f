package agent

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookrelay/hookrelay/internal/tracing"
	"github.com/hookrelay/hookrelay/persist"
)

// startSpan starts the span of attempt n of rec, a child of the relay's ingress span (its
// context came with the webhook) and, where the sender sent no traceparent, names it in req's
// traceparent so the target joins the trace. nil when otel is off.
func (d *deliverer) startSpan(rec *persist.Record, n int, req *http.Request) *tracing.Span {
	if d.a.tracer == nil {
		return nil
	}
	var parent string
	for _, h := range rec.Headers {
		if strings.EqualFold(h.Name, tracing.Header) {
			parent = h.Value
		}
	}
	span := d.a.tracer.Start("hookrelay.delivery", trace.SpanKindClient, parent,
		attribute.String(tracing.AttrID, webhookID(rec.ID)), attribute.Int("hookrelay.attempt", n),
		attribute.String("hookrelay.endpoint", d.r.Endpoint), attribute.String("hookrelay.route", d.r.Name), attribute.String("http.request.method", req.Method))
	if req.Header.Get("Traceparent") == "" {
		req.Header.Set("Traceparent", span.Traceparent())
	}
	return span
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

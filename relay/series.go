package relay

import (
	"strings"

	"github.com/hookrelay/hookrelay/internal/admin"
)

// newSeries builds the sampler behind the admin UI's charts, over the relay's own metrics:
// received = ingress requests answered 2xx, delivered = agents' delivered reports, failed =
// ingress requests refused (4xx/5xx) plus dead reports, queue = pending webhooks, latency =
// ingress to delivered report. Run samples it; it outlives admin handlers replaced by Reload.
func (s *Server) newSeries() *admin.Sampler {
	accepted := func(l map[string]string) bool { return strings.HasPrefix(l["code"], "2") }
	outcome := func(o string) func(map[string]string) bool {
		return func(l map[string]string) bool { return l["outcome"] == o }
	}
	src := admin.PromTotals{
		Gatherer:  s.metrics.reg,
		Received:  []admin.Metric{{Name: "hookrelay_ingress_requests_total", Match: accepted}},
		Delivered: []admin.Metric{{Name: "hookrelay_reports_total", Match: outcome("delivered")}},
		Failed: []admin.Metric{
			{Name: "hookrelay_ingress_requests_total", Match: func(l map[string]string) bool { return !accepted(l) }},
			{Name: "hookrelay_reports_total", Match: outcome("dead")},
		},
		Queue:   []admin.Metric{{Name: "hookrelay_queue_pending"}},
		Latency: "hookrelay_delivery_latency_seconds",
	}
	return admin.NewSampler(admin.SeriesConfig{Totals: src.Totals})
}

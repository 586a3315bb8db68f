package agent

import (
	"github.com/hookrelay/hookrelay/internal/admin"
)

// newSeries builds the sampler behind the admin UI's charts, over the agent's own metrics:
// received = webhooks from the relay, delivered = attempts the target answered 2xx, failed =
// attempts that failed (to be retried or dead), queue = webhooks waiting in the store,
// latency = delivery attempts' duration. Run samples it.
func (a *Agent) newSeries() *admin.Sampler {
	outcome := func(want ...AttemptOutcome) func(map[string]string) bool {
		return func(l map[string]string) bool {
			for _, o := range want {
				if l["outcome"] == string(o) {
					return true
				}
			}
			return false
		}
	}
	src := admin.PromTotals{
		Gatherer:  a.metrics.reg,
		Received:  []admin.Metric{{Name: "hookagent_webhooks_received_total"}},
		Delivered: []admin.Metric{{Name: "hookagent_deliveries_total", Match: outcome(OutcomeDelivered)}},
		Failed:    []admin.Metric{{Name: "hookagent_deliveries_total", Match: outcome(OutcomeRetry, OutcomeDead)}},
		Queue:     []admin.Metric{{Name: "hookagent_queue_depth"}},
		Latency:   "hookagent_delivery_duration_seconds",
	}
	return admin.NewSampler(admin.SeriesConfig{Totals: src.Totals})
}

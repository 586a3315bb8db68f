package relay

import "github.com/prometheus/client_golang/prometheus"

// smeeMetrics count smee streams and channels, on the server's registry. No label: channel
// names are secrets, and endpoint labels would give one series per channel.
type smeeMetrics struct {
	streams         prometheus.Gauge
	events          prometheus.Counter
	channelsCreated prometheus.Counter
	channelsExpired prometheus.Counter
	channelsRefused prometheus.Counter
}

func newSmeeMetrics(reg prometheus.Registerer, channels func() int) *smeeMetrics {
	m := &smeeMetrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hookrelay_smee_streams",
			Help: "smee streams attached now (smee-client, gosmee)."}),
		events: prometheus.NewCounter(prometheus.CounterOpts{Name: "hookrelay_smee_events_total",
			Help: "Webhooks sent to smee streams (each stream counts its own)."}),
		channelsCreated: prometheus.NewCounter(prometheus.CounterOpts{Name: "hookrelay_channels_created_total",
			Help: "Channels made at /new."}),
		channelsExpired: prometheus.NewCounter(prometheus.CounterOpts{Name: "hookrelay_channels_expired_total",
			Help: "Channels removed after channels.ttl without use."}),
		channelsRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "hookrelay_channels_refused_total",
			Help: "Requests to /new refused by channels.per_client_per_hour."}),
	}
	reg.MustRegister(m.streams, m.events, m.channelsCreated, m.channelsExpired, m.channelsRefused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hookrelay_channels",
			Help: "Channels that exist now."}, func() float64 { return float64(channels()) }))
	return m
}

package agent

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hookrelay/hookrelay/persist"
)

// unknownEndpoint labels webhooks for endpoints the agent has no route for, so a relay cannot
// grow the label set.
const unknownEndpoint = "_unknown"

// metrics are the agent's Prometheus metrics, on a registry of its own (served at /metrics on
// admin_addr). Counters move from the agent's events; queue figures are read from the store at
// scrape time. Labels are endpoints, outcomes and classes, never ids.
type metrics struct {
	reg    *prometheus.Registry
	routes map[string]bool     // endpoints
	queues map[string]routeKey // each route's store queue

	received   *prometheus.CounterVec // endpoint
	stored     *prometheus.CounterVec // endpoint
	duplicates *prometheus.CounterVec // endpoint
	replayed   *prometheus.CounterVec // endpoint
	nacked     *prometheus.CounterVec // endpoint, reason
	deliveries *prometheus.CounterVec // endpoint, outcome, status_class
	routeDel   *prometheus.CounterVec // endpoint, route, outcome, status_class
	latency    *prometheus.HistogramVec
	dead       *prometheus.CounterVec // endpoint
	tunnelUp   *prometheus.GaugeVec   // transport
	connects   prometheus.Counter
	reconnects prometheus.Counter
	reports    prometheus.Counter
	batch      prometheus.Histogram
	fsync      prometheus.Histogram
}

func newMetrics(routes []Route) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{reg: reg, routes: map[string]bool{}, queues: map[string]routeKey{}}
	for _, r := range routes {
		m.routes[r.Endpoint] = true
		m.queues[r.queue] = routeKey{r.Endpoint, r.Name}
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hookagent_" + name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	m.received = counter("webhooks_received_total", "Webhooks received from the relay.", "endpoint")
	m.stored = counter("webhooks_stored_total", "Webhooks stored durably (then acked).", "endpoint")
	m.duplicates = counter("webhooks_duplicates_total", "Webhooks already held, acked without a second delivery.", "endpoint")
	m.replayed = counter("webhooks_replayed_total", "Webhooks the relay sent as replays (delivered again).", "endpoint")
	m.nacked = counter("webhooks_nacked_total", "Webhooks refused back to the relay, by reason (no_route, quota, disk_full, store, replay, ordered).", "endpoint", "reason")
	m.deliveries = counter("deliveries_total", "Delivery attempts by outcome (delivered, retry, dead) and target status class (2xx…5xx, error; none when no request was made).", "endpoint", "outcome", "status_class")
	m.routeDel = counter("route_deliveries_total", "Delivery attempts per route by outcome (delivered, retry, dead, filtered) and target status class; deliveries_total is their sum per endpoint.", "endpoint", "route", "outcome", "status_class")
	m.dead = counter("dead_letters_total", "Webhooks that became dead letters.", "endpoint")
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "hookagent_delivery_duration_seconds",
		Help:    "Duration of delivery attempts to the target, response included.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"endpoint"})
	m.tunnelUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hookagent_tunnel_up", Help: "1 while a tunnel to the relay is up, by transport.",
	}, []string{"transport"})
	m.connects = prometheus.NewCounter(prometheus.CounterOpts{Name: "hookagent_tunnel_connects_total", Help: "Tunnel sessions the relay welcomed."})
	m.reconnects = prometheus.NewCounter(prometheus.CounterOpts{Name: "hookagent_tunnel_reconnects_total", Help: "Reconnects after a tunnel dropped or a dial failed."})
	m.reports = prometheus.NewCounter(prometheus.CounterOpts{Name: "hookagent_reports_sent_total", Help: "Delivery outcomes reported to the relay."})
	m.batch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "hookagent_store_commit_records", Help: "Records written per group commit of the store.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 11),
	})
	m.fsync = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "hookagent_store_fsync_duration_seconds", Help: "Duration of the store's synced group-commit writes.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 12),
	})
	reg.MustRegister(m.latency, m.tunnelUp, m.connects, m.reconnects, m.reports, m.batch, m.fsync)
	for _, tr := range []string{"websocket", "quic"} {
		m.tunnelUp.WithLabelValues(tr).Set(0)
	}
	for ep := range m.routes {
		for _, c := range []*prometheus.CounterVec{m.received, m.stored, m.duplicates, m.dead} {
			c.WithLabelValues(ep)
		}
		m.deliveries.WithLabelValues(ep, string(OutcomeDelivered), "2xx")
	}
	for _, k := range m.queues {
		m.routeDel.WithLabelValues(k.endpoint, k.route, string(OutcomeDelivered), "2xx")
	}
	// Process and Go runtime metrics, under the same prefix as ours.
	pre := prometheus.WrapRegistererWithPrefix("hookagent_", reg)
	pre.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watchStore adds the scrape-time queue figures of st.
func (m *metrics) watchStore(st *persist.Store) {
	m.reg.MustRegister(&queueCollector{st: st, routes: m.routes, queues: m.queues})
}

// onCommit is the store's persist.Options.OnCommit.
func (m *metrics) onCommit(records int, took time.Duration) {
	m.batch.Observe(float64(records))
	m.fsync.Observe(took.Seconds())
}

// endpoint is ep as a label value.
func (m *metrics) endpoint(ep string) string {
	if m.routes[ep] {
		return ep
	}
	return unknownEndpoint
}

// observe moves the counters for one event.
func (m *metrics) observe(ev Event) {
	switch ev.Kind {
	case EventTunnelUp:
		m.connects.Inc()
		m.setTunnel(ev.Transport)
	case EventTunnelDown:
		m.reconnects.Inc()
		m.setTunnel("")
	case EventReceived:
		m.received.WithLabelValues(m.endpoint(ev.Endpoint)).Inc()
		if ev.Replay {
			m.replayed.WithLabelValues(m.endpoint(ev.Endpoint)).Inc()
		}
	case EventStored:
		m.stored.WithLabelValues(m.endpoint(ev.Endpoint)).Inc()
	case EventDuplicate:
		if !ev.Replay {
			m.duplicates.WithLabelValues(m.endpoint(ev.Endpoint)).Inc()
		}
	case EventNacked:
		m.nacked.WithLabelValues(m.endpoint(ev.Endpoint), ev.ErrKind).Inc()
	case EventAttempt:
		ep := m.endpoint(ev.Endpoint)
		m.deliveries.WithLabelValues(ep, string(ev.Outcome), statusClass(ev)).Inc()
		if ep != unknownEndpoint && ev.Route != "" {
			m.routeDel.WithLabelValues(ep, ev.Route, string(ev.Outcome), statusClass(ev)).Inc()
		}
		if ev.ErrKind != ErrKindNone {
			m.latency.WithLabelValues(ep).Observe(ev.Duration.Seconds())
		}
		if ev.Outcome == OutcomeDead {
			m.dead.WithLabelValues(ep).Inc()
		}
	case EventReportsSent:
		m.reports.Add(float64(ev.Count))
	}
}

// setTunnel marks transport up and the others down ("" = all down).
func (m *metrics) setTunnel(transport string) {
	for _, tr := range []string{"websocket", "quic"} {
		v := 0.0
		if tr == transport {
			v = 1
		}
		m.tunnelUp.WithLabelValues(tr).Set(v)
	}
	if transport != "" && transport != "websocket" && transport != "quic" {
		m.tunnelUp.WithLabelValues(transport).Set(1)
	}
}

// statusClass is "2xx" … "5xx" for a status, "none" when no request was made, else "error".
func statusClass(ev Event) string {
	switch {
	case ev.Status >= 100 && ev.Status < 600:
		return strconv.Itoa(ev.Status/100) + "xx"
	case ev.ErrKind == ErrKindNone:
		return "none"
	}
	return "error"
}

// routeKey names a route in metric labels.
type routeKey struct{ endpoint, route string }

// queueCollector reports each endpoint's queues from store.Stats() at scrape time (the sum
// over its routes: depth, bytes, dead letters; the age of the oldest pending webhook, the
// lag), and each route's depth and dead letters.
type queueCollector struct {
	st     *persist.Store
	routes map[string]bool
	queues map[string]routeKey
}

var (
	descDepth      = prometheus.NewDesc("hookagent_queue_depth", "Webhooks stored and not yet delivered or dead (copies, summed over the endpoint's routes).", []string{"endpoint"}, nil)
	descBytes      = prometheus.NewDesc("hookagent_queue_bytes", "Stored bytes of the webhooks not yet delivered or dead.", []string{"endpoint"}, nil)
	descAge        = prometheus.NewDesc("hookagent_queue_oldest_age_seconds", "Age of the oldest webhook waiting for delivery (0 when none).", []string{"endpoint"}, nil)
	descDead       = prometheus.NewDesc("hookagent_dead_letters", "Dead letters held in the store.", []string{"endpoint"}, nil)
	descRouteDepth = prometheus.NewDesc("hookagent_route_queue_depth", "A route's copies stored and not yet delivered, filtered or dead.", []string{"endpoint", "route"}, nil)
	descRouteDead  = prometheus.NewDesc("hookagent_route_dead_letters", "A route's dead letters held in the store.", []string{"endpoint", "route"}, nil)
	descQuar       = prometheus.NewDesc("hookagent_store_quarantined",
		"Records set aside at start because their metadata did not decode (kept, never deleted: see the log).", nil, nil)
)

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDepth, descBytes, descAge, descDead, descRouteDepth, descRouteDead, descQuar} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descQuar, prometheus.GaugeValue, float64(len(c.st.Quarantined())))
	now := time.Now()
	eps := map[string]*persist.QueueStats{}
	for ep := range c.routes {
		eps[ep] = &persist.QueueStats{Queue: ep}
	}
	routes := map[string]persist.QueueStats{}
	for _, s := range c.st.Stats() {
		if _, ok := c.queues[s.Queue]; !ok {
			continue // a route removed from the config: its leftovers are not a series
		}
		routes[s.Queue] = s
		e := eps[endpointOf(s.Queue)]
		e.Pending += s.Pending
		e.Bytes += s.Bytes
		e.Dead += s.Dead
		if !s.Oldest.IsZero() && (e.Oldest.IsZero() || s.Oldest.Before(e.Oldest)) {
			e.Oldest = s.Oldest
		}
	}
	for ep, s := range eps {
		age := 0.0
		if !s.Oldest.IsZero() {
			age = max(now.Sub(s.Oldest).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, float64(s.Pending), ep)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(s.Bytes), ep)
		ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, age, ep)
		ch <- prometheus.MustNewConstMetric(descDead, prometheus.GaugeValue, float64(s.Dead), ep)
	}
	for q, k := range c.queues {
		s := routes[q]
		ch <- prometheus.MustNewConstMetric(descRouteDepth, prometheus.GaugeValue, float64(s.Pending), k.endpoint, k.route)
		ch <- prometheus.MustNewConstMetric(descRouteDead, prometheus.GaugeValue, float64(s.Dead), k.endpoint, k.route)
	}
}

package relay

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hookrelay/hookrelay/relay/verify"
)

// unknownEndpoint labels ingress requests that name no configured endpoint, so that a
// scanner cannot create one series per path it tries.
const unknownEndpoint = "_unknown"

// Limit kinds of hookrelay_ingress_rejected_total.
const (
	limitBody     = "body"     // 413 over max_body
	limitRate     = "rate"     // 429 over rate
	limitQuota    = "quota"    // 429 over quota
	limitDisk     = "disk"     // 507 disk full
	limitStopping = "stopping" // 503 starting, stopping or store closed
	limitBusy     = "busy"     // 503 ingress_buffer full
	limitPath     = "path"     // 400 a suffix protocol.CheckPath refuses, 404 no endpoint in the path
	limitTimeout  = "timeout"  // 408 body slower than body_timeout
	limitStore    = "store"    // 503 another store failure
	limitBcrypt   = "bcrypt"   // 429 too many basic-auth bcrypt checks at once

	limitClientRequests = "client_requests" // 429 over per_client_requests
	limitClientBuffer   = "client_buffer"   // 429 over per_client_buffer
)

// metrics are the relay's Prometheus metrics, on a registry the Server owns (not the global
// one), so that two servers in one process (tests) do not collide. No label holds an id.
type metrics struct {
	reg *prometheus.Registry

	adminRefusedBase atomic.Uint64 // requests refused by replaced admin handlers' guard

	ingress       *prometheus.CounterVec // endpoint, code
	rejected      *prometheus.CounterVec // endpoint, limit
	verifyFailed  *prometheus.CounterVec // endpoint, scheme, reason
	handshakes    *prometheus.CounterVec // endpoint, provider, result
	duplicates    *prometheus.CounterVec // endpoint
	syncAnswers   *prometheus.CounterVec // endpoint, result: returned, fallback
	dispatched    *prometheus.CounterVec // endpoint, group
	acked         *prometheus.CounterVec // endpoint, group
	nacked        *prometheus.CounterVec // endpoint, group
	released      *prometheus.CounterVec // endpoint, group
	reoffered     *prometheus.CounterVec // endpoint, group
	reports       *prometheus.CounterVec // outcome, group
	handshakeFail *prometheus.CounterVec // reason
	sessionsEnded *prometheus.CounterVec // reason
	reloads       *prometheus.CounterVec // result
	commitBatch   prometheus.Histogram
	commitSeconds prometheus.Histogram
	latency       prometheus.Histogram // ingress to delivered report
}

func newMetrics() *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		ingress: counter("hookrelay_ingress_requests_total",
			"Ingress requests by endpoint (\"_unknown\" for none configured) and status code.", "endpoint", "code"),
		rejected: counter("hookrelay_ingress_rejected_total",
			"Ingress requests refused by a limit: body, rate, quota, disk, stopping, busy, path, timeout, store, client_requests, client_buffer, bcrypt.", "endpoint", "limit"),
		verifyFailed: counter("hookrelay_verify_failures_total",
			"Ingress requests that failed verification, by scheme and reason class.", "endpoint", "scheme", "reason"),
		handshakes: counter("hookrelay_handshakes_total",
			"Provider URL handshakes the relay answered itself, by provider and result: answered, bad_request, forbidden, unauthorized.",
			"endpoint", "provider", "result"),
		duplicates: counter("hookrelay_ingress_duplicates_total",
			"Standard Webhooks messages already accepted inside the replay window: answered again, not stored.", "endpoint"),
		syncAnswers: counter("hookrelay_sync_answers_total",
			"Answers of sync endpoints, by result: returned (the target's answer), fallback (202).", "endpoint", "result"),
		dispatched: counter("hookrelay_webhooks_dispatched_total",
			"Webhooks sent to an agent session (first sends and redeliveries).", "endpoint", "group"),
		acked: counter("hookrelay_webhooks_acked_total",
			"Webhooks an agent acknowledged as stored.", "endpoint", "group"),
		nacked: counter("hookrelay_webhooks_nacked_total",
			"Webhooks an agent could not store now (offered again later).", "endpoint", "group"),
		released: counter("hookrelay_webhooks_released_total",
			"Unacked webhooks made ready again when their session ended (to be redelivered).", "endpoint", "group"),
		reoffered: counter("hookrelay_webhooks_reoffered_total",
			"Acked webhooks offered again: their agent had no session for the endpoint's outcome_timeout.", "endpoint", "group"),
		reports: counter("hookrelay_reports_total",
			"Final delivery outcomes reported by agents: delivered, dead; by the agent's consumer group.", "outcome", "group"),
		handshakeFail: counter("hookrelay_tunnel_handshake_failures_total",
			"Tunnels refused before a session started, by reason.", "reason"),
		sessionsEnded: counter("hookrelay_tunnel_sessions_ended_total",
			"Agent sessions ended, by reason.", "reason"),
		reloads: counter("hookrelay_config_reloads_total",
			"Configuration reloads (SIGHUP): applied or refused.", "result"),
		commitBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hookrelay_store_commit_batch_records",
			Help:    "Records written per group commit of the store.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hookrelay_store_commit_seconds",
			Help:    "Duration of each group commit's synced write (fsync included).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hookrelay_delivery_latency_seconds",
			Help:    "Time from ingress to the agent's report that the webhook was delivered.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
	}
	m.reg.MustRegister(m.ingress, m.rejected, m.verifyFailed, m.handshakes, m.duplicates, m.syncAnswers, m.dispatched, m.acked,
		m.nacked, m.released, m.reoffered, m.reports, m.handshakeFail, m.sessionsEnded, m.reloads,
		m.commitBatch, m.commitSeconds, m.latency)
	// The contract: every name starts hookrelay_, the runtime's too.
	prometheus.WrapRegistererWithPrefix("hookrelay_", m.reg).MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// register adds the collectors that read the server's state at scrape time.
func (m *metrics) register(s *Server) {
	m.reg.MustRegister(&stateCollector{s: s},
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hookrelay_admin_failed_logins_total",
			Help: "Wrong admin tokens: failed UI logins, admin API calls and /metrics scrapes.",
		}, func() float64 { return float64(s.adminFailures()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hookrelay_admin_refused_total",
			Help: "Admin requests refused as cross-site (Origin, Sec-Fetch-Site) or with a foreign Host.",
		}, func() float64 { return float64(s.adminRefused()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hookrelay_ingress_buffer_bytes",
			Help: "Request body bytes held by ingress requests in flight (bounded by ingress_buffer; grows with the bytes received).",
		}, func() float64 { return float64(s.ingressMem.Load()) }),
	)
}

// onCommit is the store's OnCommit hook.
func (m *metrics) onCommit(records int, took time.Duration) {
	m.commitBatch.Observe(float64(records))
	m.commitSeconds.Observe(took.Seconds())
}

// delivered observes the latency of a delivered webhook: from ingress, the time its id (a
// ULID the store made on arrival) holds, to now.
func (m *metrics) delivered(id string) {
	u, err := ulid.ParseStrict(id)
	if err != nil {
		return
	}
	if d := time.Since(ulid.Time(u.Time())); d >= 0 {
		m.latency.Observe(d.Seconds())
	}
}

func (m *metrics) countIngress(endpoint string, code int) {
	m.ingress.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
}

func (m *metrics) reject(endpoint, limit string) {
	m.rejected.WithLabelValues(endpoint, limit).Inc()
}

func (m *metrics) verifyFailure(endpoint string, f *verify.Failure) {
	m.verifyFailed.WithLabelValues(endpoint, f.Scheme, reasonClass(f)).Inc()
}

func (m *metrics) handshake(endpoint, provider, result string) {
	m.handshakes.WithLabelValues(endpoint, provider, result).Inc()
}

// reasonClass maps a verification failure to a small fixed set: missing, malformed,
// mismatch, expired, address, invalid (a client certificate that does not verify), subject.
// Failure.Reason itself may hold an address: not a label.
func reasonClass(f *verify.Failure) string {
	r := f.Reason
	switch {
	case f.Scheme == verify.SchemeIPAllow && strings.HasPrefix(r, "address"):
		return "address"
	case f.Scheme == verify.SchemeMTLS && strings.HasPrefix(r, "subject"):
		return "subject"
	case f.Scheme == verify.SchemeMTLS && strings.HasPrefix(r, "invalid"):
		return "invalid"
	case strings.HasPrefix(r, "missing"):
		return "missing"
	case strings.HasPrefix(r, "malformed"):
		return "malformed"
	case strings.HasPrefix(r, "timestamp"):
		return "expired"
	case strings.Contains(r, "mismatch"), strings.HasPrefix(r, "wrong"):
		return "mismatch"
	}
	return "other"
}

// stateCollector reports, at each scrape, the store's queues and the connected agents.
type stateCollector struct{ s *Server }

var (
	descPending = prometheus.NewDesc("hookrelay_queue_pending",
		"Webhooks stored and not finished (accepted, sent or acked), per endpoint.", []string{"endpoint"}, nil)
	descBytes = prometheus.NewDesc("hookrelay_queue_bytes",
		"Stored bytes of pending webhooks (counted against the quota), per endpoint.", []string{"endpoint"}, nil)
	descOldest = prometheus.NewDesc("hookrelay_queue_oldest_age_seconds",
		"Age of the oldest webhook waiting for an agent (0 when none), per endpoint.", []string{"endpoint"}, nil)
	descDead = prometheus.NewDesc("hookrelay_queue_dead",
		"Dead webhooks kept, per endpoint.", []string{"endpoint"}, nil)
	descAgents = prometheus.NewDesc("hookrelay_agents_connected",
		"Connected agent sessions, by transport.", []string{"transport"}, nil)
	descQuarantined = prometheus.NewDesc("hookrelay_store_quarantined",
		"Records set aside at start because their metadata did not decode (kept, never deleted: see the log).", nil, nil)
	descTunnelInfo = prometheus.NewDesc("hookrelay_build_info",
		"Always 1; the version label says which relay this is.", []string{"version"}, nil)
	descNodeInfo = prometheus.NewDesc("hookrelay_node_info",
		"Always 1; node_id names this relay (of a cluster: store nats), store says which queue it runs on (badger or nats).",
		[]string{"node_id", "store"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPending, descBytes, descOldest, descDead, descAgents, descQuarantined, descTunnelInfo, descNodeInfo} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	lv := c.s.live.Load()
	now := time.Now()
	seen := map[string]bool{}
	gauge := func(d *prometheus.Desc, v float64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, label)
	}
	stats, _ := c.s.queue.Stats(context.Background()) // none on error: the gauges stay at 0
	for _, st := range stats {
		seen[st.Queue] = true
		age := 0.0
		if !st.Oldest.IsZero() {
			age = max(0, now.Sub(st.Oldest).Seconds())
		}
		gauge(descPending, float64(st.Pending), st.Queue)
		gauge(descBytes, float64(st.Bytes), st.Queue)
		gauge(descOldest, age, st.Queue)
		gauge(descDead, float64(st.Dead), st.Queue)
	}
	for _, e := range lv.order {
		if !seen[e.name] {
			for _, d := range []*prometheus.Desc{descPending, descBytes, descOldest, descDead} {
				gauge(d, 0, e.name)
			}
		}
	}
	if q, ok := c.s.queue.(interface{ Quarantined() []string }); ok {
		ch <- prometheus.MustNewConstMetric(descQuarantined, prometheus.GaugeValue, float64(len(q.Quarantined())))
	}
	byTransport := map[string]int{"websocket": 0, "quic": 0}
	for _, a := range c.s.hub.agents() {
		byTransport[a.Transport]++
	}
	for tr, n := range byTransport {
		gauge(descAgents, float64(n), tr)
	}
	v := lv.cfg.Version
	if v == "" {
		v = "dev"
	}
	gauge(descTunnelInfo, 1, v)
	store := "badger"
	if lv.cfg.Clustered() {
		store = "nats"
	}
	ch <- prometheus.MustNewConstMetric(descNodeInfo, prometheus.GaugeValue, 1, lv.cfg.NodeID, store)
}

// metricsHandler serves the registry in the Prometheus text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

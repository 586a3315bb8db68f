package admin

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// counters stands in for a process's counters: the test moves them, the sampler reads them.
type counters struct {
	mu sync.Mutex
	t  Totals
}

func (c *counters) totals() Totals {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	t.Latency.Counts = append([]uint64(nil), c.t.Latency.Counts...)
	return t
}

func (c *counters) add(received, delivered, failed float64, queue float64, latencies ...float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t.Received += received
	c.t.Delivered += delivered
	c.t.Failed += failed
	c.t.Queue = queue
	for _, l := range latencies {
		for i, b := range c.t.Latency.Bounds {
			if l <= b {
				c.t.Latency.Counts[i]++
			}
		}
		c.t.Latency.Counts[len(c.t.Latency.Bounds)]++
	}
}

func newCounters() *counters {
	b := []float64{.01, .1, 1}
	return &counters{t: Totals{Latency: Histogram{Bounds: b, Counts: make([]uint64, len(b)+1)}}}
}

func TestSamplerRatesAndRing(t *testing.T) {
	c := newCounters()
	s := NewSampler(SeriesConfig{Totals: c.totals, Interval: 5 * time.Second, Span: 15 * time.Second})
	t0 := time.Unix(1_700_000_000, 0)
	s.Sample(t0) // baseline
	if got := s.Series(t0); len(got.Points) != 0 || got.Now != nil || got.IntervalMs != 5000 || got.SpanMs != 15000 {
		t.Fatalf("after the baseline: %+v, want no points", got)
	}
	// 50 received, 40 delivered (30 fast, 10 slow), 5 failed in 5 s.
	fast := make([]float64, 30)
	for i := range fast {
		fast[i] = 0.005
	}
	c.add(50, 40, 5, 7, append(fast, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5)...)
	s.Sample(t0.Add(5 * time.Second))
	got := s.Series(t0.Add(5 * time.Second))
	if len(got.Points) != 1 {
		t.Fatalf("%d points, want 1", len(got.Points))
	}
	p := got.Points[0]
	if p.T != t0.Add(5*time.Second).UnixMilli() || p.Received != 10 || p.Delivered != 8 || p.Failed != 1 || p.Queue != 7 {
		t.Errorf("point %+v, want t+5s received 10/s delivered 8/s failed 1/s queue 7", p)
	}
	// 30 of 40 at ≤10 ms: the median is in the first bucket (interpolated: 20/30 of 10 ms);
	// the 99th percentile in (100 ms, 1 s].
	if p.P50 == nil || *p.P50 != 6.667 || p.P99 == nil || *p.P99 <= 100 || *p.P99 > 1000 {
		t.Errorf("p50 %v p99 %v, want 6.667 ms and in (100, 1000] ms", deref(p.P50), deref(p.P99))
	}
	// The interval in progress shows up as Now, before the next sample.
	c.add(4, 0, 0, 3)
	if got := s.Series(t0.Add(7 * time.Second)); got.Now == nil || got.Now.Received != 2 || got.Now.P50 != nil || got.Now.Queue != 3 {
		t.Errorf("now %+v, want received 2/s, no latency, queue 3", got.Now)
	}
	// Four more samples: the ring keeps the last three, oldest first.
	for i := 2; i <= 5; i++ {
		c.add(float64(5*i), 0, 0, 0)
		s.Sample(t0.Add(time.Duration(5*i) * time.Second))
	}
	got = s.Series(t0.Add(25 * time.Second))
	if len(got.Points) != 3 {
		t.Fatalf("%d points, want the 3 of the span", len(got.Points))
	}
	for i, p := range got.Points {
		want := t0.Add(time.Duration(15+5*i) * time.Second).UnixMilli()
		// received: the samples at 10 s and 15 s also carry the 4 of the Now check
		if p.T != want || p.Received != float64(3+i) {
			t.Errorf("point %d: t %d received %v, want t %d received %d/s", i, p.T, p.Received, want, 3+i)
		}
		if p.P50 != nil {
			t.Errorf("point %d has a p50 without deliveries", i)
		}
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestQuantileMs(t *testing.T) {
	h := func(counts ...uint64) Histogram { return Histogram{Bounds: []float64{.1, 1}, Counts: counts} }
	for _, tc := range []struct {
		name string
		a, b Histogram
		q    float64
		want any
	}{
		{"none", h(0, 0, 0), h(0, 0, 0), 0.5, nil},
		{"all in the first bucket", h(0, 0, 0), h(10, 10, 10), 0.5, 50.0},
		{"second bucket", h(0, 0, 0), h(0, 10, 10), 0.5, 550.0},
		{"past the last bound", h(0, 0, 0), h(0, 0, 4), 0.99, 1000.0},
		{"only the delta counts", h(100, 100, 100), h(100, 110, 110), 0.5, 550.0},
		{"no earlier histogram", Histogram{}, h(10, 10, 10), 0.5, 50.0},
	} {
		if got := deref(quantileMs(tc.a, tc.b, tc.q)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPromTotals(t *testing.T) {
	reg := prometheus.NewRegistry()
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "req_total", Help: "h"}, []string{"code"})
	rep := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reports_total", Help: "h"}, []string{"outcome"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lat_seconds", Help: "h", Buckets: []float64{.1, 1}}, []string{"endpoint"})
	depth := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "depth", Help: "h"}, []string{"endpoint"})
	reg.MustRegister(req, rep, lat, depth)
	depth.WithLabelValues("a").Set(3)
	depth.WithLabelValues("b").Set(1)
	req.WithLabelValues("202").Add(7)
	req.WithLabelValues("429").Add(2)
	req.WithLabelValues("404").Add(1)
	rep.WithLabelValues("delivered").Add(5)
	rep.WithLabelValues("dead").Add(3)
	lat.WithLabelValues("a").Observe(0.05)
	lat.WithLabelValues("b").Observe(0.5)
	lat.WithLabelValues("b").Observe(5)

	ok := func(l map[string]string) bool { return l["code"][0] == '2' }
	p := PromTotals{
		Gatherer:  reg,
		Received:  []Metric{{Name: "req_total", Match: ok}},
		Delivered: []Metric{{Name: "reports_total", Match: func(l map[string]string) bool { return l["outcome"] == "delivered" }}},
		Failed: []Metric{
			{Name: "req_total", Match: func(l map[string]string) bool { return !ok(l) }},
			{Name: "reports_total", Match: func(l map[string]string) bool { return l["outcome"] == "dead" }},
			{Name: "missing_total"},
		},
		Latency: "lat_seconds",
		Queue:   []Metric{{Name: "depth"}},
	}
	got := p.Totals()
	if got.Received != 7 || got.Delivered != 5 || got.Failed != 6 || got.Queue != 4 {
		t.Errorf("totals %+v, want received 7 delivered 5 failed 6 queue 4", got)
	}
	if len(got.Latency.Bounds) != 2 || len(got.Latency.Counts) != 3 ||
		got.Latency.Counts[0] != 1 || got.Latency.Counts[1] != 2 || got.Latency.Counts[2] != 3 {
		t.Errorf("latency %+v, want bounds [.1 1] counts [1 2 3] (both endpoints)", got.Latency)
	}
}

func TestSeriesAPI(t *testing.T) {
	c := newCounters()
	s := NewSampler(SeriesConfig{Totals: c.totals, Interval: time.Second})
	e := newEnv(t, Relay, testToken, func(cfg *Config) { cfg.Series = s })
	now := time.Now()
	s.Sample(now.Add(-2 * time.Second))
	c.add(3, 1, 0, 2, 0.05)
	s.Sample(now.Add(-time.Second))
	var got Series
	e.getJSON("/admin/api/series", 200, &got)
	if got.IntervalMs != 1000 || got.SpanMs != 3600000 || len(got.Points) != 1 || got.Points[0].Received != 3 ||
		got.Points[0].P50 == nil || got.Now == nil {
		t.Errorf("series %+v, want one point of 3 received/s with a p50, and now", got)
	}
	if code, _ := e.do("GET", "/admin/api/series", nil, "Authorization", ""); code != 401 {
		t.Errorf("series without the token: %d, want 401", code)
	}

	bare := newEnv(t, Agent, "")
	var empty map[string]any
	bare.getJSON("/admin/api/series", 200, &empty)
	if pts, ok := empty["points"].([]any); !ok || len(pts) != 0 {
		t.Errorf("series without a sampler: %v, want empty points", empty)
	}
}

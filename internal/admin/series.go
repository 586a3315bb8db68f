package admin

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"
)

// The sampler's defaults: a point every 5 s, an hour of them (720 points, ~60 KiB).
const (
	DefaultSeriesInterval = 5 * time.Second
	DefaultSeriesSpan     = time.Hour
)

// Totals is what a process has counted since it started, as the sampler reads it each
// interval: running totals it turns into per-second rates, a gauge, and a cumulative latency
// histogram it turns into the quantiles of each interval.
type Totals struct {
	Received  float64 // webhooks taken in
	Delivered float64 // webhooks delivered
	Failed    float64 // failures (what counts is the side's to say: see docs/OPERATIONS.md)
	Queue     float64 // webhooks waiting now
	Latency   Histogram
}

// Histogram is a cumulative histogram of delivery latencies in seconds, as Prometheus keeps
// one: Counts[i] observations were ≤ Bounds[i]; Counts[len(Bounds)] is every observation.
type Histogram struct {
	Bounds []float64
	Counts []uint64
}

// Point is one interval of the series: rates per second over the interval that ends at T,
// the queue depth at T, and the latency quantiles of the deliveries in the interval (nil when
// there were none).
type Point struct {
	T         int64    `json:"t"` // Unix milliseconds
	Received  float64  `json:"received"`
	Delivered float64  `json:"delivered"`
	Failed    float64  `json:"failed"`
	Queue     float64  `json:"queue"`
	P50       *float64 `json:"p50_ms"`
	P99       *float64 `json:"p99_ms"`
}

// Series is the answer of GET /admin/api/series: the sampled points, oldest first, and Now,
// the interval in progress (since the last point), so a chart moves before the next sample.
type Series struct {
	IntervalMs int64   `json:"interval_ms"`
	SpanMs     int64   `json:"span_ms"`
	Points     []Point `json:"points"`
	Now        *Point  `json:"now"`
}

// SeriesConfig configures a Sampler. Only Totals is required.
type SeriesConfig struct {
	// Totals reads the process's counters. It is called from the sampler's Run and from API
	// requests, several at once: it must be safe for concurrent use and cheap.
	Totals func() Totals
	// Interval between points; default DefaultSeriesInterval.
	Interval time.Duration
	// Span of history kept; default DefaultSeriesSpan.
	Span time.Duration
}

// Sampler keeps the recent history of a process's counters in memory: a ring of Points, one
// per interval, fed by Run. The relay and the agent own one each (it outlives an admin
// handler replaced on reload) and pass it to Config.Series.
type Sampler struct {
	cfg SeriesConfig

	mu     sync.Mutex
	ring   []Point // capacity Span/Interval; next is where the next point goes
	next   int
	full   bool
	last   Totals // at lastAt; zero time: no baseline yet
	lastAt time.Time
}

// NewSampler builds a Sampler; it samples nothing until Run.
func NewSampler(cfg SeriesConfig) *Sampler {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultSeriesInterval
	}
	if cfg.Span <= 0 {
		cfg.Span = DefaultSeriesSpan
	}
	n := max(1, int(cfg.Span/cfg.Interval))
	return &Sampler{cfg: cfg, ring: make([]Point, 0, n)}
}

// Run takes a baseline, then a point every interval, until ctx ends; it returns nil then.
func (s *Sampler) Run(ctx context.Context) error {
	s.Sample(time.Now())
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			s.Sample(now)
		}
	}
}

// Sample reads the totals at now and adds the point since the previous sample; the first
// call only takes the baseline.
func (s *Sampler) Sample(now time.Time) {
	cur := s.cfg.Totals()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lastAt.IsZero() {
		p := point(s.last, cur, now.Sub(s.lastAt), now)
		if len(s.ring) < cap(s.ring) {
			s.ring = append(s.ring, p)
		} else {
			s.ring[s.next] = p
			s.full = true
		}
		s.next = (s.next + 1) % cap(s.ring)
	}
	s.last, s.lastAt = cur, now
}

// Series returns the points, oldest first, and the interval in progress at now.
func (s *Sampler) Series(now time.Time) Series {
	cur := s.cfg.Totals()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Series{IntervalMs: s.cfg.Interval.Milliseconds(), SpanMs: s.cfg.Span.Milliseconds(), Points: make([]Point, 0, len(s.ring))}
	if s.full {
		out.Points = append(out.Points, s.ring[s.next:]...)
		out.Points = append(out.Points, s.ring[:s.next]...)
	} else {
		out.Points = append(out.Points, s.ring...)
	}
	// Under a tenth of an interval, a rate would be mostly noise.
	if d := now.Sub(s.lastAt); !s.lastAt.IsZero() && d >= s.cfg.Interval/10 {
		p := point(s.last, cur, d, now)
		out.Now = &p
	}
	return out
}

// point is the interval of length d between the totals a and b, ending at end.
func point(a, b Totals, d time.Duration, end time.Time) Point {
	sec := d.Seconds()
	rate := func(x, y float64) float64 {
		if sec <= 0 || y < x { // a counter never goes back; if it did, say nothing
			return 0
		}
		return round3((y - x) / sec)
	}
	p := Point{
		T:         end.UnixMilli(),
		Received:  rate(a.Received, b.Received),
		Delivered: rate(a.Delivered, b.Delivered),
		Failed:    rate(a.Failed, b.Failed),
		Queue:     b.Queue,
	}
	p.P50, p.P99 = quantileMs(a.Latency, b.Latency, 0.5), quantileMs(a.Latency, b.Latency, 0.99)
	return p
}

// quantileMs is the q-quantile in milliseconds of the observations between the cumulative
// histograms a and b, interpolated linearly within its bucket (as Prometheus's
// histogram_quantile does); nil when there were none. One past the last bound is that bound.
func quantileMs(a, b Histogram, q float64) *float64 {
	n := len(b.Bounds)
	if len(b.Counts) != n+1 {
		return nil
	}
	delta := func(i int) float64 {
		if len(a.Counts) == len(b.Counts) && b.Counts[i] >= a.Counts[i] {
			return float64(b.Counts[i] - a.Counts[i])
		}
		return float64(b.Counts[i]) // no (or another) earlier histogram: all of it
	}
	total := delta(n)
	if total == 0 {
		return nil
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i := 0; i < n; i++ {
		c := delta(i)
		if c >= rank {
			v := lower
			if c > below {
				v += (b.Bounds[i] - lower) * (rank - below) / (c - below)
			}
			ms := round3(v * 1000)
			return &ms
		}
		lower, below = b.Bounds[i], c
	}
	ms := round3(lower * 1000)
	return &ms
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// series answers GET /admin/api/series; without a sampler, an empty series.
func (h *Handler) series(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Series == nil {
		writeJSON(w, http.StatusOK, Series{Points: []Point{}})
		return
	}
	writeJSON(w, http.StatusOK, h.cfg.Series.Series(time.Now()))
}

package admin

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metric picks series of a Prometheus metric family: those of family Name whose labels Match
// accepts (nil: all of them).
type Metric struct {
	Name  string
	Match func(labels map[string]string) bool
}

// PromTotals reads Totals from the metrics a process already exports, so the sampler needs
// no counters of its own: Received, Delivered, Failed and Queue are the sums of their
// metrics' counters or gauges, and Latency merges every series of that histogram family (all
// must share their buckets).
type PromTotals struct {
	Gatherer                           prometheus.Gatherer
	Received, Delivered, Failed, Queue []Metric
	Latency                            string
}

// Totals gathers the metrics once and sums them. A gather error leaves out what failed (the
// rates then dip, and the next sample recovers).
func (p PromTotals) Totals() Totals {
	fams, _ := p.Gatherer.Gather()
	byName := make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	sum := func(ms []Metric) float64 {
		var s float64
		for _, m := range ms {
			f := byName[m.Name]
			if f == nil {
				continue
			}
			for _, x := range f.GetMetric() {
				if m.Match != nil && !m.Match(labelMap(x)) {
					continue
				}
				s += x.GetCounter().GetValue() + x.GetGauge().GetValue()
			}
		}
		return s
	}
	t := Totals{Received: sum(p.Received), Delivered: sum(p.Delivered), Failed: sum(p.Failed), Queue: sum(p.Queue)}
	if f := byName[p.Latency]; f != nil {
		for _, x := range f.GetMetric() {
			t.Latency = mergeHistogram(t.Latency, x.GetHistogram())
		}
	}
	return t
}

func labelMap(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		l[lp.GetName()] = lp.GetValue()
	}
	return l
}

// mergeHistogram adds Prometheus histogram h to acc; one with other buckets is left out.
func mergeHistogram(acc Histogram, h *dto.Histogram) Histogram {
	if h == nil {
		return acc
	}
	bs := h.GetBucket()
	if acc.Counts == nil {
		acc.Bounds = make([]float64, 0, len(bs))
		for _, b := range bs {
			acc.Bounds = append(acc.Bounds, b.GetUpperBound())
		}
		acc.Counts = make([]uint64, len(bs)+1)
	}
	if len(bs) != len(acc.Bounds) {
		return acc
	}
	for i, b := range bs {
		if b.GetUpperBound() != acc.Bounds[i] {
			return acc
		}
	}
	for i, b := range bs {
		acc.Counts[i] += b.GetCumulativeCount()
	}
	acc.Counts[len(bs)] += h.GetSampleCount()
	return acc
}

package ui

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"
)

// LatencyMetric is the proxy's request duration histogram, by service, that
// LatencyFrom reads.
const LatencyMetric = "medic_proxy_request_duration_seconds"

// LatencyFrom reads every service's request latency histogram from g (the
// agent's registry), for Snapshot.Latency. It returns nil when g is nil or
// the proxies have not registered the metric.
func LatencyFrom(g prometheus.Gatherer) map[string]Histogram {
	if g == nil {
		return nil
	}
	fams, err := g.Gather()
	if err != nil && len(fams) == 0 {
		return nil
	}
	var out map[string]Histogram
	for _, f := range fams {
		if f.GetName() != LatencyMetric {
			continue
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			if h == nil {
				continue
			}
			svc := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "service" {
					svc = l.GetValue()
				}
			}
			if svc == "" {
				continue
			}
			var hist Histogram
			for _, b := range h.GetBucket() {
				if math.IsInf(b.GetUpperBound(), 1) {
					continue
				}
				hist.Bounds = append(hist.Bounds, b.GetUpperBound())
				hist.Counts = append(hist.Counts, b.GetCumulativeCount())
			}
			hist.Count = h.GetSampleCount()
			if out == nil {
				out = map[string]Histogram{}
			}
			out[svc] = hist
		}
	}
	return out
}

package ui

import (
	"context"
	"time"

	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/supervise"
)

// Snapshot is what the sampler reads every period: the supervisor's and the
// proxies' figures, and each proxied service's cumulative request latency
// histogram (for p99; nil when unknown).
type Snapshot struct {
	Services []supervise.ServiceStatus
	Proxies  []proxy.Stats
	Latency  map[string]Histogram
}

// Histogram is a cumulative Prometheus-style histogram: Counts[i] requests
// took at most Bounds[i] seconds; Count is the total (the +Inf bucket).
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
}

// Series names the sampler writes. Rates are per second over the period;
// error_rate is a fraction of the requests in the period.
//
//	instance/<service>/<index>/rss_bytes  instance/<service>/<index>/cpu (cores)
//	service/<name>/ready  service/<name>/rps  service/<name>/error_rate
//	service/<name>/p99_seconds  service/<name>/retried_rps  service/<name>/shed_rps
//	service/<name>/ejected
func instanceSeries(id, what string) string  { return "instance/" + id + "/" + what }
func serviceSeries(name, what string) string { return "service/" + name + "/" + what }

// sampler turns successive snapshots into one sample per series: gauges as
// read, counters as rates against the previous snapshot. It holds no clock
// and does no I/O; Serve feeds it.
type sampler struct {
	at    time.Time
	cpu   map[string]cpuMark // by instance id
	proxy map[string]proxy.Stats
	lat   map[string]Histogram
}

type cpuMark struct {
	started time.Time // the process the reading belongs to
	seconds float64
}

// step returns the samples of snap taken at now and remembers snap for the
// next rates. The first step yields gauges only.
func (s *sampler) step(now time.Time, snap Snapshot) map[string]float64 {
	out := map[string]float64{}
	dt := now.Sub(s.at).Seconds()
	first := s.at.IsZero() || dt <= 0
	cpu := map[string]cpuMark{}
	for _, svc := range snap.Services {
		out[serviceSeries(svc.Name, "ready")] = float64(svc.Ready)
		for _, in := range svc.Instances {
			if in.PID == 0 {
				continue
			}
			if in.RSSBytes > 0 {
				out[instanceSeries(in.ID, "rss_bytes")] = float64(in.RSSBytes)
			}
			mark := cpuMark{started: in.StartedAt, seconds: in.CPU}
			if prev, ok := s.cpu[in.ID]; ok && !first && prev.started.Equal(mark.started) && mark.seconds >= prev.seconds {
				out[instanceSeries(in.ID, "cpu")] = (mark.seconds - prev.seconds) / dt
			}
			cpu[in.ID] = mark
		}
	}
	prox := map[string]proxy.Stats{}
	for _, p := range snap.Proxies {
		ejected := 0
		for _, in := range p.Instances {
			if in.Breaker == proxy.Open || (in.EjectedUntil != nil && in.EjectedUntil.After(now)) {
				ejected++
			}
		}
		out[serviceSeries(p.Service, "ejected")] = float64(ejected)
		prev, ok := s.proxy[p.Service]
		if ok && !first && p.Requests >= prev.Requests && p.Errors >= prev.Errors && p.Retries >= prev.Retries && p.Shed >= prev.Shed {
			reqs := float64(p.Requests - prev.Requests)
			out[serviceSeries(p.Service, "rps")] = reqs / dt
			out[serviceSeries(p.Service, "retried_rps")] = float64(p.Retries-prev.Retries) / dt
			out[serviceSeries(p.Service, "shed_rps")] = float64(p.Shed-prev.Shed) / dt
			if reqs > 0 {
				out[serviceSeries(p.Service, "error_rate")] = float64(p.Errors-prev.Errors) / reqs
			} else {
				out[serviceSeries(p.Service, "error_rate")] = 0
			}
		}
		prox[p.Service] = p
		if h, ok := snap.Latency[p.Service]; ok && !first {
			if q, ok := quantile(0.99, delta(s.lat[p.Service], h)); ok {
				out[serviceSeries(p.Service, "p99_seconds")] = q
			}
		}
	}
	s.at, s.cpu, s.proxy, s.lat = now, cpu, prox, snap.Latency
	return out
}

// delta returns cur − prev bucket by bucket, or cur when prev does not match
// (other bounds, or a counter went down: the proxy was recreated).
func delta(prev, cur Histogram) Histogram {
	if len(prev.Counts) != len(cur.Counts) || prev.Count > cur.Count {
		return cur
	}
	d := Histogram{Bounds: cur.Bounds, Counts: make([]uint64, len(cur.Counts)), Count: cur.Count - prev.Count}
	for i := range cur.Counts {
		if prev.Counts[i] > cur.Counts[i] || prev.Bounds[i] != cur.Bounds[i] {
			return cur
		}
		d.Counts[i] = cur.Counts[i] - prev.Counts[i]
	}
	return d
}

// quantile estimates the q-quantile of a cumulative histogram by linear
// interpolation inside the bucket that holds it, as Prometheus'
// histogram_quantile does; above the last bound it answers the last bound.
// It reports false when the histogram is empty.
func quantile(q float64, h Histogram) (float64, bool) {
	if h.Count == 0 || len(h.Bounds) == 0 || len(h.Bounds) != len(h.Counts) {
		return 0, false
	}
	rank := q * float64(h.Count)
	lower, below := 0.0, uint64(0)
	for i, b := range h.Bounds {
		if float64(h.Counts[i]) >= rank {
			in := h.Counts[i] - below
			if in == 0 {
				return b, true
			}
			return lower + (b-lower)*(rank-float64(below))/float64(in), true
		}
		lower, below = b, h.Counts[i]
	}
	return h.Bounds[len(h.Bounds)-1], true
}

// Serve samples every SampleEvery into the history until ctx ends. Without
// History or Sample it only waits for ctx. A failed write is logged and the
// loop goes on: charts with a gap beat a dashboard that stops.
func (u *UI) Serve(ctx context.Context) error {
	if u.opts.History == nil || u.opts.Sample == nil {
		<-ctx.Done()
		return nil
	}
	t := u.clock.NewTimer(u.opts.SampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		u.SampleOnce(ctx)
		t.Reset(u.opts.SampleEvery)
	}
}

// SampleOnce takes one sample now and stores it (Serve's step; tests call it).
func (u *UI) SampleOnce(ctx context.Context) {
	u.sampleMu.Lock()
	defer u.sampleMu.Unlock()
	now := u.clock.Now()
	points := u.sampler.step(now, u.opts.Sample())
	if len(points) == 0 {
		return
	}
	if err := u.opts.History.Append(ctx, now, points); err != nil && ctx.Err() == nil {
		u.log.Warn("dashboard history sample not stored", "err", err)
	}
}

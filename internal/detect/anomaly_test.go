package detect_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/detect"
	"github.com/medic-dev/medic/internal/signal"
)

const (
	sampleEvery = 10 * time.Second
	samples     = 720 // two hours
	changeAt    = 420 // the step or spike: 70 minutes in, well after the warm-up
)

// series generates a seeded synthetic signal: level 100 with unit normal
// noise, plus shape(i).
func series(seed uint64, sigma float64, shape func(i int) float64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	out := make([]float64, samples)
	for i := range out {
		out[i] = 100 + sigma*rng.NormFloat64() + shape(i)
	}
	return out
}

func stdDev(xs []float64) float64 {
	var m, s float64
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	for _, x := range xs {
		s += (x - m) * (x - m)
	}
	return math.Sqrt(s / float64(len(xs)-1))
}

// feed evaluates c over xs, one sample every 10s and one evaluation per
// sample, and returns the transitions.
func feed(c *detect.Condition, xs []float64) []detect.Transition {
	store := signal.NewStore(signal.Options{Retention: 3 * time.Hour, MaxPoints: samples})
	l := signal.Labels{"service": "web"}
	var out []detect.Transition
	for i, x := range xs {
		at := t0.Add(time.Duration(i) * sampleEvery)
		store.Add("proxy_latency_p99_seconds", l, at, x)
		out = append(out, c.Eval(at, store)...)
	}
	return out
}

func firings(trs []detect.Transition) []detect.Transition {
	var out []detect.Transition
	for _, tr := range trs {
		if tr.To == detect.StateFiring {
			out = append(out, tr)
		}
	}
	return out
}

const (
	stepCond  = `{signal: proxy_latency_p99_seconds, anomaly: {window: 30m, warmup: 10m, confidence: 0.99}, for: 30s}`
	spikeCond = `{signal: proxy_latency_p99_seconds, anomaly: {window: 30m, warmup: 10m, confidence: 0.99}}`
)

// TestAnomalyStepAndSameVarianceNoise: a step of 10σ fires once it has
// lasted `for`; Gaussian noise with the same overall variance as the whole
// stepped series does not fire at all.
func TestAnomalyStepAndSameVarianceNoise(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		step := series(seed, 1, func(i int) float64 {
			if i >= changeAt {
				return 10
			}
			return 0
		})
		trs := feed(mustCondition(t, stepCond), step)
		f := firings(trs)
		stepTime := t0.Add(changeAt * sampleEvery)
		if len(f) == 0 {
			t.Fatalf("seed %d: the step did not fire:\n%s", seed, reasons(trs))
		}
		if f[0].At.Before(stepTime.Add(30*time.Second)) || f[0].At.After(stepTime.Add(40*time.Second)) {
			t.Errorf("seed %d: fired at +%v after the step, want 30s (for) to 40s:\n%s", seed, f[0].At.Sub(stepTime), reasons(trs))
		}
		if f[0].Confidence < 0.99 || f[0].Value < 105 {
			t.Errorf("seed %d: firing transition %+v", seed, f[0])
		}
		// The baseline learns the new normal: the alert resolves within the hour.
		if last := trs[len(trs)-1]; last.To != detect.StateInactive {
			t.Errorf("seed %d: still %v at the end; the baseline never adapted:\n%s", seed, last.To, reasons(trs))
		}

		sd := stdDev(step)
		noise := series(seed+100, sd, func(int) float64 { return 0 })
		if got := stdDev(noise); math.Abs(got-sd)/sd > 0.1 {
			t.Fatalf("seed %d: noise σ %.2f, step series σ %.2f", seed, got, sd)
		}
		if f := firings(feed(mustCondition(t, stepCond), noise)); len(f) > 0 {
			t.Errorf("seed %d: noise of σ %.2f (the step series' σ) fired:\n%s", seed, sd, reasons(f))
		}
	}
}

// TestAnomalySpikeAndSameVarianceNoise: one sample 12σ high fires at once
// (for: 0) and resolves with the next sample; noise of the same variance as
// the spiked series does not fire.
func TestAnomalySpikeAndSameVarianceNoise(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		spike := series(seed, 1, func(i int) float64 {
			if i == changeAt {
				return 12
			}
			return 0
		})
		trs := feed(mustCondition(t, spikeCond), spike)
		spikeTime := t0.Add(changeAt * sampleEvery)
		if summary(trs) != `inactive>firing{service="web"} firing>inactive{service="web"}` ||
			!trs[0].At.Equal(spikeTime) || !trs[1].At.Equal(spikeTime.Add(sampleEvery)) {
			t.Fatalf("seed %d: want firing at the spike and resolved at the next sample; got\n%s", seed, reasons(trs))
		}
		sd := stdDev(spike)
		noise := series(seed+100, sd, func(int) float64 { return 0 })
		if f := firings(feed(mustCondition(t, spikeCond), noise)); len(f) > 0 {
			t.Errorf("seed %d: noise of σ %.2f (the spiked series' σ) fired:\n%s", seed, sd, reasons(f))
		}
	}
}

// TestAnomalyWarmup: nothing fires before the warm-up, however wild.
func TestAnomalyWarmup(t *testing.T) {
	xs := series(3, 1, func(i int) float64 {
		if i == 30 { // 5 minutes in: inside the 10m warm-up
			return 50
		}
		return 0
	})
	if f := firings(feed(mustCondition(t, spikeCond), xs[:60])); len(f) > 0 {
		t.Errorf("fired during warm-up:\n%s", reasons(f))
	}
}

// TestAnomalyDirection: a drop does not fire an up-only detector.
func TestAnomalyDirection(t *testing.T) {
	drop := series(4, 1, func(i int) float64 {
		if i == changeAt {
			return -12
		}
		return 0
	})
	up := `{signal: proxy_latency_p99_seconds, anomaly: {window: 30m, warmup: 10m, direction: up}}`
	if f := firings(feed(mustCondition(t, up), drop)); len(f) > 0 {
		t.Errorf("a drop fired an up detector:\n%s", reasons(f))
	}
	down := `{signal: proxy_latency_p99_seconds, anomaly: {window: 30m, warmup: 10m, direction: down}}`
	if f := firings(feed(mustCondition(t, down), drop)); len(f) != 1 {
		t.Errorf("a drop fired a down detector %d times", len(f))
	}
}

// TestDetectorCalibration: on noise that fits the baseline, a confidence of
// c is reached in about (1 − c) of the windows, as documented.
func TestDetectorCalibration(t *testing.T) {
	const window = 100 * time.Second // 100 samples of 1s
	d := detect.NewDetector(detect.DetectorConfig{Window: window, Warmup: window, Direction: "both"})
	rng := rand.New(rand.NewPCG(42, 42))
	windows, hit := 0, 0
	seen := false
	for i := range 400_000 {
		s := d.Observe(t0.Add(time.Duration(i)*time.Second), rng.NormFloat64())
		if s.Warm && s.Confidence >= 0.9 {
			seen = true
		}
		if (i+1)%100 == 0 && i > 1000 {
			windows++
			if seen {
				hit++
			}
			seen = false
		}
	}
	rate := float64(hit) / float64(windows)
	if rate < 0.05 || rate > 0.2 {
		t.Errorf("confidence 0.9 reached in %.3f of %d windows; want about 0.1", rate, windows)
	}
}

// TestDetectorSeason: with a daily season, a level that is normal at noon
// and abnormal at midnight is judged by the baseline of its phase.
func TestDetectorSeason(t *testing.T) {
	cfg := detect.DetectorConfig{Window: 30 * time.Minute, Warmup: 30 * time.Minute, Direction: "both",
		Season: 24 * time.Hour, Buckets: 24}
	d := detect.NewDetector(cfg)
	rng := rand.New(rand.NewPCG(9, 9))
	level := func(at time.Time) float64 { // busy by day, quiet by night
		if h := at.Hour(); h >= 8 && h < 20 {
			return 1000
		}
		return 100
	}
	at := t0
	for ; at.Before(t0.Add(3 * 24 * time.Hour)); at = at.Add(time.Minute) {
		x := level(at) * (1 + 0.02*rng.NormFloat64())
		d.Observe(at, x)
	}
	// Day three, 02:00: the daytime level at night.
	at = time.Date(at.Year(), at.Month(), at.Day(), 2, 0, 0, 0, time.UTC)
	if s := d.Observe(at, 1000); s.Confidence < 0.99 {
		t.Errorf("seasonal: daytime level at night scored %+v, want an anomaly", s)
	}
	// 12:00: the daytime level by day is normal for the seasonal baseline.
	at = at.Add(10 * time.Hour)
	if s := d.Observe(at, 1000); s.Confidence > 0.5 {
		t.Errorf("seasonal: daytime level by day scored %+v", s)
	}
}

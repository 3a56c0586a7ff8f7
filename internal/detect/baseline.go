package detect

import (
	"math"
	"time"
)

const (
	// minBaselineSamples: below this many samples a baseline is not trusted
	// (and outliers are not clipped: there is no scale to clip at yet).
	minBaselineSamples = 10
	// clipScales winsorises a sample to level ± clipScales·scale before it
	// updates the baseline, so a spike barely moves it and a lasting step is
	// absorbed over several windows rather than at once (Huber-style
	// robust updating).
	clipScales = 3.0
	// meanAbsToSigma turns a mean absolute deviation into a standard
	// deviation for normal noise: σ = E|X−μ|·√(π/2).
	meanAbsToSigma = 1.2533141373155003
	// relativeFloor is the smallest scale relative to the level: a series
	// that was constant so far is not infinitely surprised by a change of
	// a thousandth.
	relativeFloor = 1e-3
)

// DetectorConfig shapes a Detector (see config.ConditionAnomaly).
type DetectorConfig struct {
	Window       time.Duration // time constant of the exponential weights
	Warmup       time.Duration // no confidence until this much data (and 10 samples)
	Direction    string        // both, up or down
	MinDeviation float64       // floor of the scale
	Season       time.Duration // 0: no seasonality
	Buckets      int           // phases of the season
}

// Score is a Detector's judgement of one sample.
type Score struct {
	Z          float64 // robust z-score: (x − level) / scale
	Confidence float64 // in [0, 1]; 0 while warming up
	Level      float64 // the baseline level before this sample
	Scale      float64 // the baseline's standard deviation estimate before this sample
	Warm       bool
}

// Detector is the robust baseline of one series: an exponentially weighted
// mean of its level and of its absolute deviation from that level (a
// streaming stand-in for the median and MAD), with samples clipped at
// clipScales before they update it. With a season, one such baseline is
// kept per phase of the season.
//
// The confidence of a sample is the probability that normal noise around
// the baseline would not produce a deviation this large in any of the N
// samples of one window (N = window / mean sample interval): with the
// two-sided normal tail p(z), confidence = (1 − p)^N. Noise that fits the
// baseline thus reaches confidence c about (1 − c) of the windows, whatever
// the sampling rate; a step or spike of many scales reaches 1.
type Detector struct {
	cfg     DetectorConfig
	buckets []bucket
	n       int
	first   time.Time
	last    time.Time
	dtAvg   float64 // EWMA of the sample interval, seconds
	prev    Score
}

type bucket struct {
	n        int
	exposure float64 // seconds of samples taken in this bucket
	level    float64
	dev      float64 // EWMA of |x − level|
}

// NewDetector returns an empty baseline.
func NewDetector(cfg DetectorConfig) *Detector {
	n := 1
	if cfg.Season > 0 && cfg.Buckets > 1 {
		n = cfg.Buckets
	}
	return &Detector{cfg: cfg, buckets: make([]bucket, n)}
}

func (d *Detector) bucket(t time.Time) *bucket {
	if len(d.buckets) == 1 {
		return &d.buckets[0]
	}
	phase := time.Duration(t.UnixNano() % int64(d.cfg.Season))
	if phase < 0 {
		phase += d.cfg.Season
	}
	return &d.buckets[int(phase*time.Duration(len(d.buckets))/d.cfg.Season)%len(d.buckets)]
}

// Observe scores x at t against the baseline, then lets x update it. A
// sample not after the previous one is ignored (its score is the previous).
func (d *Detector) Observe(t time.Time, x float64) Score {
	if d.n > 0 && !t.After(d.last) {
		return d.prev
	}
	tau := d.cfg.Window.Seconds()
	dt := 0.0
	if d.n == 0 {
		d.first = t
	} else {
		dt = min(t.Sub(d.last).Seconds(), tau) // a gap forgets, but no more than one window's worth
		if d.dtAvg == 0 {
			d.dtAvg = dt
		} else {
			d.dtAvg += 0.05 * (dt - d.dtAvg) // about the last 20 intervals
		}
	}
	d.n++
	d.last = t
	b := d.bucket(t)
	if b.n == 0 {
		b.n, b.level = 1, x
		d.prev = Score{Level: x}
		return d.prev
	}
	scale := max(b.dev*meanAbsToSigma, d.cfg.MinDeviation, relativeFloor*math.Abs(b.level))
	diff := x - b.level
	s := Score{Level: b.level, Scale: scale}
	switch {
	case scale > 0:
		s.Z = diff / scale
	case diff > 0:
		s.Z = math.Inf(1)
	case diff < 0:
		s.Z = math.Inf(-1)
	}
	s.Warm = b.n >= minBaselineSamples && b.exposure >= d.cfg.Warmup.Seconds()
	if s.Warm {
		s.Confidence = confidence(s.Z, d.cfg.Direction, tau/max(d.dtAvg, 1e-9))
	}
	// Update: exponential weights by elapsed time, but no less than the
	// running mean's 1/n, so that the first samples are averaged fairly.
	alpha := max(1-math.Exp(-dt/tau), 1/float64(b.n+1))
	xc := x
	if b.n >= minBaselineSamples && scale > 0 {
		xc = min(max(x, b.level-clipScales*scale), b.level+clipScales*scale)
	}
	b.dev += alpha * (math.Abs(xc-b.level) - b.dev)
	b.level += alpha * (xc - b.level)
	b.n++
	b.exposure += dt
	d.prev = s
	return s
}

// confidence maps a z-score to the probability that none of n samples of
// normal noise would deviate this far in the given direction (Šidák).
func confidence(z float64, direction string, n float64) float64 {
	var p float64
	switch direction {
	case "up":
		if z <= 0 {
			return 0
		}
		p = 0.5 * math.Erfc(z/math.Sqrt2)
	case "down":
		if z >= 0 {
			return 0
		}
		p = 0.5 * math.Erfc(-z/math.Sqrt2)
	default:
		p = math.Erfc(math.Abs(z) / math.Sqrt2)
	}
	if p >= 1 {
		return 0
	}
	return math.Exp(max(n, 1) * math.Log1p(-p))
}

package load

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: values below 2^subBits ns are exact;
// above, each power of two is split into 2^(subBits-1) linear buckets, so a
// bucket is at most 1/128 of its value wide (under 0.8 % relative error), the
// log-linear layout of HdrHistogram with two significant digits.
const subBits = 8

const half = 1 << (subBits - 1)

// Histogram records durations with bounded relative error in O(1) per value
// and answers quantiles. The zero value is empty and usable. It is not safe
// for concurrent use.
type Histogram struct {
	counts   []uint64
	n        uint64
	sum      float64 // seconds
	min, max time.Duration
}

// bucketOf returns the bucket index of v ≥ 0.
func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	shift := bits.Len64(v) - subBits
	return shift*half + int(v>>shift)
}

// bucketHigh returns the largest value that falls in bucket i.
func bucketHigh(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	shift := i/half - 1
	m := uint64(i - shift*half)
	return (m+1)<<shift - 1
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	i := bucketOf(uint64(d))
	if i >= len(h.counts) {
		grown := make([]uint64, i+1+i/4)
		copy(grown, h.counts)
		h.counts = grown
	}
	h.counts[i]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += d.Seconds()
}

// Merge adds every value recorded in o.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	if len(o.counts) > len(h.counts) {
		grown := make([]uint64, len(o.counts))
		copy(grown, h.counts)
		h.counts = grown
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest recorded value exactly (0 when empty).
func (h *Histogram) Max() time.Duration { return h.max }

// Min returns the smallest recorded value exactly (0 when empty).
func (h *Histogram) Min() time.Duration { return h.min }

// Mean returns the exact mean (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n) * 1e9)
}

// Quantile returns the value at quantile q in [0, 1]: the highest value of
// the bucket holding the ceil(q·n)-th smallest value, clamped to the exact
// minimum and maximum, so it never understates a tail by more than one
// bucket width (HdrHistogram's "highest equivalent value"). Empty: 0.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := time.Duration(bucketHigh(i))
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

// Summary is a histogram's figures in seconds, for reports.
type Summary struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_seconds"`
	P50   float64 `json:"p50_seconds"`
	P90   float64 `json:"p90_seconds"`
	P99   float64 `json:"p99_seconds"`
	P999  float64 `json:"p999_seconds"`
	Max   float64 `json:"max_seconds"`
}

// Summary returns the usual quantiles.
func (h *Histogram) Summary() Summary {
	return Summary{
		Count: h.n, Mean: h.Mean().Seconds(),
		P50: h.Quantile(0.5).Seconds(), P90: h.Quantile(0.9).Seconds(),
		P99: h.Quantile(0.99).Seconds(), P999: h.Quantile(0.999).Seconds(),
		Max: h.max.Seconds(),
	}
}

package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// summary is the distribution of one series. Medians, not means: the machine
// is shared and one descheduled run must not move the figure.
type summary struct {
	N      int `json:"n"`
	Failed int `json:"failed"`
	Median num `json:"median"`
	P90    num `json:"p90"`
	Min    num `json:"min"`
	Max    num `json:"max"`
}

// num is a float that is NaN when there is no value, written as JSON null.
type num float64

func (n num) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(n)) {
		return []byte("null"), nil
	}
	return []byte(strconv.FormatFloat(float64(n), 'f', -1, 64)), nil
}

// summarize takes the samples (any unit) and the count of failed runs.
func summarize(xs []float64, failed int) summary {
	nan := num(math.NaN())
	s := summary{N: len(xs), Failed: failed, Median: nan, P90: nan, Min: nan, Max: nan}
	if len(xs) == 0 {
		return s
	}
	v := slices.Clone(xs)
	slices.Sort(v)
	s.Median = num(quantile(v, 0.5))
	s.P90 = num(quantile(v, 0.9))
	s.Min, s.Max = num(v[0]), num(v[len(v)-1])
	return s
}

// quantile interpolates linearly between closest ranks (NumPy's default, R type 7).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 1 {
		return sorted[0]
	}
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	frac := pos - float64(lo)
	return sorted[lo] + frac*(sorted[lo+1]-sorted[lo])
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fmtMS renders milliseconds with a precision that suits the size.
func fmtMS(n num) string {
	v := float64(n)
	switch {
	case math.IsNaN(v):
		return "–"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// ratio renders a/b as "1.00×", or "–" when either is missing.
func ratio(x, y num) string {
	a, b := float64(x), float64(y)
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

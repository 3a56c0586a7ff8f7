package verdict

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// kthDiff agrees with listing every difference and sorting them.
func TestKthDiffBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for range 50 {
		x := make([]int64, 1+rng.IntN(30))
		y := make([]int64, 1+rng.IntN(30))
		for i := range x {
			x[i] = rng.Int64N(50) // small range: many ties
		}
		for i := range y {
			y[i] = rng.Int64N(50)
		}
		slices.Sort(x)
		slices.Sort(y)
		var all []int64
		for _, a := range x {
			for _, b := range y {
				all = append(all, a-b)
			}
		}
		slices.Sort(all)
		for k := 1; k <= len(all); k++ {
			if got := kthDiff(x, y, k); got != all[k-1] {
				t.Fatalf("x=%v y=%v k=%d: %d, want %d", x, y, k, got, all[k-1])
			}
		}
	}
}

// mannWhitney's U counts the pairs where the canary is slower (ties half),
// and its variance matches the tie-corrected formula on a textbook case.
func TestMannWhitneyU(t *testing.T) {
	x := []int64{1, 2, 2, 5, 7}
	y := []int64{2, 3, 4, 4}
	want := 0.0
	for _, a := range x {
		for _, b := range y {
			switch {
			case a > b:
				want++
			case a == b:
				want += 0.5
			}
		}
	}
	u, sd := mannWhitney(x, y)
	// ties: {2,2,2} t=3 and {4,4} t=2: sum t^3-t = 24+6 = 30; N=9
	// var = 5*4/12 * (10 - 30/72) = 15.972
	if u != want || sd < 3.9965 || sd > 3.9966 {
		t.Fatalf("U %v sd %v, want U %v sd 3.99653", u, sd, want)
	}
}

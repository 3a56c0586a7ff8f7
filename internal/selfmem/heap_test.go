package selfmem

import "testing"

func TestHeapReturnAfterAFlood(t *testing.T) {
	var h HeapReturn
	for _, step := range []struct {
		open int
		due  bool
	}{
		{50, false}, {4000, false}, {5000, false}, // the flood builds up
		{4200, false}, // a fall of 800: not yet
		{3000, false}, // 2000 down, but more than half still open
		{2400, true},  // 2600 down and under half: return
		{2300, false}, // the high mark is now 2400
		{1000, true},  // 1400 down and under half of 2400
		{900, false},  // the high mark is now 1000
	} {
		if got := h.Due(step.open); got != step.due {
			t.Fatalf("Due(%d) = %v with high %d; want %v", step.open, got, h.High, step.due)
		}
	}
}

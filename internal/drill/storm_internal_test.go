package drill

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/drill/load"
)

// TestClassRefusedObserved: a class whose refusals grow is observed once,
// at the edge, and again only after a quiet poll.
func TestClassRefusedObserved(t *testing.T) {
	now := time.Unix(0, 0)
	mk := func(refused uint64) snapshot {
		s := takeSnapshot(nil, nil) // classes are read for supervised services only: fill by hand
		s.refused[classKey{"web", "agent"}] = refused
		s.refused[classKey{"web", "human"}] = 0
		return s
	}
	prev := mk(0)
	var got []string
	for _, n := range []uint64{0, 5, 9, 9, 12} {
		next := mk(n)
		for _, o := range changes(prev, next, now) {
			got = append(got, o.Kind+":"+o.Fields["class"])
		}
		prev = next
	}
	want := []string{ObservedClassRefused + ":agent", ObservedClassRefused + ":agent"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("observations %v, want %v (the edge at 5, and again at 12 after a quiet poll)", got, want)
	}
}

// TestLatencyRatioVerdict: the p99 while injected is judged against the
// worse of before and after.
func TestLatencyRatioVerdict(t *testing.T) {
	t0 := time.Unix(1000, 0)
	mk := Marks{Start: t0, Inject: t0.Add(10 * time.Second), Restore: t0.Add(20 * time.Second), End: t0.Add(30 * time.Second)}
	samples := func(before, during, after time.Duration) []load.Sample {
		var out []load.Sample
		for i := range 300 {
			at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
			lat := before
			if i >= 100 && i < 200 {
				lat = during
			} else if i >= 200 {
				lat = after
			}
			out = append(out, load.Sample{Intended: at, Latency: lat, OK: true, Status: 200})
		}
		return out
	}
	sc := Scenario{Name: "s", Fault: Fault{Kind: "k"}, Detect: []Match{on("x", "any")}, MaxErrorRate: 1, MaxLatencyRatio: 1.5}.withDefaults()
	ev := []Observation{{Time: mk.Inject.Add(time.Second), Kind: "x"}}
	for _, tc := range []struct {
		before, during, after time.Duration
		pass                  bool
	}{
		{10 * time.Millisecond, 14 * time.Millisecond, 10 * time.Millisecond, true},
		{10 * time.Millisecond, 20 * time.Millisecond, 10 * time.Millisecond, false},
		{10 * time.Millisecond, 20 * time.Millisecond, 15 * time.Millisecond, true}, // the host slowed down on its own
	} {
		m := Evaluate(Input{Scenario: sc, Marks: mk, Events: ev, Samples: samples(tc.before, tc.during, tc.after)})
		if m.Passed != tc.pass {
			t.Errorf("%v/%v/%v: passed %v, want %v (%q)", tc.before, tc.during, tc.after, m.Passed, tc.pass, m.Reasons)
		}
	}
}

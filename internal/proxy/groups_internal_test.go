package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

func groupDecision(t *testing.T) *Decision {
	t.Helper()
	one, ratio := 2, 1.0
	cfg := config.Proxy{Listen: "127.0.0.1:0", Retries: config.ProxyRetries{Max: &one, Budget: &ratio, MinPerSecond: new(float64)}}
	cfg.SetDefaults()
	return NewDecision(cfg)
}

// picks makes n first tries at now and returns the groups they went to,
// one letter each (its group's first letter), ending each try at once.
func picks(d *Decision, now time.Time, n int) string {
	var sb strings.Builder
	for range n {
		p := d.First(now)
		if p.backend == nil {
			sb.WriteByte('-')
			continue
		}
		sb.WriteByte(p.backend.grp.name[0])
		d.Done(p.backend)
	}
	return sb.String()
}

// TestGroupWeights is the table of the group decision: which group each
// first try goes to, for a sequence of weight changes and instance states.
func TestGroupWeights(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := groupDecision(t)
	for _, id := range []string{"s0", "s1", "s2"} {
		d.Set(id, "127.0.0.1:1", true) // DefaultGroup: stable
	}
	for _, id := range []string{"g0", "g1"} {
		if err := d.SetGroup(id, "green"); err != nil {
			t.Fatal(err)
		}
		d.Set(id, "127.0.0.1:2", true)
	}
	if err := d.SetGroup("c0", "canary"); err != nil {
		t.Fatal(err)
	}
	d.Set("c0", "127.0.0.1:3", true)

	steps := []struct {
		name string
		do   func() error
		n    int
		want string
	}{
		{"no weights: every instance is a candidate", nil, 0, ""},
		{"stable 100 green 0: only stable", func() error {
			return d.SetWeights(Weights{Groups: []GroupWeight{{"stable", 100}, {"green", 0}}})
		}, 6, "ssssss"},
		{"the switch: green 100 stable 0 in one call", func() error {
			return d.SetWeights(Weights{Groups: []GroupWeight{{"stable", 0}, {"green", 100}}})
		}, 6, "gggggg"},
		{"canary 1 of 4 (smooth: spread, not bunched)", func() error {
			return d.SetWeights(Weights{Groups: []GroupWeight{{"stable", 3}, {"canary", 1}}})
		}, 8, "sscssscs"},
		{"stable 1 green 1 canary 2", func() error {
			return d.SetWeights(Weights{Groups: []GroupWeight{{"stable", 1}, {"green", 1}, {"canary", 2}}})
		}, 8, "csgccsgc"},
		{"canary not ready: its share goes to the others", func() error {
			d.Set("c0", "127.0.0.1:3", false)
			return nil
		}, 4, "sgsg"},
		{"canary back; green all draining", func() error {
			d.Set("c0", "127.0.0.1:3", true)
			d.pool.drain("g0")
			d.pool.drain("g1")
			return d.SetWeights(Weights{Groups: []GroupWeight{{"green", 100}, {"stable", 0}}})
		}, 3, "sss"}, // fallback: no weighted group has a ready instance → any ready one (stable or canary)
		{"weights cleared: old behaviour", func() error {
			d.ClearWeights()
			return nil
		}, 0, ""},
	}
	for _, s := range steps {
		if s.do != nil {
			if err := s.do(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
		if s.n == 0 {
			continue
		}
		got := picks(d, t0, s.n)
		if s.name == "canary back; green all draining" {
			if strings.Contains(got, "g") || strings.Contains(got, "-") {
				t.Errorf("%s: picks %q, want no green and no refusal", s.name, got)
			}
			continue
		}
		if got != s.want {
			t.Errorf("%s: picks %q, want %q", s.name, got, s.want)
		}
	}
}

// TestGroupShareOverMany: with weights 95/5 over 2 000 first tries each
// group gets exactly its share (smooth weighted round robin is exact over
// every window of the weights' sum).
func TestGroupShareOverMany(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := groupDecision(t)
	d.Set("s0", "a:1", true)
	d.Set("s1", "a:2", true)
	_ = d.SetGroup("c0", "canary")
	d.Set("c0", "a:3", true)
	if err := d.SetWeights(Weights{Groups: []GroupWeight{{"stable", 95}, {"canary", 5}}}); err != nil {
		t.Fatal(err)
	}
	got := picks(d, t0, 2000)
	if c := strings.Count(got, "c"); c != 100 {
		t.Errorf("canary got %d of 2000, want 100", c)
	}
}

// TestGroupRetries: a failed try on the canary is retried on the retry
// group (the heaviest by default, or the one named); never on a group of
// weight 0 while another has an instance left.
func TestGroupRetries(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := groupDecision(t)
	get := Traits{Idempotent: true, Replayable: true, Untouched: true}
	d.Set("s0", "a:1", true)
	_ = d.SetGroup("c0", "canary")
	d.Set("c0", "a:2", true)
	_ = d.SetGroup("b0", "baseline")
	d.Set("b0", "a:3", true)
	_ = d.SetGroup("o0", "old")
	d.Set("o0", "a:4", true)

	retryFrom := func(w Weights, first string) string {
		if err := d.SetWeights(w); err != nil {
			t.Fatal(err)
		}
		b := d.pool.byID[first]
		d.Admit(t0, Client{}, false) // the retry budget counts admitted requests
		r := d.Retry(t0, OutcomeReset, 0, get, 1, []*backend{b})
		if r.Next.backend == nil {
			return "none"
		}
		d.Done(r.Next.backend)
		return r.Next.Instance()
	}
	cases := []struct {
		name  string
		w     Weights
		first string
		want  string
	}{
		{"canary's failure goes to stable (heaviest)", Weights{Groups: []GroupWeight{{"stable", 90}, {"canary", 5}, {"baseline", 5}}}, "c0", "s0"},
		{"named retry group", Weights{Groups: []GroupWeight{{"stable", 90}, {"canary", 5}, {"baseline", 5}}, Retry: "baseline"}, "c0", "b0"},
		{"stable's failure goes to the next heaviest", Weights{Groups: []GroupWeight{{"stable", 90}, {"canary", 4}, {"baseline", 6}}}, "s0", "b0"},
		{"weight 0 is skipped while another is left", Weights{Groups: []GroupWeight{{"stable", 100}, {"old", 0}, {"canary", 1}}}, "s0", "c0"},
	}
	for _, c := range cases {
		if got := retryFrom(c.w, c.first); got != c.want {
			t.Errorf("%s: retried on %s, want %s", c.name, got, c.want)
		}
	}
}

// TestGroupOutcomes: each try is counted in its instance's group, by
// status class, with its latency; a reader with a sequence number loses
// nothing until the ring wraps, and is told how many it lost.
func TestGroupOutcomes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := groupDecision(t)
	d.Set("s0", "a:1", true)
	_ = d.SetGroup("c0", "canary")
	d.Set("c0", "a:2", true)
	s0, c0 := d.pool.byID["s0"], d.pool.byID["c0"]
	d.Record(t0, c0, OutcomeOK, 200, 10*time.Millisecond)
	d.Record(t0, c0, OutcomeStatus, 503, 20*time.Millisecond)
	d.Record(t0, c0, OutcomeOK, 404, 5*time.Millisecond)
	d.Record(t0, c0, OutcomeReset, 0, 30*time.Millisecond)
	d.Record(t0, c0, OutcomeTimeout, 0, 2*time.Second)
	d.Record(t0, c0, OutcomeCanceled, 0, time.Second) // the client left: not counted
	d.Record(t0, s0, OutcomeOK, 200, time.Millisecond)

	out, next, lost := d.GroupOutcomes(nil, "canary", 0)
	want := []GroupOutcome{{200, 10 * time.Millisecond}, {503, 20 * time.Millisecond}, {404, 5 * time.Millisecond}, {0, 30 * time.Millisecond}, {0, 2 * time.Second}}
	if len(out) != len(want) || next != 5 || lost != 0 {
		t.Fatalf("canary outcomes %v next %d lost %d, want %v next 5 lost 0", out, next, lost, want)
	}
	for i := range want {
		if out[i] != want[i] {
			t.Errorf("outcome %d: %v, want %v", i, out[i], want[i])
		}
	}
	var canary, stable GroupStats
	for _, g := range d.GroupStats(t0) {
		switch g.Group {
		case "canary":
			canary = g
		case "stable":
			stable = g
		}
	}
	if canary.Requests != 5 || canary.ByClass != [6]uint64{2, 0, 1, 0, 1, 1} || canary.Instances != 1 || canary.InRotation != 1 {
		t.Errorf("canary stats %+v", canary)
	}
	if stable.Requests != 1 || stable.ByClass[2] != 1 {
		t.Errorf("stable stats %+v", stable)
	}
	// Wrap the ring: a reader at 5 loses what was overwritten.
	for range GroupRing + 10 {
		d.Record(t0, c0, OutcomeOK, 200, time.Millisecond)
	}
	out, next, lost = d.GroupOutcomes(out[:0], "canary", 5)
	if len(out) != GroupRing || next != 5+GroupRing+10 || lost != 10 {
		t.Errorf("after the wrap: %d outcomes, next %d, lost %d; want %d, %d, 10", len(out), next, lost, GroupRing, 5+GroupRing+10)
	}
	if out, next, _ = d.GroupOutcomes(nil, "canary", next); len(out) != 0 || next != 5+GroupRing+10 {
		t.Errorf("a reader that kept up reads nothing new: %d, next %d", len(out), next)
	}
}

// TestGroupWeightsRefused: a bad weight set changes nothing.
func TestGroupWeightsRefused(t *testing.T) {
	d := groupDecision(t)
	for _, w := range []Weights{
		{Groups: []GroupWeight{{"", 1}}},
		{Groups: []GroupWeight{{"a", 1}, {"a", 2}}},
		{Groups: []GroupWeight{{"a", -1}}},
		{Groups: []GroupWeight{{"a", 1}}, Retry: "b"},
	} {
		if err := d.SetWeights(w); err == nil {
			t.Errorf("SetWeights(%+v) accepted", w)
		}
	}
	if d.pool.weighted {
		t.Error("a refused weight set turned weighting on")
	}
	if err := d.SetGroup("x", strings.Repeat("n", 65)); err == nil {
		t.Error("a 65-character group name accepted")
	}
}

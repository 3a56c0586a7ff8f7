package rollplan

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// in builds instances from a compact form: "0o" old ready at 0, "1O" old
// not ready, "3n" new ready long ago, "3s" new ready 1s ago (soaking),
// "4N" new not ready.
func in(specs ...string) []Instance {
	var out []Instance
	for _, s := range specs {
		i := Instance{Index: int(s[0] - '0')}
		switch s[1] {
		case 'o':
			i.Ready, i.ReadySince = true, t0.Add(-time.Hour)
		case 'O':
		case 'n':
			i.Current, i.Ready, i.ReadySince = true, true, t0.Add(-time.Hour)
		case 's':
			i.Current, i.Ready, i.ReadySince = true, true, t0.Add(-time.Second)
		case 'N':
			i.Current = true
		}
		out = append(out, i)
	}
	return out
}

func TestNext(t *testing.T) {
	cases := []struct {
		name       string
		want       int
		ins        []Instance
		surge, min int
		soak       time.Duration
		step       string
	}{
		{"surge first", 3, in("0o", "1o", "2o"), 1, 2, 0, "start 3"},
		{"two surge copies", 3, in("0o", "1o", "2o", "3N"), 2, 2, 0, "start 4"},
		{"surge not ready: nothing stops", 3, in("0o", "1o", "2o", "3N"), 1, 2, 0, "wait"},
		{"surge soaking: nothing stops yet", 3, in("0o", "1o", "2o", "3s"), 1, 2, 5 * time.Second, "wait"},
		{"surge soaked: the first old one stops", 3, in("0o", "1o", "2o", "3s"), 1, 2, time.Second, "retire 0"},
		{"its slot gets the new spec", 3, in("1o", "2o", "3n"), 1, 2, 0, "start 0"},
		{"new in slot 0 not ready yet: wait", 3, in("0N", "1o", "2o", "3n"), 1, 2, 0, "wait"},
		{"slot 0 ready: next old one", 3, in("0n", "1o", "2o", "3n"), 1, 2, 0, "retire 1"},
		{"an unready old one goes first, without budget", 3, in("0o", "1o", "2O", "3N"), 1, 2, 0, "retire 2"},
		{"all slots new: the surge copy stops", 3, in("0n", "1n", "2n", "3n"), 1, 2, 0, "retire 3"},
		{"the highest surge copy first", 3, in("0n", "1n", "2n", "3n", "4n"), 2, 2, 0, "retire 4"},
		{"all slots new but one soaking: surge stays", 3, in("0n", "1n", "2s", "3n"), 1, 2, 5 * time.Second, "wait"},
		{"done", 3, in("0n", "1n", "2n"), 1, 2, 0, "done"},
		{"no surge room: in place within the budget", 3, in("0o", "1o", "2o"), 0, 2, 0, "retire 0"},
		{"no surge room: budget holds", 3, in("0N", "1o", "2o"), 0, 2, 0, "wait"},
		{"no surge room, min_available 3: never stops", 3, in("0o", "1o", "2o"), 0, 3, 0, "wait"},
		{"a surge copy of an older spec is replaced", 3, in("0n", "1o", "2o", "3o"), 1, 2, 0, "retire 3"},
		{"in place, min_available 0: still one at a time", 3, in("0N", "1o", "2o"), 0, 0, 0, "wait"},
		{"one instance with surge", 1, in("0o"), 1, 0, 0, "start 1"},
		{"one instance, surge ready", 1, in("0o", "1n"), 1, 0, 0, "retire 0"},
	}
	for _, c := range cases {
		got := Next(State{Now: t0, Want: c.want, Instances: c.ins, MaxSurge: c.surge, MinAvailable: c.min, MinReady: c.soak})
		if !strings.HasPrefix(got.String(), c.step) {
			t.Errorf("%s: %s, want %s", c.name, got, c.step)
		}
	}
}

// TestRolloutNeverBelowWant simulates whole rollouts: each start becomes
// ready after the next step, and checks capacity never drops below Want
// (with surge) or min_available (without), and that a release that never
// becomes ready stops no old instance when surging.
func TestRolloutNeverBelowWant(t *testing.T) {
	for _, c := range []struct {
		want, surge, min int
		healthy          bool
	}{{3, 1, 2, true}, {3, 2, 2, true}, {5, 2, 4, true}, {3, 0, 2, true}, {3, 0, 0, true}, {3, 1, 2, false}, {1, 1, 0, true}} {
		st := State{Now: t0, Want: c.want, MaxSurge: c.surge, MinAvailable: c.min, MinReady: 2 * time.Second}
		for i := range c.want {
			st.Instances = append(st.Instances, Instance{Index: i, Ready: true, ReadySince: t0.Add(-time.Hour)})
		}
		floor := min(c.min, c.want)
		if c.surge > 0 {
			floor = c.want
		}
		var log []string
		steps := 0
		for ; steps < 200; steps++ {
			// Instances started earlier become ready now (if the release is healthy).
			for i := range st.Instances {
				if c.healthy && st.Instances[i].Current && !st.Instances[i].Ready {
					st.Instances[i].Ready, st.Instances[i].ReadySince = true, st.Now
				}
			}
			s := Next(st)
			log = append(log, s.String())
			if s.Kind == Done {
				break
			}
			switch s.Kind {
			case Start:
				st.Instances = append(st.Instances, Instance{Index: s.Index, Current: true})
			case Retire:
				for i, x := range st.Instances {
					if x.Index == s.Index {
						st.Instances = append(st.Instances[:i], st.Instances[i+1:]...)
						break
					}
				}
			case Wait:
				st.Now = st.Now.Add(time.Second)
			}
			ready := 0
			for _, x := range st.Instances {
				if x.Ready {
					ready++
				}
			}
			if ready < floor {
				t.Fatalf("%+v: %d ready after %s, below %d\n%s", c, ready, s, floor, strings.Join(log, "\n"))
			}
			if len(st.Instances) > c.want+max(c.surge, 0) {
				t.Fatalf("%+v: %d instances after %s, over want+surge\n%s", c, len(st.Instances), s, strings.Join(log, "\n"))
			}
		}
		if c.healthy && steps == 200 {
			t.Fatalf("%+v: not done in 200 steps\n%s", c, strings.Join(log, "\n"))
		}
		if !c.healthy {
			old := 0
			for _, x := range st.Instances {
				if !x.Current {
					old++
				}
			}
			if old != c.want {
				t.Errorf("%+v: a release that is never ready stopped %d old instances", c, c.want-old)
			}
		}
	}
}

// TestStagger: with Stagger the second surge copy waits while the first is
// starting (until it is ready, or Stagger after its start: the step's
// Until); an empty slot is never held back (capacity first); 0 starts both.
func TestStagger(t *testing.T) {
	starting := in("0o", "1o", "2o", "3N")
	starting[3].StartedAt = t0.Add(-40 * time.Millisecond)
	st := State{Now: t0, Want: 3, Instances: starting, MaxSurge: 2, MinAvailable: 2, Stagger: 100 * time.Millisecond}
	if got := Next(st); got.Kind != Wait || !got.Until.Equal(t0.Add(60*time.Millisecond)) {
		t.Fatalf("the first copy starting: %s until %v, want wait until +60ms", got, got.Until.Sub(t0))
	}
	st.Now = t0.Add(60 * time.Millisecond)
	if got := Next(st); got.String() != "start 4: surge copy of the new spec" {
		t.Fatalf("stagger elapsed: %s, want start 4", got)
	}
	st.Now = t0
	st.Instances[3].Ready, st.Instances[3].ReadySince = true, t0
	if got := Next(st); got.Kind != Start || got.Index != 4 {
		t.Fatalf("the first copy ready: %s, want start 4", got)
	}
	st.Instances[3].Ready = false
	st.Stagger = 0
	if got := Next(st); got.Kind != Start || got.Index != 4 {
		t.Fatalf("stagger 0: %s, want start 4", got)
	}
	// Not started yet (zero StartedAt) counts as started now.
	st.Stagger = 100 * time.Millisecond
	st.Instances[3].StartedAt = time.Time{}
	if got := Next(st); got.Kind != Wait || !got.Until.Equal(t0.Add(100*time.Millisecond)) {
		t.Fatalf("a copy not started yet: %s until %v, want wait until +100ms", got, got.Until.Sub(t0))
	}
	// An empty slot starts at once, staggering or not.
	st.Instances = in("1o", "2o", "3N")
	if got := Next(st); got.Kind != Start || got.Index != 0 {
		t.Fatalf("an empty slot: %s, want start 0", got)
	}
}

package placement

import (
	"strings"
	"testing"
)

func hosts(spec string) []Host {
	// "h1 h2 !h3 h4:1": ! is lost, :n a capacity.
	var out []Host
	for _, f := range strings.Fields(spec) {
		h := Host{}
		if strings.HasPrefix(f, "!") {
			h.Lost, f = true, f[1:]
		}
		if i := strings.IndexByte(f, ':'); i >= 0 {
			h.Capacity = int(f[i+1] - '0')
			f = f[:i]
		}
		h.Name = f
		out = append(out, h)
	}
	return out
}

func assign(spec string) Assignment {
	a := Assignment{}
	for _, f := range strings.Fields(spec) {
		name, n, _ := strings.Cut(f, "=")
		a[name] = int(n[0] - '0')
	}
	return a
}

func TestTarget(t *testing.T) {
	for _, c := range []struct {
		name  string
		spec  Spec
		hosts string
		want  string
		short int
	}{
		{"even", Spec{Instances: 6}, "h3 h1 h2", "h1=2 h2=2 h3=2", 0},
		{"remainder to the first by name", Spec{Instances: 7}, "h2 h3 h1", "h1=3 h2=2 h3=2", 0},
		{"lost hosts get nothing", Spec{Instances: 6}, "h1 h2 !h3", "h1=3 h2=3", 0},
		{"max_per_host", Spec{Instances: 6, MaxPerHost: 2}, "h1 h2 !h3", "h1=2 h2=2", 2},
		{"capacity below max_per_host", Spec{Instances: 6, MaxPerHost: 3}, "h1:1 h2 h3", "h1=1 h2=3 h3=2", 0},
		{"pinned hosts only", Spec{Instances: 4, Hosts: []string{"h2", "h3"}}, "h1 h2 h3", "h2=2 h3=2", 0},
		{"fewer instances than hosts", Spec{Instances: 2}, "h1 h2 h3", "h1=1 h2=1", 0},
		{"no host", Spec{Instances: 3}, "!h1", "", 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, short := Target(c.spec, hosts(c.hosts))
			if got.String() != c.want || short != c.short {
				t.Fatalf("Target = %q short %d, want %q short %d", got, short, c.want, c.short)
			}
		})
	}
}

func TestNext(t *testing.T) {
	six := Spec{Instances: 6}
	for _, c := range []struct {
		name    string
		spec    Spec
		hosts   string
		cur     string
		ready   string
		want    string
		changed bool
		storm   bool
		why     string
	}{
		{"first placement", six, "h1 h2 h3", "", "", "h1=2 h2=2 h3=2", true, false, "restore 6 instances"},
		{"steady", six, "h1 h2 h3", "h1=2 h2=2 h3=2", "h1=2 h2=2 h3=2", "h1=2 h2=2 h3=2", false, false, "placed as desired"},
		{"steady while instances are not ready", six, "h1 h2 h3", "h1=2 h2=2 h3=2", "h1=1", "h1=2 h2=2 h3=2", false, false, "placed as desired"},
		{"suspect keeps its share", six, "h1 h2 h3", "h1=2 h2=2 h3=2", "h1=2 h2=2", "h1=2 h2=2 h3=2", false, false, "placed as desired"},
		{"lost host: survivors take over at once", six, "h1 h2 !h3", "h1=2 h2=2 h3=2", "h1=2 h2=2", "h1=3 h2=3", true, false, "lost h3 (2): +1 on h1, +1 on h2 take over"},
		{"lost host within max_per_host", Spec{Instances: 6, MaxPerHost: 2}, "h1 h2 !h3", "h1=2 h2=2 h3=2", "h1=2 h2=2", "h1=2 h2=2", true, false, "lost h3 (2): nothing fits on the others; 2 short"},
		{"lost host, take-over up to the cap", Spec{Instances: 6, MaxPerHost: 3}, "h1:2 h2 h3 !h4", "h1=2 h2=1 h3=1 h4=2", "", "h1=2 h2=2 h3=2", true, false, "lost h4 (2)"},
		{"storm: two of three lost", six, "h1 !h2 !h3", "h1=2 h2=2 h3=2", "h1=2", "h1=2 h2=2 h3=2", false, true, "storm brake: 2 of 3 hosts lost"},
		{"half lost is not a storm", Spec{Instances: 4}, "h1 !h2", "h1=2 h2=2", "h1=2", "h1=4", true, false, "lost h2"},
		{"return: one more on the returned host once all are ready", six, "h1 h2 h3", "h1=3 h2=3", "h1=3 h2=3", "h1=3 h2=3 h3=1", true, false, "rebalance: one more on h3"},
		{"return: wait while one is not ready", six, "h1 h2 h3", "h1=3 h2=3", "h1=3 h2=2", "h1=3 h2=3", false, false, "waiting for 6 ready before starting one on h3 (5 ready)"},
		{"return: surge not ready yet", six, "h1 h2 h3", "h1=3 h2=3 h3=1", "h1=3 h2=3", "h1=3 h2=3 h3=1", false, false, "waiting for 7 ready before stopping one on h1 (6 ready)"},
		{"return: surge ready, one fewer on the first over", six, "h1 h2 h3", "h1=3 h2=3 h3=1", "h1=3 h2=3 h3=1", "h1=2 h2=3 h3=1", true, false, "rebalance: one fewer on h1"},
		{"return: second move", six, "h1 h2 h3", "h1=2 h2=3 h3=1", "h1=2 h2=3 h3=1", "h1=2 h2=3 h3=2", true, false, "one more on h3"},
		{"return: last move", six, "h1 h2 h3", "h1=2 h2=3 h3=2", "h1=2 h2=3 h3=2", "h1=2 h2=2 h3=2", true, false, "one fewer on h2"},
		{"ready counts above the assignment count once", six, "h1 h2 h3", "h1=3 h2=3 h3=1", "h1=9", "h1=3 h2=3 h3=1", false, false, "waiting for 7 ready"},
		{"fewer instances desired: one at a time", Spec{Instances: 3}, "h1 h2 h3", "h1=2 h2=2 h3=2", "h1=2 h2=2 h3=2", "h1=1 h2=2 h3=2", true, false, "one fewer on h1"},
		{"unpinned host drains one at a time", Spec{Instances: 2, Hosts: []string{"h1", "h2"}}, "h1 h2 h3", "h1=1 h3=1", "h1=1 h3=1", "h1=1 h2=1 h3=1", true, false, "one more on h2"},
		{"smaller cap with nowhere to go", Spec{Instances: 4, MaxPerHost: 1}, "h1 h2", "h1=2 h2=2", "h1=2 h2=2", "h1=1 h2=2", true, false, "over the cap: one fewer on h1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ready := map[string]int(assign(c.ready))
			st := Next(c.spec, hosts(c.hosts), assign(c.cur), ready)
			if st.Assign.String() != c.want || st.Changed != c.changed || st.Storm != c.storm || !strings.Contains(st.Why, c.why) {
				t.Fatalf("Next = %q changed %v storm %v why %q\nwant %q changed %v storm %v why ~%q",
					st.Assign, st.Changed, st.Storm, st.Why, c.want, c.changed, c.storm, c.why)
			}
		})
	}
}

// TestRebalanceConverges walks a host's return to the end: every step keeps
// at least the desired count assigned and ready (ready follows the
// assignment one step later), never more than one surge, and it ends at
// the target.
func TestRebalanceConverges(t *testing.T) {
	for _, n := range []int{1, 2, 5, 6, 7, 12} {
		s := Spec{Instances: n}
		hs := hosts("h1 h2 h3")
		cur := Next(s, hosts("h1 h2 !h3"), Next(s, hs, nil, nil).Assign, nil).Assign
		ready := map[string]int(cur)
		for step := 0; ; step++ {
			if step > 4*n+4 {
				t.Fatalf("n=%d: no convergence after %d steps (%s)", n, step, cur)
			}
			st := Next(s, hs, cur, ready)
			if st.Assign.Total() > n+1 || st.Assign.Total() < n {
				t.Fatalf("n=%d step %d: %s holds %d instances", n, step, st.Assign, st.Assign.Total())
			}
			if !st.Changed {
				tgt, _ := Target(s, hs)
				if st.Assign.String() != tgt.String() {
					t.Fatalf("n=%d: stuck at %s (%s), target %s", n, st.Assign, st.Why, tgt)
				}
				break
			}
			cur = st.Assign
			ready = map[string]int(cur) // the new instance becomes ready
		}
	}
}

// Package rollplan decides the next step of a rolling deploy with surge:
// a pure function from the instances' states, the desired count and the
// disruption budget to one step (start, retire, wait, done). It reads no
// clock and touches no process, so tables test it; supervise executes it.
//
// The rule: new capacity comes first. Up to MaxSurge instances of the new
// spec start at spare indexes (the ports beyond the service's instances,
// reserved up to remedy.max_instances); once one is ready and has stayed
// ready for MinReady, an old instance is drained and stopped and the new
// spec starts in its slot (its port); the surge copies stop last, once
// every slot runs the new spec and is ready. An old instance is taken out
// only while the ready instances left (old ones, and new ones past their
// MinReady soak) are at least Want, so a new release that never becomes
// ready stops nothing that serves. Without spare ports (MaxSurge 0), old
// instances are replaced in place as far as the budget allows: while
// min(MinAvailable, Want) stay ready, one at a time (the next old instance
// waits for the last new one to be ready).
package rollplan

import (
	"fmt"
	"slices"
	"time"
)

// Instance is one running instance as the plan sees it.
type Instance struct {
	// Index: 0..Want-1 is a slot of the service; Want and above a surge copy.
	Index int
	// Current: it runs the desired spec.
	Current bool
	// Ready, and since when (the zero time when not ready).
	Ready      bool
	ReadySince time.Time
	// StartedAt: when its process started (the zero time: not yet, which
	// counts as now).
	StartedAt time.Time
}

// State is what the plan decides from.
type State struct {
	Now       time.Time
	Want      int // desired instances: slots 0..Want-1
	Instances []Instance
	// MaxSurge: extra instances at once, already capped by the spare ports.
	MaxSurge     int
	MinAvailable int
	MinReady     time.Duration
	// Stagger (deploy.stagger): a surge copy starts only when no instance
	// of the new spec is starting (started, not ready yet), or the one
	// that is started Stagger ago or more. 0: all at once.
	Stagger time.Duration
}

// Kind is what a step does.
type Kind int

const (
	Done   Kind = iota // every slot runs the desired spec, ready, and no surge copy is left
	Start              // start the desired spec at Index
	Retire             // drain and stop the instance at Index
	Wait               // nothing to do until an instance changes or Until passes
)

func (k Kind) String() string {
	return [...]string{"done", "start", "retire", "wait"}[k]
}

// Step is the plan's answer.
type Step struct {
	Kind  Kind
	Index int
	// Until, for Wait: when a soak ends (zero: wait for a readiness change).
	Until  time.Time
	Reason string
}

func (s Step) String() string {
	switch s.Kind {
	case Start, Retire:
		return fmt.Sprintf("%s %d: %s", s.Kind, s.Index, s.Reason)
	case Wait:
		return "wait: " + s.Reason
	}
	return "done"
}

// Next is the next step of the rollout.
func Next(st State) Step {
	byIndex := map[int]Instance{}
	for _, in := range st.Instances {
		byIndex[in.Index] = in
	}
	soaked := func(in Instance) bool {
		return in.Ready && (!in.Current || !st.Now.Before(in.ReadySince.Add(st.MinReady)))
	}
	// 1. An empty slot gets the new spec at once: capacity before anything.
	for i := range st.Want {
		if _, ok := byIndex[i]; !ok {
			return Step{Kind: Start, Index: i, Reason: "empty slot"}
		}
	}
	var old, surge []Instance
	available := 0
	for _, in := range st.Instances {
		if in.Index < st.Want && !in.Current {
			old = append(old, in)
		}
		if in.Index >= st.Want {
			surge = append(surge, in)
		}
		if soaked(in) {
			available++
		}
	}
	need := min(st.MinAvailable, st.Want)
	if st.MaxSurge > 0 {
		// With room to surge, an old instance stops only when a new one
		// has taken its place: capacity never drops below Want.
		need = st.Want
	}

	// 2. Surge copies of the new spec, as many as old instances remain (up to MaxSurge).
	if len(old) > 0 && len(surge) < min(st.MaxSurge, len(old)) {
		if until := staggerUntil(st); !until.IsZero() {
			return Step{Kind: Wait, Until: until, Reason: fmt.Sprintf("a new instance is starting: the next surge copy after it is ready, in %v at the latest (stagger)", until.Sub(st.Now))}
		}
		for i := st.Want; i < st.Want+st.MaxSurge; i++ {
			if _, ok := byIndex[i]; !ok {
				return Step{Kind: Start, Index: i, Reason: "surge copy of the new spec"}
			}
		}
	}
	// A surge copy that runs an older spec (a newer deploy came mid-way)
	// goes first; copies stop from the highest index down, so that they
	// stay contiguous after the slots.
	for _, in := range surge {
		if !in.Current {
			return Step{Kind: Retire, Index: topIndex(surge), Reason: "surge copy of an older spec"}
		}
	}
	pending := 0 // new instances not yet ready and soaked
	for _, in := range st.Instances {
		if in.Current && !soaked(in) {
			pending++
		}
	}

	// 3. Old instances: unready ones go at once (they serve nothing), then
	// ready ones while the budget holds without them.
	if len(old) > 0 {
		slices.SortFunc(old, func(a, b Instance) int {
			if a.Ready != b.Ready {
				if !a.Ready {
					return -1
				}
				return 1
			}
			return a.Index - b.Index
		})
		o := old[0]
		if !o.Ready {
			return Step{Kind: Retire, Index: o.Index, Reason: "old instance, not ready"}
		}
		if available-1 >= need && (st.MaxSurge > 0 || pending == 0) {
			return Step{Kind: Retire, Index: o.Index, Reason: fmt.Sprintf("old instance; %d ready left, min_available %d", available-1, need)}
		}
		return waitFor(st, fmt.Sprintf("a new instance to be ready before instance %d stops (%d ready, min_available %d)", o.Index, available, need))
	}

	// 4. Every slot runs the new spec: once each is ready and soaked, the
	// surge copies stop, highest index first.
	for i := range st.Want {
		if !soaked(byIndex[i]) {
			return waitFor(st, fmt.Sprintf("instance %d to be ready", i))
		}
	}
	if len(surge) > 0 {
		return Step{Kind: Retire, Index: topIndex(surge), Reason: "surge copy no longer needed"}
	}
	return Step{Kind: Done}
}

// staggerUntil is when the latest-started instance of the new spec that is
// not ready yet stops holding the next start back (its start + Stagger),
// or the zero time when none does.
func staggerUntil(st State) time.Time {
	if st.Stagger <= 0 {
		return time.Time{}
	}
	var until time.Time
	for _, in := range st.Instances {
		if !in.Current || in.Ready {
			continue
		}
		started := in.StartedAt
		if started.IsZero() {
			started = st.Now
		}
		if end := started.Add(st.Stagger); end.After(st.Now) && end.After(until) {
			until = end
		}
	}
	return until
}

func topIndex(ins []Instance) int {
	top := ins[0].Index
	for _, in := range ins[1:] {
		top = max(top, in.Index)
	}
	return top
}

// waitFor waits for a readiness change or the earliest soak end.
func waitFor(st State, why string) Step {
	var until time.Time
	for _, in := range st.Instances {
		if in.Current && in.Ready {
			if end := in.ReadySince.Add(st.MinReady); end.After(st.Now) && (until.IsZero() || end.Before(until)) {
				until = end
			}
		}
	}
	if !until.IsZero() {
		why += fmt.Sprintf("; a new instance's min_ready soak ends in %v", until.Sub(st.Now))
	}
	return Step{Kind: Wait, Until: until, Reason: why}
}

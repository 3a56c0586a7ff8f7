// Package placement decides how many instances of a fleet service each host
// runs: a pure function from the service's spec, the hosts as membership
// sees them, the current assignment and the ready counts to the next
// assignment. It restores capacity; it is not a general scheduler.
//
// The rule (docs/fleet.md, "Placement"):
//
//  1. Eligible hosts are those not lost (up or suspect: a suspect host keeps
//     its share until its grace ends), restricted to spec.Hosts when set,
//     sorted by name.
//  2. The target spreads spec.Instances over them one at a time, round robin
//     from the first by name, skipping a host once it holds its cap
//     (max_per_host, and the host's capacity; 0 = no limit). What does not
//     fit is Short.
//  3. A lost host's share drops to 0 at once, and a current assignment below
//     the desired count is raised to the target at once on the eligible
//     hosts: restoring capacity disrupts nothing.
//  4. Otherwise the assignment moves toward the target one instance at a
//     time, never below the desired count of ready instances: with every
//     assigned instance ready, one more starts where the target wants more
//     (a surge of one); once the fleet has more ready than desired, one
//     stops where the target wants fewer.
//  5. Storm: when more than half of the hosts that hold or are meant to hold
//     the service are lost, nothing moves (the brake): the loss of most of a
//     fleet at once is more likely this agent's view or etcd being wrong
//     than most machines dying, and moving everything onto the few left
//     would overload them.
package placement

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Spec is a fleet service's placement.
type Spec struct {
	Instances  int      // desired instances fleet-wide, at least 1
	Hosts      []string // only these hosts; empty: every host of the fleet
	MaxPerHost int      // 0: no limit
}

// Host is one host as the membership sees it.
type Host struct {
	Name     string
	Lost     bool // lost after the grace; an up or suspect host is not
	Capacity int  // instances it can run; 0: no limit
}

// Assignment is the number of instances each host runs. Hosts with 0 are
// left out.
type Assignment map[string]int

// Total is the sum of the counts.
func (a Assignment) Total() int {
	n := 0
	for _, v := range a {
		n += v
	}
	return n
}

// String lists the counts sorted by host: "h1=2 h2=2".
func (a Assignment) String() string {
	var b strings.Builder
	for _, h := range slices.Sorted(maps.Keys(a)) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", h, a[h])
	}
	return b.String()
}

func (a Assignment) clean() Assignment {
	out := Assignment{}
	for h, v := range a {
		if v > 0 {
			out[h] = v
		}
	}
	return out
}

// eligible returns the hosts that may run the service, sorted by name.
func eligible(s Spec, hosts []Host) []Host {
	var out []Host
	for _, h := range hosts {
		if h.Lost || (len(s.Hosts) > 0 && !slices.Contains(s.Hosts, h.Name)) {
			continue
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b Host) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func limit(s Spec, h Host) int {
	c := -1
	if s.MaxPerHost > 0 {
		c = s.MaxPerHost
	}
	if h.Capacity > 0 && (c < 0 || h.Capacity < c) {
		c = h.Capacity
	}
	return c
}

// Target is where the service's instances belong (rule 1 and 2), and how
// many do not fit on any eligible host.
func Target(s Spec, hosts []Host) (t Assignment, short int) {
	el := eligible(s, hosts)
	t = Assignment{}
	left := s.Instances
	for left > 0 {
		placed := false
		for _, h := range el {
			if left == 0 {
				break
			}
			if c := limit(s, h); c >= 0 && t[h.Name] >= c {
				continue
			}
			t[h.Name]++
			left--
			placed = true
		}
		if !placed {
			break
		}
	}
	return t, left
}

// Step is the planner's answer.
type Step struct {
	Assign  Assignment // the next assignment; equal to the current one when nothing moves
	Target  Assignment // where the instances belong
	Short   int        // instances that fit on no eligible host
	Changed bool       // Assign differs from the current assignment
	Storm   bool       // more than half of the hosts are lost: nothing moves
	Why     string     // one line a human reads in the audit
}

// Next is the assignment after current, given the hosts and the number of
// ready instances on each host (rules 3 to 5). A rebalance never adds an
// instance while an assigned one is not ready (so at most Instances+1 are
// assigned) and never removes one while fewer than Instances+1 are ready.
func Next(s Spec, hosts []Host, current Assignment, ready map[string]int) Step {
	cur := current.clean()
	t, short := Target(s, hosts)
	st := Step{Assign: cur, Target: t, Short: short}
	lost := map[string]bool{}
	for _, h := range hosts {
		if h.Lost {
			lost[h.Name] = true
		}
	}
	// Storm (rule 5): the hosts concerned are those assigned or eligible.
	concerned := map[string]bool{}
	for h := range cur {
		concerned[h] = true
	}
	for _, h := range hosts {
		if len(s.Hosts) == 0 || slices.Contains(s.Hosts, h.Name) {
			concerned[h.Name] = true
		}
	}
	nlost := 0
	for h := range concerned {
		if lost[h] {
			nlost++
		}
	}
	if len(concerned) > 0 && 2*nlost > len(concerned) {
		st.Storm = true
		st.Why = fmt.Sprintf("storm brake: %d of %d hosts lost; placement holds %s", nlost, len(concerned), cur)
		return st
	}

	next := maps.Clone(cur)
	var gone []string
	for _, h := range slices.Sorted(maps.Keys(next)) {
		if lost[h] {
			gone = append(gone, fmt.Sprintf("%s (%d)", h, next[h]))
			delete(next, h)
		}
	}
	// Rule 3: restore the desired count at once.
	if next.Total() < s.Instances {
		added := restore(next, t, s.Instances)
		st.Assign = next.clean()
		st.Changed = st.Assign.String() != cur.String()
		switch {
		case !st.Changed:
			st.Why = fmt.Sprintf("%d of %d placed; %d fit on no eligible host", cur.Total(), s.Instances, short)
		case len(gone) > 0 && added == "":
			st.Why = fmt.Sprintf("lost %s: nothing fits on the others; %d short (%s)", strings.Join(gone, ", "), short, st.Assign)
		case len(gone) > 0:
			st.Why = fmt.Sprintf("lost %s: %s take over (%s)", strings.Join(gone, ", "), added, st.Assign)
		default:
			st.Why = fmt.Sprintf("restore %d instances: %s (%s)", s.Instances, added, st.Assign)
		}
		return st
	}
	if next.String() == t.String() {
		st.Assign = next
		st.Changed = next.String() != cur.String()
		st.Why = "placed as desired: " + next.String()
		return st
	}
	// Rule 4: one instance at a time.
	nready := 0
	for h, n := range ready {
		if next[h] > 0 && !lost[h] {
			nready += min(n, next[h])
		}
	}
	var under, over string
	for _, h := range eligible(s, hosts) {
		if under == "" && next[h.Name] < t[h.Name] {
			under = h.Name
		}
	}
	for _, h := range slices.Sorted(maps.Keys(next)) {
		if next[h] > t[h] {
			over = h
			break
		}
	}
	switch {
	case over != "" && next.Total() > s.Instances:
		// A surge (or a smaller desired count): stop one once the others
		// keep the desired count ready.
		if nready < s.Instances+1 {
			st.Why = fmt.Sprintf("rebalance: waiting for %d ready before stopping one on %s (%d ready)",
				s.Instances+1, over, nready)
			break
		}
		next[over]--
		st.Why = fmt.Sprintf("rebalance: one fewer on %s", over)
	case under != "":
		// Start one where the target wants more, once every assigned
		// instance is ready.
		if nready < next.Total() {
			st.Why = fmt.Sprintf("rebalance: waiting for %d ready before starting one on %s (%d ready)",
				next.Total(), under, nready)
			break
		}
		next[under]++
		st.Why = fmt.Sprintf("rebalance: one more on %s", under)
	case over != "":
		// Nowhere to move it (a smaller cap): stop one above its host's cap
		// once every other assigned instance is ready.
		if nready < next.Total() {
			st.Why = fmt.Sprintf("over the cap on %s: waiting for %d ready before stopping one (%d ready)",
				over, next.Total(), nready)
			break
		}
		next[over]--
		st.Why = fmt.Sprintf("over the cap: one fewer on %s", over)
	}
	st.Assign = next.clean()
	st.Changed = st.Assign.String() != cur.String()
	if st.Changed {
		st.Why += " (" + st.Assign.String() + ")"
	}
	return st
}

// restore raises next toward t until it holds want instances, the hosts in
// name order, and says what it added ("" for nothing).
func restore(next, t Assignment, want int) string {
	var added []string
	for _, h := range slices.Sorted(maps.Keys(t)) {
		if next.Total() >= want {
			break
		}
		if d := min(t[h]-next[h], want-next.Total()); d > 0 {
			next[h] += d
			added = append(added, fmt.Sprintf("+%d on %s", d, h))
		}
	}
	return strings.Join(added, ", ")
}

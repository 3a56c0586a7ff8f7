package fleet

import (
	"errors"
	"fmt"
)

// ErrStorm: the storm brake is engaged: more than the configured share of
// the fleet's hosts is unhealthy, so no host takes a fleet-wide action.
var ErrStorm = errors.New("fleet: storm brake engaged")

// DefaultStormShare is the storm brake's default threshold: automation
// pauses when more than half of the hosts are suspect or lost.
const DefaultStormShare = 0.5

// Storm is the storm brake's state over one view: a pure value.
type Storm struct {
	Engaged   bool
	Unhealthy int     // suspect + lost hosts
	Hosts     int     // every host in the view
	Share     float64 // the threshold: engaged when Unhealthy > Share·Hosts
}

// StormOf applies the storm brake's rule to v: engaged when more than share
// of the hosts this agent has seen are suspect or lost. Most of a fleet
// failing at once is more likely a shared cause (the network, etcd, a bad
// rollout, this agent's own view) than many independent faults, and
// remediation piled on the few hosts left makes it worse: the brake stops
// fleet-wide automation until the share is back at or under the threshold.
// An empty view (not seeded yet) is never engaged. share ≥ 1 never engages.
func StormOf(v View, share float64) Storm {
	s := Storm{Hosts: v.Len(), Unhealthy: v.Count(Suspect) + v.Count(Lost), Share: share}
	s.Engaged = s.Hosts > 0 && float64(s.Unhealthy) > share*float64(s.Hosts)
	return s
}

// String says why the brake is (or is not) engaged.
func (s Storm) String() string {
	state := "released"
	if s.Engaged {
		state = "engaged"
	}
	return fmt.Sprintf("storm brake %s: %d of %d hosts suspect or lost (engaged above %g of the hosts)", state, s.Unhealthy, s.Hosts, s.Share)
}

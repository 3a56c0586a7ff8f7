// Package fleet is medic's membership in a fleet of agents on many hosts,
// kept in etcd (never a gossip layer or an election of medic's own). Each
// agent joins with a lease under <prefix>/fleet/<fleet>/hosts/<host> and
// renews it; every agent watches that prefix and keeps a View: a host whose
// key is present is up, a host whose key is gone is suspect, and lost once it
// has stayed gone for the grace (docs/fleet.md gives the argument).
//
// The View is a value stepped with the time as an argument; Agent does the
// I/O around it.
package fleet

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// State is a host's membership state as this agent sees it. The zero value
// is Unknown: never seen.
type State uint8

// Host states.
const (
	Unknown State = iota
	// Up: the host's key is present, so its lease is alive.
	Up
	// Suspect: the key is gone (the lease expired or was revoked) for less than the grace.
	Suspect
	// Lost: the key has been gone for the grace; its share belongs to the others.
	Lost
)

func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Suspect:
		return "suspect"
	case Lost:
		return "lost"
	}
	return "unknown"
}

// MarshalText writes the state's name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name; a name it does not know is Unknown.
func (s *State) UnmarshalText(b []byte) error {
	*s = Unknown
	for _, c := range []State{Up, Suspect, Lost} {
		if string(b) == c.String() {
			*s = c
		}
	}
	return nil
}

// Info is what a host publishes about itself in its key.
type Info struct {
	Host     string `json:"host"`
	Address  string `json:"address"`            // IP or DNS name others reach the host at
	Capacity int    `json:"capacity,omitempty"` // instances it can run; 0 = no limit
	Version  string `json:"version,omitempty"`  // medic's version on the host
	// Started is when the agent joined with this lease (its own clock).
	Started time.Time `json:"started"`
}

// Present is a host key seen in etcd.
type Present struct {
	Info
	Lease int64 // the lease the key is bound to
}

// Member is one host in the view.
type Member struct {
	Info
	State State     `json:"state"`
	Since time.Time `json:"since"` // when it entered State (this agent's clock)
	Lease int64     `json:"lease,omitempty"`
	// GoneAt is when this agent saw the key gone; zero while up.
	GoneAt time.Time `json:"gone_at,omitzero"`
}

// Change is one transition of a host. From == To (Up) is a host that
// rejoined with a new lease or published new information while up; From ==
// Unknown with Initial set is a host already present when the view was
// seeded.
type Change struct {
	Host     string
	From, To State
	Initial  bool
	Reason   string
	Member   Member
}

// View is the membership as this agent sees it. The zero value is not
// usable; make one with NewView. Methods never change the receiver: they
// return the next view.
type View struct {
	grace   time.Duration
	seeded  bool
	members map[string]Member
}

// NewView returns an empty view whose hosts count as lost after grace gone.
func NewView(grace time.Duration) View {
	return View{grace: grace, members: map[string]Member{}}
}

// Observe steps the view to the hosts present in etcd at now, then applies
// the grace (as Tick does).
func (v View) Observe(now time.Time, present map[string]Present) (View, []Change) {
	next := View{grace: v.grace, seeded: true, members: maps.Clone(v.members)}
	var out []Change
	for _, host := range slices.Sorted(maps.Keys(present)) {
		p := present[host]
		p.Host = host // the key names the host, whatever the value says
		old, known := v.members[host]
		m := Member{Info: p.Info, State: Up, Since: now, Lease: p.Lease}
		switch {
		case !known:
			reason := fmt.Sprintf("joined with lease %x", p.Lease)
			if !v.seeded {
				reason = "present when this agent started watching"
			}
			out = append(out, Change{Host: host, From: Unknown, To: Up, Initial: !v.seeded, Reason: reason, Member: m})
		case old.State != Up:
			out = append(out, Change{Host: host, From: old.State, To: Up, Member: m,
				Reason: fmt.Sprintf("returned with lease %x after %v gone", p.Lease, now.Sub(old.GoneAt).Round(time.Millisecond))})
		case old.Lease != p.Lease:
			out = append(out, Change{Host: host, From: Up, To: Up, Member: m,
				Reason: fmt.Sprintf("rejoined with lease %x (was %x): its agent restarted or renewed too late", p.Lease, old.Lease)})
		case old.Info != p.Info:
			m.Since = old.Since
			out = append(out, Change{Host: host, From: Up, To: Up, Member: m,
				Reason: fmt.Sprintf("updated: address %s, capacity %d, version %s", p.Address, p.Capacity, p.Version)})
		default:
			m.Since = old.Since
		}
		next.members[host] = m
	}
	for _, host := range slices.Sorted(maps.Keys(v.members)) {
		old := v.members[host]
		if _, ok := present[host]; ok || old.State != Up {
			continue
		}
		m := old
		m.State, m.Since, m.GoneAt = Suspect, now, now
		next.members[host] = m
		out = append(out, Change{Host: host, From: Up, To: Suspect, Member: m,
			Reason: fmt.Sprintf("key gone (lease %x expired or revoked); lost in %v unless it rejoins", old.Lease, v.grace)})
	}
	next, lost := next.Tick(now)
	return next, append(out, lost...)
}

// Tick marks lost every suspect host gone for the grace at now.
func (v View) Tick(now time.Time) (View, []Change) {
	var out []Change
	next := v
	for _, host := range slices.Sorted(maps.Keys(v.members)) {
		m := v.members[host]
		if m.State != Suspect || now.Sub(m.GoneAt) < v.grace {
			continue
		}
		if len(out) == 0 {
			next.members = maps.Clone(v.members)
		}
		m.State, m.Since = Lost, now
		next.members[host] = m
		out = append(out, Change{Host: host, From: Suspect, To: Lost, Member: m,
			Reason: fmt.Sprintf("key gone for %v (grace %v)", now.Sub(m.GoneAt).Round(time.Millisecond), v.grace)})
	}
	return next, out
}

// Next is the earliest time a Tick can change the view; ok is false when no
// host is suspect.
func (v View) Next() (at time.Time, ok bool) {
	for _, m := range v.members {
		if m.State != Suspect {
			continue
		}
		if d := m.GoneAt.Add(v.grace); !ok || d.Before(at) {
			at, ok = d, true
		}
	}
	return at, ok
}

// Members lists the hosts by name. Lost hosts stay listed until they return:
// the list holds every host this agent has seen since it started.
func (v View) Members() []Member {
	out := make([]Member, 0, len(v.members))
	for _, host := range slices.Sorted(maps.Keys(v.members)) {
		out = append(out, v.members[host])
	}
	return out
}

// Count returns how many hosts are in state s.
func (v View) Count(s State) int {
	n := 0
	for _, m := range v.members {
		if m.State == s {
			n++
		}
	}
	return n
}

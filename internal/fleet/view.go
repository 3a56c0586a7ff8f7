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

	"github.com/medic-dev/medic/internal/pmap"
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
	// EtcdMember is the etcd member the host runs beside it and can stop
	// and start for the etcd-member-loss drill (fleet.etcd_member.name).
	EtcdMember string `json:"etcd_member,omitempty"`
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
// return the next view. A view is persistent (its maps share all but the
// changed hosts with the view it came from), so a step that names one
// host costs O(length of the host name), and a copy costs nothing.
type View struct {
	grace   time.Duration
	seeded  bool
	members pmap.Map[Member]
	suspect pmap.Map[time.Time] // the suspect hosts, by when they went
	count   [Lost + 1]int       // hosts by state
}

// NewView returns an empty view whose hosts count as lost after grace gone.
func NewView(grace time.Duration) View {
	return View{grace: grace}
}

// set makes m host's member, keeping the counts and the suspects.
func (v View) set(host string, m Member) View {
	if old, ok := v.members.Get(host); ok {
		v.count[old.State]--
		if old.State == Suspect {
			v.suspect = v.suspect.Delete(host)
		}
	}
	v.count[m.State]++
	if m.State == Suspect {
		v.suspect = v.suspect.Set(host, m.GoneAt)
	}
	v.members = v.members.Set(host, m)
	return v
}

// present steps host to present with p at now.
func (v View) present(now time.Time, host string, p Present) (View, *Change) {
	p.Host = host // the key names the host, whatever the value says
	old, known := v.members.Get(host)
	m := Member{Info: p.Info, State: Up, Since: now, Lease: p.Lease}
	var c *Change
	switch {
	case !known:
		reason := fmt.Sprintf("joined with lease %x", p.Lease)
		if !v.seeded {
			reason = "present when this agent started watching"
		}
		c = &Change{Host: host, From: Unknown, To: Up, Initial: !v.seeded, Reason: reason, Member: m}
	case old.State != Up:
		c = &Change{Host: host, From: old.State, To: Up, Member: m,
			Reason: fmt.Sprintf("returned with lease %x after %v gone", p.Lease, now.Sub(old.GoneAt).Round(time.Millisecond))}
	case old.Lease != p.Lease:
		c = &Change{Host: host, From: Up, To: Up, Member: m,
			Reason: fmt.Sprintf("rejoined with lease %x (was %x): its agent restarted or renewed too late", p.Lease, old.Lease)}
	case old.Info != p.Info:
		m.Since = old.Since
		c = &Change{Host: host, From: Up, To: Up, Member: m,
			Reason: fmt.Sprintf("updated: address %s, capacity %d, version %s", p.Address, p.Capacity, p.Version)}
	default:
		return v, nil // the same key again: nothing changed
	}
	return v.set(host, m), c
}

// gone steps host, whose key is gone, to suspect at now if it was up.
func (v View) gone(now time.Time, host string) (View, *Change) {
	old, ok := v.members.Get(host)
	if !ok || old.State != Up {
		return v, nil
	}
	m := old
	m.State, m.Since, m.GoneAt = Suspect, now, now
	return v.set(host, m), &Change{Host: host, From: Up, To: Suspect, Member: m,
		Reason: fmt.Sprintf("key gone (lease %x expired or revoked); lost in %v unless it rejoins", old.Lease, v.grace)}
}

// Observe steps the view to the hosts present in etcd at now (the whole
// prefix: every host not in present is gone), then applies the grace (as
// Tick does). It costs O(hosts); Step is the same for the hosts it names.
func (v View) Observe(now time.Time, present map[string]Present) (View, []Change) {
	var out []Change
	next := v
	for _, host := range slices.Sorted(maps.Keys(present)) {
		var c *Change
		if next, c = next.present(now, host, present[host]); c != nil {
			out = append(out, *c)
		}
	}
	for host, m := range v.members.All() {
		if _, ok := present[host]; ok || m.State != Up {
			continue
		}
		var c *Change
		if next, c = next.gone(now, host); c != nil {
			out = append(out, *c)
		}
	}
	next.seeded = true
	next, lost := next.Tick(now)
	return next, append(out, lost...)
}

// Step steps the view at now for the hosts whose key changed: each is
// present with its value, or gone (nil); the other hosts keep their state.
// Then it applies the grace (as Tick does). It is what Observe does with
// the whole prefix when only these keys changed, and costs O(changed ·
// length of a host name + suspect hosts).
func (v View) Step(now time.Time, changed map[string]*Present) (View, []Change) {
	var out []Change
	next := v
	hosts := slices.Sorted(maps.Keys(changed))
	for _, host := range hosts {
		if p := changed[host]; p != nil {
			var c *Change
			if next, c = next.present(now, host, *p); c != nil {
				out = append(out, *c)
			}
		}
	}
	for _, host := range hosts {
		if changed[host] == nil {
			var c *Change
			if next, c = next.gone(now, host); c != nil {
				out = append(out, *c)
			}
		}
	}
	next.seeded = true
	next, lost := next.Tick(now)
	return next, append(out, lost...)
}

// Tick marks lost every suspect host gone for the grace at now.
func (v View) Tick(now time.Time) (View, []Change) {
	var out []Change
	next := v
	for host, goneAt := range v.suspect.All() {
		if now.Sub(goneAt) < v.grace {
			continue
		}
		m, _ := v.members.Get(host)
		m.State, m.Since = Lost, now
		next = next.set(host, m)
		out = append(out, Change{Host: host, From: Suspect, To: Lost, Member: m,
			Reason: fmt.Sprintf("key gone for %v (grace %v)", now.Sub(m.GoneAt).Round(time.Millisecond), v.grace)})
	}
	return next, out
}

// Next is the earliest time a Tick can change the view; ok is false when no
// host is suspect.
func (v View) Next() (at time.Time, ok bool) {
	for _, goneAt := range v.suspect.All() {
		if d := goneAt.Add(v.grace); !ok || d.Before(at) {
			at, ok = d, true
		}
	}
	return at, ok
}

// Members lists the hosts by name. Lost hosts stay listed until they return:
// the list holds every host this agent has seen since it started.
func (v View) Members() []Member {
	out := make([]Member, 0, v.members.Len())
	for _, m := range v.members.All() {
		out = append(out, m)
	}
	return out
}

// Count returns how many hosts are in state s.
func (v View) Count(s State) int {
	if s > Lost {
		return 0
	}
	return v.count[s]
}

// Len is the number of hosts in the view (every state).
func (v View) Len() int { return v.members.Len() }

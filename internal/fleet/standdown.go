package fleet

import (
	"fmt"
	"time"
)

// Isolation is what a host knows about itself when it decides whether to
// stand down its fleet instances: a pure value (docs/fleet.md, "A host cut
// from etcd").
type Isolation struct {
	Joined    bool      // this host holds its lease (its key written under it)
	SafeUntil time.Time // the earliest moment its lease can have expired
	Grace     time.Duration
	// Slack is taken off the grace for the deadline (config.StandDownSlack:
	// the clocks' drift and the reaping of a SIGKILLed group).
	Slack time.Duration
	// PeersKnown: the other hosts' instance addresses it last knew;
	// PeersReached: how many of them answered a TCP connect just now.
	PeersKnown, PeersReached int
}

// StandDownDecision is what StandDown decided: Down, why, and the moment
// every fleet instance of this host must have stopped.
type StandDownDecision struct {
	Down bool
	Why  string
	// By: SafeUntil + Grace − Slack. The others start this host's share
	// no sooner than Grace after its key is gone, and the key goes no
	// sooner than SafeUntil: all of its instances are stopped at once,
	// each with its stop grace cut to end by then (SIGKILL at By).
	By time.Time
}

// StandDown decides whether this host stops its instances of the fleet
// services at now: only when its lease may have expired (SafeUntil passed:
// from then on the others may see it suspect, and they start its share
// elsewhere a grace later) AND it reaches none of the other hosts'
// instances it knew. A host that still reaches its peers is not isolated:
// etcd may be down for every host, in which case nobody takes its share
// over and stopping would only lose capacity; it keeps its instances (the
// count may exceed the desired one by its share, documented). A host that
// knew no peer never stands down (no one would take over).
func StandDown(now time.Time, i Isolation) StandDownDecision {
	d := StandDownDecision{By: i.SafeUntil.Add(i.Grace - i.Slack)}
	switch {
	case i.Joined && now.Before(i.SafeUntil):
		d.Why = "this host holds its lease"
	case now.Before(i.SafeUntil):
		d.Why = fmt.Sprintf("the lease lives until %s at least", i.SafeUntil.Format(time.RFC3339Nano))
	case i.PeersKnown == 0:
		d.Why = "no other host's instance is known: nobody would take this host's share over"
	case i.PeersReached > 0:
		d.Why = fmt.Sprintf("%d of %d other hosts' instances reached: not isolated (etcd may be down for every host)", i.PeersReached, i.PeersKnown)
	default:
		d.Down = true
		left := d.By.Sub(now)
		d.Why = fmt.Sprintf("cut from etcd %v past its lease and none of %d other hosts' instances reached: "+
			"the others count this host lost after the grace %v and run its share; its instances stop at once, within %v (SIGKILL then)",
			now.Sub(i.SafeUntil).Round(time.Millisecond), i.PeersKnown, i.Grace, max(left, 0).Round(time.Millisecond))
	}
	return d
}

// StopGrace is the stop grace of one instance stopped at now for a
// stand-down that must end by: its configured grace, cut to the time left
// (0 when none is: SIGKILL at once).
func StopGrace(now, by time.Time, grace time.Duration) time.Duration {
	return max(min(grace, by.Sub(now)), 0)
}

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
	// PeersKnown: the other hosts' instance addresses it last knew;
	// PeersReached: how many of them answered a TCP connect just now.
	PeersKnown, PeersReached int
}

// StandDown decides whether this host stops its instances of the fleet
// services at now: only when its lease may have expired (SafeUntil passed:
// from then on the others may see it suspect, and they start its share
// elsewhere a grace later, which leaves the whole grace for its instances
// to stop) AND it reaches none of the other hosts' instances it knew. A host that still reaches its peers
// is not isolated: etcd may be down for every host, in which case nobody
// takes its share over and stopping would only lose capacity; it keeps its
// instances (the count may exceed the desired one by its share, documented).
// A host that knew no peer never stands down (no one would take over).
func StandDown(now time.Time, i Isolation) (bool, string) {
	if i.Joined && now.Before(i.SafeUntil) {
		return false, "this host holds its lease"
	}
	if now.Before(i.SafeUntil) {
		return false, fmt.Sprintf("the lease lives until %s at least", i.SafeUntil.Format(time.RFC3339Nano))
	}
	if i.PeersKnown == 0 {
		return false, "no other host's instance is known: nobody would take this host's share over"
	}
	if i.PeersReached > 0 {
		return false, fmt.Sprintf("%d of %d other hosts' instances reached: not isolated (etcd may be down for every host)", i.PeersReached, i.PeersKnown)
	}
	return true, fmt.Sprintf("cut from etcd %v past its lease and none of %d other hosts' instances reached: "+
		"the others count this host lost after the grace %v and run its share", now.Sub(i.SafeUntil).Round(time.Millisecond), i.PeersKnown, i.Grace)
}

package pgha

import (
	"fmt"
	"time"
)

// follow is the step of a member that does not hold the election.
func (m Member) follow(o Observation) (Member, []Action) {
	l, v := o.Local, o.View
	// A postgres that accepts writes without the lease would be a second
	// primary: kill it first, ask questions after. The one exception is the
	// member that is bootstrapping the cluster and has not campaigned yet.
	if l.Running && l.Writable {
		if v.Fresh && v.Leader == nil && v.Init.Member == m.Name && !v.Init.Done {
			return m, []Action{{Kind: ActCampaign, Reason: "bootstrap: the new cluster's first primary takes the lease"}}
		}
		return m, []Action{{Kind: ActFence, Reason: "postgres runs read-write but this member does not hold the lease"}}
	}
	if !v.Fresh {
		m.followSince = time.Time{} // the stream is judged again from the time etcd answers
		// Cut off from etcd: stay read-only; a stopped postgres is started in
		// recovery so that reads keep working.
		// Data that last ran read-write waits: started in recovery now, it
		// would be stopped mid crash recovery once a leader shows up to
		// rewind from (issue 14).
		if l.Busy == "" && l.Initialized && !l.Running && !l.WasPrimary {
			return m, []Action{{Kind: ActStartReplica, Target: m.lastLeader, Reason: "etcd is unreachable: postgres runs read-only"}}
		}
		return m, nil
	}
	if L := v.Leader; L != nil && L.Member != m.Name {
		m.lastLeader = L.Member
		m.refused = ""
		return m.followLeader(o, L)
	}
	if v.Leader != nil {
		return m, nil // a key with our name from a previous run of this agent: wait for its lease to expire
	}
	if !v.Init.Done && !l.Initialized {
		if v.Init.Member == "" && l.Busy == "" {
			return m, []Action{{Kind: ActBootstrap, Reason: "no cluster in etcd and no data: this member initializes the cluster"}}
		}
		return m, nil
	}
	if l.Busy != "" || !l.Initialized {
		return m, nil
	}
	if !l.Running {
		return m, []Action{{Kind: ActStartReplica, Reason: "no leader: postgres starts read-only to take part in the election"}}
	}
	if !l.Ready {
		return m, nil
	}
	ok, why, quiet := m.eligible(o, m.Name, l.LSN)
	if !ok {
		if quiet || why == m.refused {
			return m, nil
		}
		m.refused = why
		return m, []Action{{Kind: ActRefuse, Reason: why}}
	}
	if f := m.request(o); f == nil || f.To != m.Name {
		// Give a better candidate a head start, but not forever: its agent may be stuck.
		if b := m.best(o, ""); b != m.Name && o.Now.Sub(m.noLeaderSince) < 2*m.Policy.LoopWait+m.Policy.RetryTimeout {
			return m, nil
		}
	}
	if o.Now.Before(o.NoCampaignUntil) {
		// A leader in failsafe counts on this promise to stay writable.
		return m, nil
	}
	if !v.FailsafeKey.listed(m.Name) && o.FailsafeReleased == "" {
		why := fmt.Sprintf("the failsafe key of %s does not list this member: a leader in failsafe would not ask it, "+
			"so it does not campaign until a leader lists it or every member the key lists is done with %s", v.FailsafeKey.Leader, v.FailsafeKey.Leader)
		if why == m.refused {
			return m, nil
		}
		m.refused = why
		return m, []Action{{Kind: ActRefuse, Reason: why}}
	}
	if !v.FailsafeKey.listed(m.Name) {
		why += "; " + o.FailsafeReleased
	}
	m.refused = ""
	return m, []Action{{Kind: ActCampaign, Reason: why}}
}

// eligible says whether member name, holding WAL up to lsn, may be promoted
// now. quiet is true when it must simply wait (a request names another member).
func (m Member) eligible(o Observation, name string, lsn uint64) (ok bool, why string, quiet bool) {
	if f := m.request(o); f != nil && f.To != "" {
		if f.To == name {
			kind := "switchover"
			if f.Forced {
				kind = "forced failover"
			}
			return true, fmt.Sprintf("%s to %s requested by %s", kind, name, f.By), false
		}
		return false, "a request names " + f.To, true
	}
	if m.protected(o, name) {
		return false, fmt.Sprintf("%s is protected (databases.<name>.protected): an automatic failover never promotes it; "+
			"an operator's `medic db failover --to %s` does", name, name), false
	}
	if m.Policy.Sync {
		s := o.View.Sync
		if s.Standby == name || (s.Leader == name && s.Leader != "") {
			return true, fmt.Sprintf("the primary is gone and %s holds every acknowledged commit (sync key: leader %s, standby %s)",
				name, orNone(s.Leader), orNone(s.Standby)), false
		}
		return false, fmt.Sprintf("sync mode: %s is not the synchronous standby of %s (standby: %s); promoting it could lose "+
			"acknowledged commits, so no promotion", name, orNone(s.Leader), orNone(s.Standby)), false
	}
	if name == m.Name {
		if ok, why := m.streamedBeforeLoss(); !ok {
			return false, why + ": no promotion", false
		}
	}
	lag := uint64(0)
	if o.View.Optime > lsn {
		lag = o.View.Optime - lsn
	}
	if lag > m.Policy.MaxLag {
		return false, fmt.Sprintf("%s is %d bytes behind the last known primary position %s, more than maximum_lag_on_failover %d: no promotion",
			name, lag, FormatLSN(o.View.Optime), m.Policy.MaxLag), false
	}
	return true, fmt.Sprintf("the primary is gone and %s is %d bytes behind its last known position", name, lag), false
}

// protected reports whether member name is marked protected: this member
// from its own policy, the others from the status they publish.
func (m Member) protected(o Observation, name string) bool {
	if name == m.Name {
		return m.Policy.Protected
	}
	return o.View.Members[name].Protected
}

// best returns the eligible running replica with the most WAL (ties by
// name), this member included, or "" when there is none. except is left out.
func (m Member) best(o Observation, except string) string {
	best, bestLSN := "", uint64(0)
	consider := func(name string, lsn uint64) {
		if name == except {
			return
		}
		if ok, _, _ := m.eligibleIgnoringRequest(o, name, lsn); !ok {
			return
		}
		if best == "" || lsn > bestLSN || (lsn == bestLSN && name < best) {
			best, bestLSN = name, lsn
		}
	}
	if l := o.Local; l.Running && l.Ready && l.InRecovery {
		consider(m.Name, l.LSN)
	}
	for name, mi := range o.View.Members {
		if name == m.Name || !mi.Ready || mi.Role != RoleReplica || mi.Problem != "" || o.Now.Sub(mi.Updated) > m.Policy.TTL {
			continue
		}
		consider(name, mi.LSN)
	}
	return best
}

func (m Member) eligibleIgnoringRequest(o Observation, name string, lsn uint64) (bool, string, bool) {
	o.View.Failover = nil
	return m.eligible(o, name, lsn)
}

// switchoverTarget says whether the leader may hand over to member to.
func (m Member) switchoverTarget(o Observation, to string) (bool, string) {
	if to == "" {
		return false, "switchover refused: no replica is eligible"
	}
	mi, ok := o.View.Members[to]
	switch {
	case !ok:
		return false, fmt.Sprintf("switchover refused: %s is not a member", to)
	case mi.Role != RoleReplica || !mi.Ready:
		return false, fmt.Sprintf("switchover refused: %s is not a running replica (%s)", to, mi.Role)
	case !mi.Streaming || mi.Upstream != m.Name:
		return false, fmt.Sprintf("switchover refused: %s does not stream from %s", to, m.Name)
	case o.Now.Sub(mi.Updated) > m.Policy.TTL:
		return false, fmt.Sprintf("switchover refused: %s has not reported for %v", to, o.Now.Sub(mi.Updated).Round(time.Millisecond))
	}
	if m.Policy.Sync && o.View.Sync.Standby != to {
		return false, fmt.Sprintf("switchover refused: sync mode and %s is not the synchronous standby (%s)", to, orNone(o.View.Sync.Standby))
	}
	if !m.Policy.Sync && o.Local.LSN > mi.LSN && o.Local.LSN-mi.LSN > m.Policy.MaxLag {
		return false, fmt.Sprintf("switchover refused: %s is %d bytes behind, more than maximum_lag_on_failover", to, o.Local.LSN-mi.LSN)
	}
	return true, ""
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// FormatLSN writes a WAL position as PostgreSQL does: "16/B374D848".
func FormatLSN(lsn uint64) string { return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn)) }

// ParseLSN reads "16/B374D848"; "" is 0.
func ParseLSN(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	var hi, lo uint32
	if _, err := fmt.Sscanf(s, "%X/%X", &hi, &lo); err != nil {
		return 0, fmt.Errorf("parse LSN %q: %w", s, err)
	}
	return uint64(hi)<<32 | uint64(lo), nil
}

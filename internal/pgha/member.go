package pgha

import (
	"fmt"
	"sort"
	"time"
)

// Policy holds a member's timings and rules.
type Policy struct {
	TTL                 time.Duration // lease time to live
	LoopWait            time.Duration // period of the loop
	RetryTimeout        time.Duration // bound of one request; the primary's margin for demoting itself
	PrimaryStartTimeout time.Duration // the leader gives up after its postgres is down this long
	MaxLag              uint64        // maximum_lag_on_failover, bytes (async mode)
	Sync                bool          // synchronous replication
	Protected           bool          // this member is never promoted automatically (databases.NAME.protected)
	// Failsafe: while leading, keep the failsafe key and, while etcd does
	// not answer, stay writable on every other member's confirmation
	// (databases.NAME.failsafe).
	Failsafe bool
	// RequestTimeout drops a switchover or failover request not carried out
	// within it. 0 means 30s.
	RequestTimeout time.Duration
	// StreamTimeout bounds how long a replica may follow a serving leader
	// without streaming from it on its timeline: past it the replica is not
	// ready, not eligible, escalated and repaired (rewind, then a re-clone).
	// 0 means 10s.
	StreamTimeout time.Duration
	// Repairs and RepairWindow are the guardrail on repairs of a replica
	// that does not stream (rewinds and re-clones it was not asked for):
	// at most Repairs within RepairWindow, counted across restarts of the
	// agent, so that a flapping host cannot re-clone in a loop. 0 means 3
	// per hour.
	Repairs      int
	RepairWindow time.Duration
}

func (p Policy) streamTimeout() time.Duration {
	if p.StreamTimeout > 0 {
		return p.StreamTimeout
	}
	return 10 * time.Second
}

func (p Policy) requestTimeout() time.Duration {
	if p.RequestTimeout > 0 {
		return p.RequestTimeout
	}
	return 30 * time.Second
}

// Member is the decision state of one cluster member. It does no I/O and
// reads no clock: Step takes the time in the Observation.
type Member struct {
	Name   string
	Policy Policy

	downSince     time.Time // the leader's postgres has not been ready since
	noLeaderSince time.Time // first step that saw no leader
	refused       string    // last refusal recorded, so that it is recorded once per cause
	lastLeader    string
	syncFor       string // candidate synchronous standby being confirmed
	syncLSN       uint64 // primary position when syncFor was first seen synchronous

	// The rejoin state machine of a replica (rejoin.go).
	followFor   string    // leader the replica follows
	followSince time.Time // start of the current attempt to stream from it (reset by every operation)
	streamedAt  time.Time // last step that saw it stream from followFor on followFor's timeline
	repairs     int       // repairs tried for followFor without streaming since
	busy        bool      // the last step saw an operation in flight
	problem     string    // why the replica is not ready ("" when it is), published and recorded once
	recorded    string    // problem last recorded
}

// Problem is why this member, a replica, is not ready and not eligible
// ("" when nothing is known against it).
func (m Member) Problem() string { return m.problem }

// NewMember returns the state of member name under policy p.
func NewMember(name string, p Policy) Member { return Member{Name: name, Policy: p} }

// FenceAt is when a leader whose lease is safe until safeUntil must have
// demoted: RetryTimeout before the lease can expire.
func (p Policy) FenceAt(safeUntil time.Time) time.Time { return safeUntil.Add(-p.RetryTimeout) }

// longOp are the operations that take long for a reason other than a
// postgres that fails to start (a failed start is retried as "retry-wait").
var longOp = map[string]bool{"bootstrap": true, "basebackup": true, "rewind": true, "reclone": true}

// Step decides what to do next.
func (m Member) Step(o Observation) (Member, []Action) {
	// A long operation (initdb, a clone) is not postgres failing to start:
	// primary_start_timeout counts from its end (initdb took 10 s on a
	// loaded 2-CPU machine and the new leader resigned at once).
	if (o.Local.Running && o.Local.Ready) || longOp[o.Local.Busy] {
		m.downSince = time.Time{}
	} else if m.downSince.IsZero() {
		m.downSince = o.Now
	}
	if o.View.Leader != nil {
		m.noLeaderSince = time.Time{}
	} else if m.noLeaderSince.IsZero() {
		m.noLeaderSince = o.Now
	}
	if o.Lease.Rev != 0 {
		return m.lead(o)
	}
	return m.follow(o)
}

// lead is the step of the member that holds the election.
func (m Member) lead(o Observation) (Member, []Action) {
	p, l, now := m.Policy, o.Local, o.Now
	m.refused = ""
	if fenceAt := o.Lease.FenceAt(p); !now.Before(fenceAt) {
		why := fmt.Sprintf("the lease was not renewed in time: it may expire at %s, so postgres is stopped %v before that",
			o.Lease.SafeUntil.Format("15:04:05.000"), p.RetryTimeout)
		if o.Lease.FailsafeUntil.After(p.FenceAt(o.Lease.SafeUntil)) {
			why = fmt.Sprintf("the lease was not renewed and the failsafe could not be confirmed again before %s: "+
				"postgres is stopped before any member that promised not to campaign may do so", fenceAt.Format("15:04:05.000"))
		}
		return m, []Action{{Kind: ActFence, Reason: why}}
	}
	// The watch shows a newer revision in which our key is gone: someone
	// deleted it (a forced failover) or etcd expired it while we could not see.
	if v := o.View; v.Fresh && v.Rev >= o.Lease.Rev && (v.Leader == nil || v.Leader.Rev != o.Lease.Rev) {
		holder := "nobody"
		if v.Leader != nil {
			holder = v.Leader.Member
		}
		return m, []Action{{Kind: ActFence, Reason: "the leader key is no longer ours (now held by " + holder + ")"}}
	}
	if l.Busy != "" {
		return m, nil
	}
	if f := m.request(o); f != nil && f.From != "" && f.From != m.Name && f.To != m.Name {
		return m, []Action{{Kind: ActClearFailover, Reason: fmt.Sprintf("the request was for a switchover from %s, which no longer leads", f.From)}}
	} else if f != nil && f.To != m.Name {
		if f.Forced {
			return m, []Action{{Kind: ActFence, Target: f.To, Reason: fmt.Sprintf("failover to %s forced by %s", f.To, f.By)}}
		}
		to := f.To
		if to == "" {
			to = m.best(o, "")
		}
		if ok, why := m.switchoverTarget(o, to); !ok {
			return m, []Action{{Kind: ActClearFailover, Reason: why}, {Kind: ActRefuse, Target: to, Reason: why}}
		}
		return m, []Action{{Kind: ActHandoff, Target: to, Reason: fmt.Sprintf("switchover to %s requested by %s", to, f.By)}}
	} else if f != nil && l.Running && l.Ready && !l.InRecovery {
		return m, []Action{{Kind: ActClearFailover, Reason: "the requested member already leads"}}
	}
	down := now.Sub(m.downSince)
	switch {
	case !l.Running || !l.Ready:
		if down >= p.PrimaryStartTimeout {
			return m, []Action{{Kind: ActStop, Reason: fmt.Sprintf("postgres not ready for %v", down.Round(time.Millisecond))},
				{Kind: ActResign, Reason: fmt.Sprintf("postgres could not be made ready within primary_start_timeout %v: "+
					"the lease is given up so that a replica takes over", p.PrimaryStartTimeout)}}
		}
		if l.Running {
			return m, nil // starting or recovering
		}
		if l.WasPrimary {
			return m, []Action{{Kind: ActStartPrimary, Reason: "the leader's postgres is not running"}}
		}
		// Data that last ran as a replica is promoted, never just started
		// read-write: promotion opens a new timeline, which pg_rewind needs.
		return m, []Action{{Kind: ActStartReplica, Reason: "the leader's postgres is not running; it is started in recovery, then promoted"}}
	case l.InRecovery:
		return m, []Action{{Kind: ActPromote, Reason: "this member won the election"}}
	}
	var acts []Action
	if v := o.View.Leader; v != nil && v.State != LeaderPrimary {
		acts = append(acts, Action{Kind: ActProclaim, Reason: "postgres accepts writes"})
	}
	if p.Sync {
		m, acts = m.manageSync(o, acts)
	} else {
		if l.SyncStandby != "" {
			acts = append(acts, Action{Kind: ActSetSyncStandby, Reason: "async mode: no synchronous standby"})
		}
		// After a switch from sync mode, the sync key must stop naming a
		// standby that nothing keeps synchronous any more.
		if s := o.View.Sync; s.Standby != "" || (s.Leader != "" && s.Leader != m.Name) {
			acts = append(acts, Action{Kind: ActWriteSync, Reason: "async mode: the sync key names no standby"})
		}
	}
	// Last: a failed write of the failsafe key must not hold up the sync
	// key (the shell stops at the first failed action of a pass).
	if o.View.Fresh {
		acts = append(acts, m.keepFailsafe(o)...)
	}
	return m, acts
}

// keepFailsafe keeps the failsafe key: with the failsafe on, it lists
// every member (and this leader's token); with it off, there is none (a
// leader that will not ask must not restrict who may campaign).
func (m Member) keepFailsafe(o Observation) []Action {
	fi := o.View.FailsafeKey
	if !m.Policy.Failsafe {
		if fi != nil {
			return []Action{{Kind: ActWriteFailsafe, Reason: "the failsafe is off: no failsafe key"}}
		}
		return nil
	}
	self := o.View.Members[m.Name]
	want := failsafeMembers(m.Name, self.REST, o.View)
	if why := failsafeCannotHold(m.Name, want); why != "" {
		// A round could never be confirmed: a key would only keep
		// unlisted members from campaigning.
		if fi != nil {
			return []Action{{Kind: ActWriteFailsafe, Reason: "no failsafe key: " + why}}
		}
		return nil
	}
	if fi != nil && fi.Leader == m.Name && fi.Rev == o.Lease.Rev && fi.sameMembers(want) {
		return nil
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	return []Action{{Kind: ActWriteFailsafe, Target: m.Name, Members: want,
		Reason: fmt.Sprintf("failsafe key written: while etcd does not answer, this leader asks every other member of %v", names)}}
}

// manageSync keeps one streaming replica as the synchronous standby and
// names it in the sync key only once it holds every acknowledged commit.
// Order matters: a standby is removed from the sync key before it stops
// being synchronous, and added to the sync key only after it has been
// synchronous long enough to have flushed every commit acknowledged before.
func (m Member) manageSync(o Observation, acts []Action) (Member, []Action) {
	l, s := o.Local, o.View.Sync
	if s.Leader != m.Name {
		return m, append(acts, Action{Kind: ActWriteSync, Reason: "the sync key names another leader"})
	}
	row := func(name string) (Replication, bool) {
		for _, r := range l.Replicas {
			if r.Member == name {
				return r, true
			}
		}
		return Replication{}, false
	}
	if s.Standby != "" {
		r, ok := row(s.Standby)
		if !ok || !r.Streaming {
			return m, append(acts,
				Action{Kind: ActWriteSync, Reason: fmt.Sprintf("synchronous standby %s stopped streaming: no replica is eligible "+
					"for failover until one catches up", s.Standby)},
				Action{Kind: ActSetSyncStandby, Reason: fmt.Sprintf("writes continue without a synchronous standby (%s left)", s.Standby)})
		}
		if l.SyncStandby != s.Standby {
			acts = append(acts, Action{Kind: ActSetSyncStandby, Target: s.Standby, Reason: "restore the synchronous standby named in the sync key"})
		}
		return m, acts
	}
	var cands []Replication
	for _, r := range l.Replicas {
		// Only members: a pg_basebackup's WAL stream is no standby.
		if _, member := o.View.Members[r.Member]; r.Streaming && member && r.Member != m.Name {
			cands = append(cands, r)
		}
	}
	if len(cands) == 0 {
		if l.SyncStandby != "" {
			acts = append(acts, Action{Kind: ActSetSyncStandby, Reason: "no replica is streaming"})
		}
		return m, acts
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].FlushLSN != cands[j].FlushLSN {
			return cands[i].FlushLSN > cands[j].FlushLSN
		}
		return cands[i].Member < cands[j].Member
	})
	c, ok := row(l.SyncStandby)
	if l.SyncStandby == "" || !ok || !c.Streaming {
		m.syncFor, m.syncLSN = "", 0
		return m, append(acts, Action{Kind: ActSetSyncStandby, Target: cands[0].Member,
			Reason: fmt.Sprintf("%s streams: commits now wait for it", cands[0].Member)})
	}
	if !c.Sync {
		return m, acts // the setting is not in effect yet
	}
	if m.syncFor != c.Member {
		// Every commit acknowledged so far lies at or before l.LSN; every
		// later one waited for c. Once c has flushed l.LSN it holds them all.
		m.syncFor, m.syncLSN = c.Member, l.LSN
		return m, acts
	}
	if c.FlushLSN >= m.syncLSN {
		return m, append(acts, Action{Kind: ActWriteSync, Target: c.Member, Reason: fmt.Sprintf(
			"%s has flushed every acknowledged commit (%s): it is the synchronous standby and the failover candidate", c.Member, FormatLSN(m.syncLSN))})
	}
	return m, acts
}

// request returns the pending switchover or failover request, if it is
// still current.
func (m Member) request(o Observation) *Failover {
	f := o.View.Failover
	if f == nil || o.Now.Sub(f.At) > m.Policy.requestTimeout() {
		return nil
	}
	return f
}

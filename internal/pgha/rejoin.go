package pgha

import (
	"fmt"
	"strings"
	"time"
)

// The rejoin state machine of a member that follows a leader:
//
//	no data                      → clone (pg_basebackup)
//	data last ran read-write     → rewind: crash recovery to the end of its
//	                               own WAL, then pg_rewind against the leader
//	                               (a clone when pg_rewind fails); or, when it
//	                               already streams on the leader's timeline,
//	                               nothing (the mark is cleared)
//	stopped                      → start in recovery, streaming from the leader
//	another upstream             → follow (reload primary_conninfo)
//	running, upstream the leader → streaming on the leader's timeline: ready
//	                               not within StreamTimeout: not ready, not
//	                               eligible, recorded and escalated once; then
//	                               repaired: a rewind first, a re-clone if it
//	                               still does not stream, each inside the
//	                               repair guardrail (Repairs per RepairWindow)
//
// The clock of "not within StreamTimeout" starts when the member begins to
// follow the leader and again after every operation (start, rewind, clone),
// so that a replica is judged on its own attempt, not on its predecessor's.

// followLeader makes postgres a streaming replica of leader L and watches
// that it streams.
func (m Member) followLeader(o Observation, L *LeaderInfo) (Member, []Action) {
	l, now := o.Local, o.Now
	if m.followFor != L.Member {
		m.followFor, m.followSince, m.streamedAt, m.repairs = L.Member, now, time.Time{}, 0
		m.problem = ""
	}
	if m.followSince.IsZero() {
		m.followSince = now // back from a time etcd could not be read
	}
	if l.Busy != "" {
		m.followSince, m.busy = now, true
		return m, nil
	}
	if m.busy {
		m.followSince, m.busy = now, false // the operation just ended
	}
	serving := L.State == LeaderPrimary
	lm, known := o.View.Members[L.Member]
	onTimeline := known && lm.Timeline > 0 && l.Timeline == lm.Timeline
	streams := l.Running && l.Ready && l.InRecovery && l.Streaming && l.Upstream == L.Member && onTimeline
	var acts []Action
	switch {
	case !l.Initialized:
		if serving {
			acts = []Action{{Kind: ActBasebackup, Target: L.Member, Reason: "no data: clone it from the primary " + L.Member}}
		}
	case l.WasPrimary:
		// postgres itself refuses to follow a timeline that forked before
		// its own position: streaming from L on L's timeline proves the
		// data holds nothing L lacks (pg_rewind would have nothing to do).
		if serving && streams {
			acts = []Action{{Kind: ActForgetPrimary, Target: L.Member, Reason: fmt.Sprintf(
				"rejoined as a replica of %s: it streams on %s's timeline %d, so no pg_rewind is needed", L.Member, L.Member, l.Timeline)}}
		} else if serving {
			acts = []Action{{Kind: ActRewind, Target: L.Member, Reason: fmt.Sprintf(
				"rejoining as a replica of %s: this data last ran read-write, so crash recovery and pg_rewind first (never a second primary)", L.Member)}}
		}
	case !l.Running:
		acts = []Action{{Kind: ActStartReplica, Target: L.Member, Reason: "postgres is not running; it follows " + L.Member}}
	case l.Upstream != L.Member:
		acts = []Action{{Kind: ActFollow, Target: L.Member, Reason: "the primary is now " + L.Member}}
	}
	if len(acts) > 0 {
		m.followSince = now
		return m, acts
	}
	if streams {
		m.streamedAt, m.repairs = now, 0
		if m.problem != "" {
			m.problem = ""
			if m.recorded != "" {
				m.recorded = ""
				return m, []Action{{Kind: ActStreaming, Target: L.Member, Reason: fmt.Sprintf("streams from %s on its timeline %d again", L.Member, l.Timeline)}}
			}
		}
		return m, nil
	}
	since := m.followSince
	if m.streamedAt.After(since) {
		since = m.streamedAt
	}
	p := m.Policy
	// Judged only against a leader that shows it serves now: its own
	// member key says it runs as the primary and was written within the
	// TTL (after an etcd outage the leader key can outlive its postgres).
	live := known && lm.Role == RolePrimary && lm.Ready && now.Sub(lm.Updated) <= p.TTL
	if !serving || !live {
		m.followSince = now
		return m, nil
	}
	if now.Sub(since) < p.streamTimeout() {
		return m, nil
	}
	leaderTL := "unknown"
	if known && lm.Timeline > 0 {
		leaderTL = fmt.Sprint(lm.Timeline)
	}
	m.problem = fmt.Sprintf("not streaming from the primary %s within %v (timeline %d, %s's %s; upstream %s, receiver streaming %v)",
		L.Member, p.streamTimeout(), l.Timeline, L.Member, leaderTL, orNone(l.Upstream), l.Streaming)
	if !strings.HasPrefix(m.recorded, m.problem) {
		m.recorded = m.problem
		acts = append(acts, Action{Kind: ActNotStreaming, Target: L.Member, Reason: m.problem +
			": it is not ready and may not be promoted"})
	}
	ok, why := p.repairAllowed(l.Repairs, now)
	if !ok {
		if m.recorded != m.problem+": "+why {
			m.recorded = m.problem + ": " + why
			acts = append(acts, Action{Kind: ActNotStreaming, Target: L.Member, Reason: m.problem + ": " + why})
		}
		return m, acts
	}
	if m.repairs == 0 {
		acts = append(acts, Action{Kind: ActRewind, Target: L.Member, Reason: m.problem +
			": needs rewind (crash recovery, then pg_rewind against " + L.Member + ")"})
	} else {
		acts = append(acts, Action{Kind: ActReclone, Target: L.Member, Reason: m.problem +
			": a rewind did not help, so it needs a re-clone from " + L.Member})
	}
	m.repairs++
	return m, acts
}

func (p Policy) repairWindow() time.Duration {
	if p.RepairWindow > 0 {
		return p.RepairWindow
	}
	return time.Hour
}

// repairAllowed is the guardrail on repairs: at most Repairs within
// RepairWindow, history being the times of earlier repairs.
func (p Policy) repairAllowed(history []time.Time, now time.Time) (bool, string) {
	max, window := p.Repairs, p.repairWindow()
	if max <= 0 {
		max = 3
	}
	n := 0
	for _, t := range history {
		if now.Sub(t) < window {
			n++
		}
	}
	if n >= max {
		return false, fmt.Sprintf("repair refused by the guardrail: %d repairs within %v already (at most %d); a human must look", n, window, max)
	}
	return true, ""
}

// streamedBeforeLoss says whether this member streamed from the last leader
// shortly before the leader was lost; a member that never saw a leader
// since its agent started has no record and is judged by its lag alone.
func (m Member) streamedBeforeLoss() (bool, string) {
	if m.followFor == "" {
		return true, ""
	}
	if m.streamedAt.IsZero() {
		return false, fmt.Sprintf("%s never streamed from the last primary %s: its data may have diverged", m.Name, m.followFor)
	}
	if lost := m.noLeaderSince.Sub(m.streamedAt); lost > m.Policy.TTL+m.Policy.streamTimeout() {
		return false, fmt.Sprintf("%s last streamed from %s %v before the leader was lost", m.Name, m.followFor, lost.Round(time.Millisecond))
	}
	return true, ""
}

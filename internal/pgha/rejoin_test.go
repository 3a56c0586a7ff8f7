package pgha_test

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/pgha"
)

// following is member a, a running replica configured to stream from the
// leader b (timeline 3), but whose WAL receiver does not stream: the state
// issue 14 measured after pg_rewind wrongly said "no rewind required".
func following() pgha.Observation {
	o := pgha.Observation{View: view(), Lease: pgha.Lease{ID: 1}}
	o.View.Leader = leaderKey("b", pgha.LeaderPrimary, 20, 2)
	// b keeps reporting as the primary (its Updated stays within the TTL of every step).
	o.View.Members["b"] = pgha.MemberInfo{Name: "b", Role: pgha.RolePrimary, Ready: true, Timeline: 3, Updated: t0.Add(time.Hour)}
	o.Local = replica()
	o.Local.Upstream, o.Local.Timeline = "b", 2
	return o
}

func TestNotStreamingIsJudgedOnlyAgainstALiveLeader(t *testing.T) {
	// After an etcd outage the leader key of a fenced primary can come back
	// with its lease: its member key is old, so the replica waits instead of
	// "repairing" itself against a postgres that is down.
	o := following()
	mi := o.View.Members["b"]
	mi.Updated = t0
	o.View.Members["b"] = mi
	run(t, pgha.NewMember("a", policy), o, []step{
		{at: 0, want: none()},
		{at: 30 * time.Second, want: none()},
		// b reports again: the clock runs from the last step that saw it silent (30 s).
		{at: 31 * time.Second, obs: func(o *pgha.Observation) { mi.Updated = t0.Add(time.Hour); o.View.Members["b"] = mi }, want: none()},
		{at: 39 * time.Second, want: none()},
		{at: 40 * time.Second, want: kinds(pgha.ActNotStreaming, pgha.ActRewind)},
	})
	// etcd could not be read for a while: the replica is judged from the time it answers again.
	o = following()
	run(t, pgha.NewMember("a", policy), o, []step{
		{at: 0, want: none()},
		{at: 5 * time.Second, obs: func(o *pgha.Observation) { o.View.Fresh = false }, want: none()},
		{at: 20 * time.Second, obs: func(o *pgha.Observation) { o.View.Fresh = true }, want: none()},
		{at: 29 * time.Second, want: none()},
		{at: 30 * time.Second, want: kinds(pgha.ActNotStreaming, pgha.ActRewind)},
	})
}

func TestReplicaNotStreamingIsReportedAndRepaired(t *testing.T) {
	m := pgha.NewMember("a", policy)
	run(t, m, following(), []step{
		{at: 0, want: none()},
		{at: 9 * time.Second, want: none()},
		// 10 s (the default bound) without streaming from b on b's timeline:
		// recorded and escalated once, then a rewind.
		{at: 10 * time.Second, want: kinds(pgha.ActNotStreaming, pgha.ActRewind), target: "b", reason: "not streaming from the primary b"},
		{at: 10500 * time.Millisecond, obs: func(o *pgha.Observation) {
			o.Local.Busy, o.Local.Repairs = "rewind", []time.Time{t0.Add(10 * time.Second)}
		}, want: none()},
		// The rewind is over and postgres runs again: the clock starts anew.
		{at: 15 * time.Second, obs: func(o *pgha.Observation) { o.Local.Busy = "" }, want: none()},
		{at: 24 * time.Second, want: none()},
		// Still not streaming: the rewind did not help, so a re-clone.
		{at: 25 * time.Second, want: kinds(pgha.ActReclone), target: "b", reason: "re-clone"},
		{at: 26 * time.Second, obs: func(o *pgha.Observation) {
			o.Local.Busy = "reclone"
			o.Local.Repairs = append(o.Local.Repairs, t0.Add(25*time.Second))
		}, want: none()},
		// The clone streams on b's timeline: ready again, and said so.
		{at: 40 * time.Second, obs: func(o *pgha.Observation) { o.Local.Busy, o.Local.Streaming, o.Local.Timeline = "", true, 3 },
			want: kinds(pgha.ActStreaming), target: "b"},
		{at: 41 * time.Second, want: none()},
	})
}

func TestRepairGuardrailStopsALoop(t *testing.T) {
	o := following()
	// Three repairs within the hour already (the agent restarted since: the
	// history comes from the marker file, not from memory).
	o.Local.Repairs = []time.Time{t0.Add(-50 * time.Minute), t0.Add(-30 * time.Minute), t0.Add(-time.Minute)}
	run(t, pgha.NewMember("a", policy), o, []step{
		{at: 0, want: none()},
		{at: 10 * time.Second, want: kinds(pgha.ActNotStreaming, pgha.ActNotStreaming), reason: "not streaming"},
		{at: 11 * time.Second, want: none()}, // recorded once
		{at: 9 * time.Minute, want: none()},
		// The oldest repair leaves the window: one more is allowed.
		{at: 10*time.Minute + time.Second, want: kinds(pgha.ActRewind)},
	})
}

func TestNotStreamingReplicaIsNotEligible(t *testing.T) {
	// a followed b without ever streaming from it; b is lost. In async mode
	// a's LSN looks close enough, but its data may have diverged: no campaign.
	o := following()
	m := pgha.NewMember("a", policy)
	run(t, m, o, []step{
		{at: 0, want: none()},
		{at: 5 * time.Second, obs: func(o *pgha.Observation) { o.View.Leader = nil; o.View.Optime = 1000 },
			want: kinds(pgha.ActRefuse), reason: "never streamed from the last primary b"},
	})
	// The same member, streaming until b was lost, is eligible.
	o = following()
	o.Local.Streaming, o.Local.Timeline = true, 3
	run(t, pgha.NewMember("a", policy), o, []step{
		{at: 0, want: none()},
		{at: 4 * time.Second, obs: func(o *pgha.Observation) {
			o.View.Leader = nil
			o.View.Optime = 1000
			o.Local.Streaming = false
		}, want: kinds(pgha.ActCampaign)},
	})
}

func TestOldPrimaryWaitsForEtcdBeforeStarting(t *testing.T) {
	// The agent restarts on data that last ran read-write and etcd has not
	// answered yet: starting it in recovery now would see it stopped mid
	// crash recovery for the rewind (issue 14); it waits.
	o := pgha.Observation{View: pgha.View{}, Lease: pgha.Lease{}}
	o.Local = pgha.Local{Initialized: true, WasPrimary: true}
	run(t, pgha.NewMember("a", policy), o, []step{{at: 0, want: none()}})
	o.Local.WasPrimary = false
	run(t, pgha.NewMember("a", policy), o, []step{{at: 0, want: kinds(pgha.ActStartReplica)}})
}

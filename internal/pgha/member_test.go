package pgha_test

import (
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/pgha"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// The defaults: lease_ttl 4s, loop_wait 500ms, retry_timeout 500ms.
var policy = pgha.Policy{TTL: 4 * time.Second, LoopWait: 500 * time.Millisecond, RetryTimeout: 500 * time.Millisecond,
	PrimaryStartTimeout: 10 * time.Second, MaxLag: 1 << 20}

func syncPolicy() pgha.Policy { p := policy; p.Sync = true; return p }

type step struct {
	at     time.Duration
	obs    func(o *pgha.Observation) // changes to the scenario's observation, kept for later steps
	want   []pgha.ActionKind
	target string // target of the first action, when set
	reason string // substring of the first action's reason, when set
}

// run plays steps against one member; each step's observation starts from the previous one.
func run(t *testing.T, m pgha.Member, o pgha.Observation, steps []step) {
	t.Helper()
	for i, s := range steps {
		o.Now = t0.Add(s.at)
		if s.obs != nil {
			s.obs(&o)
		}
		var acts []pgha.Action
		m, acts = m.Step(o)
		var kinds []pgha.ActionKind
		for _, a := range acts {
			kinds = append(kinds, a.Kind)
			if a.Reason == "" && a.Kind != pgha.ActNone {
				t.Errorf("step %d (+%v): %v has no reason", i, s.at, a.Kind)
			}
		}
		if !sameKinds(kinds, s.want) {
			t.Fatalf("step %d (+%v): got %v, want %v", i, s.at, acts, s.want)
		}
		if s.target != "" && acts[0].Target != s.target {
			t.Fatalf("step %d (+%v): target %q, want %q (%v)", i, s.at, acts[0].Target, s.target, acts)
		}
		if s.reason != "" && !strings.Contains(acts[0].Reason, s.reason) {
			t.Fatalf("step %d (+%v): reason %q lacks %q", i, s.at, acts[0].Reason, s.reason)
		}
	}
}

func sameKinds(a, b []pgha.ActionKind) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func replica() pgha.Local {
	return pgha.Local{Initialized: true, Running: true, Ready: true, InRecovery: true, LSN: 1000, ReplayLSN: 1000, Timeline: 1}
}

func primary() pgha.Local {
	return pgha.Local{Initialized: true, Running: true, Ready: true, Writable: true, WasPrimary: true, LSN: 5000, Timeline: 1}
}

func leaderKey(member, state string, rev, lease int64) *pgha.LeaderInfo {
	return &pgha.LeaderInfo{Member: member, State: state, Rev: rev, Lease: lease, Postgres: "127.0.0.1:5432"}
}

func view() pgha.View {
	return pgha.View{Rev: 100, Fresh: true, Init: pgha.InitInfo{Member: "a", Done: true}, Members: map[string]pgha.MemberInfo{}}
}

// leading is member a holding the lease (rev 10, lease 1) as a running primary, renewed at t0.
func leading() pgha.Observation {
	v := view()
	v.Leader = leaderKey("a", pgha.LeaderPrimary, 10, 1)
	return pgha.Observation{Local: primary(), View: v, Lease: pgha.Lease{ID: 1, Rev: 10, SafeUntil: t0.Add(4 * time.Second)}}
}

func none() []pgha.ActionKind { return nil }

func kinds(k ...pgha.ActionKind) []pgha.ActionKind { return k }

func TestFencing(t *testing.T) {
	// Renewed at t0: the lease lives until at least t0+4s; the primary must be
	// down by t0+3.5s (retry_timeout before), whatever etcd says meanwhile.
	run(t, pgha.NewMember("a", policy), leading(), []step{
		{at: 0, want: none()},
		{at: 2 * time.Second, obs: func(o *pgha.Observation) { o.View.Fresh = false }, want: none()}, // etcd silent, still safe
		{at: 3499 * time.Millisecond, want: none()},
		{at: 3500 * time.Millisecond, want: kinds(pgha.ActFence), reason: "not renewed in time"},
	})
	// A renewal moves the deadline.
	run(t, pgha.NewMember("a", policy), leading(), []step{
		{at: 3 * time.Second, obs: func(o *pgha.Observation) { o.Lease.SafeUntil = t0.Add(6 * time.Second) }, want: none()},
		{at: 5 * time.Second, want: none()},
		{at: 5500 * time.Millisecond, want: kinds(pgha.ActFence)},
	})
	// A 2s stall of the agent right after a renewal that was itself sent a loop late
	// does not reach the fence: no false failover at the defaults.
	run(t, pgha.NewMember("a", policy), leading(), []step{
		{at: 500*time.Millisecond + 2*time.Second, want: none()},
	})
}

func TestLeaderKeyLost(t *testing.T) {
	run(t, pgha.NewMember("a", policy), leading(), []step{
		// The watch has not caught up with our campaign yet: not a loss.
		{at: 0, obs: func(o *pgha.Observation) { o.View.Leader = nil; o.View.Rev = 5 }, want: none()},
		// A newer revision without our key: someone deleted it (forced failover).
		{at: time.Second, obs: func(o *pgha.Observation) {
			o.View.Rev = 120
			o.View.Leader = leaderKey("b", pgha.LeaderPromoting, 110, 2)
		}, want: kinds(pgha.ActFence), reason: "held by b"},
	})
}

func TestElectionAsync(t *testing.T) {
	o := pgha.Observation{Local: replica(), View: view(), Lease: pgha.Lease{ID: 2}}
	o.View.Optime = 1000 + 4096 // the primary was 4 KiB ahead when it died
	run(t, pgha.NewMember("b", policy), o, []step{
		{at: 0, want: kinds(pgha.ActCampaign), reason: "4096 bytes behind"},
	})
	o.View.Optime = 1000 + 2<<20 // 2 MiB behind: not eligible; refused once, then quiet
	run(t, pgha.NewMember("b", policy), o, []step{
		{at: 0, want: kinds(pgha.ActRefuse), reason: "maximum_lag_on_failover"},
		{at: time.Second, want: none()},
		// The operator forces it.
		{at: 2 * time.Second, obs: func(o *pgha.Observation) {
			o.View.Failover = &pgha.Failover{To: "b", Forced: true, By: "api:alice", At: t0.Add(2 * time.Second)}
		}, want: kinds(pgha.ActCampaign), reason: "forced failover to b requested by api:alice"},
	})
}

func TestElectionPrefersTheMostAdvancedReplica(t *testing.T) {
	o := pgha.Observation{Local: replica(), View: view(), Lease: pgha.Lease{ID: 2}}
	o.View.Optime = 1000
	o.View.Members["c"] = pgha.MemberInfo{Name: "c", Role: pgha.RoleReplica, Ready: true, LSN: 2000, Updated: t0}
	run(t, pgha.NewMember("b", policy), o, []step{
		{at: 0, want: none()},                                        // c has more WAL: it goes first
		{at: 1 * time.Second, want: none()},                          // still within 2×loop_wait + retry_timeout
		{at: 1500 * time.Millisecond, want: kinds(pgha.ActCampaign)}, // c did not take the lease: b does
	})
}

func TestSyncModePromotesOnlyTheSynchronousStandby(t *testing.T) {
	o := pgha.Observation{Local: replica(), View: view(), Lease: pgha.Lease{ID: 2}}
	o.View.Sync = pgha.SyncInfo{Leader: "a", Standby: "c"}
	run(t, pgha.NewMember("b", syncPolicy()), o, []step{
		{at: 0, want: kinds(pgha.ActRefuse), reason: "sync mode: b is not the synchronous standby of a (standby: c)"},
		{at: time.Second, want: none()}, // recorded once
		{at: 2 * time.Second, obs: func(o *pgha.Observation) { o.View.Sync.Standby = "" }, want: kinds(pgha.ActRefuse), reason: "standby: none"},
		{at: 3 * time.Second, obs: func(o *pgha.Observation) { o.View.Sync.Standby = "b" }, want: kinds(pgha.ActCampaign), reason: "holds every acknowledged commit"},
	})
	// The old primary itself, back before anyone else, may lead again: it had every commit.
	o.View.Sync = pgha.SyncInfo{Leader: "b", Standby: "c"}
	o.Local.WasPrimary = true
	run(t, pgha.NewMember("b", syncPolicy()), o, []step{{at: 0, want: kinds(pgha.ActCampaign)}})
}

func TestWinnerPromotesAndProclaims(t *testing.T) {
	o := leading()
	o.Local = replica()
	o.View.Leader.State = pgha.LeaderPromoting
	run(t, pgha.NewMember("a", policy), o, []step{
		{at: 0, want: kinds(pgha.ActPromote)},
		{at: 100 * time.Millisecond, obs: func(o *pgha.Observation) { o.Local.Busy = "promote" }, want: none()},
		{at: 400 * time.Millisecond, obs: func(o *pgha.Observation) { o.Local = primary() }, want: kinds(pgha.ActProclaim)},
		{at: 500 * time.Millisecond, obs: func(o *pgha.Observation) { o.View.Leader.State = pgha.LeaderPrimary }, want: none()},
	})
}

func TestPrimaryPostgresDown(t *testing.T) {
	down := func(o *pgha.Observation) { o.Local.Running, o.Local.Ready, o.Local.Writable = false, false, false }
	renew := func(o *pgha.Observation) { o.Lease.SafeUntil = o.Now.Add(4 * time.Second) }
	run(t, pgha.NewMember("a", policy), leading(), []step{
		{at: 0, obs: down, want: kinds(pgha.ActStartPrimary)},
		{at: 500 * time.Millisecond, obs: func(o *pgha.Observation) { renew(o); o.Local.Running = true }, want: none()}, // recovering
		{at: 5 * time.Second, obs: func(o *pgha.Observation) { renew(o); down(o) }, want: kinds(pgha.ActStartPrimary)},
		{at: 10 * time.Second, obs: renew, want: kinds(pgha.ActStop, pgha.ActResign), reason: "not ready for 10s"},
	})
	// Data that last ran as a replica is never simply started read-write.
	o := leading()
	o.Local = pgha.Local{Initialized: true}
	run(t, pgha.NewMember("a", policy), o, []step{{at: 0, want: kinds(pgha.ActStartReplica)}})
}

func TestOldPrimaryRejoinsAsReplica(t *testing.T) {
	o := pgha.Observation{View: view(), Lease: pgha.Lease{ID: 1}}
	o.View.Leader = leaderKey("b", pgha.LeaderPromoting, 20, 2)
	o.Local = primary() // its postgres still runs read-write, but b holds the lease
	run(t, pgha.NewMember("a", policy), o, []step{
		{at: 0, want: kinds(pgha.ActFence), reason: "does not hold the lease"},
		{at: 100 * time.Millisecond, obs: func(o *pgha.Observation) { o.Local.Running, o.Local.Ready, o.Local.Writable = false, false, false },
			want: none()}, // b is still promoting: nothing to rewind from yet
		{at: 500 * time.Millisecond, obs: func(o *pgha.Observation) { o.View.Leader.State = pgha.LeaderPrimary },
			want: kinds(pgha.ActRewind), target: "b", reason: "pg_rewind"},
		{at: 900 * time.Millisecond, obs: func(o *pgha.Observation) { o.Local.WasPrimary = false },
			want: kinds(pgha.ActStartReplica), target: "b"},
		{at: 1500 * time.Millisecond, obs: func(o *pgha.Observation) { o.Local = replica(); o.Local.Upstream = "b" }, want: none()},
		// b is replaced by c: follow c without a restart.
		{at: 9 * time.Second, obs: func(o *pgha.Observation) { o.View.Leader = leaderKey("c", pgha.LeaderPrimary, 30, 3) },
			want: kinds(pgha.ActFollow), target: "c"},
	})
}

func TestNewReplicaClones(t *testing.T) {
	o := pgha.Observation{View: view(), Lease: pgha.Lease{ID: 3}}
	o.View.Leader = leaderKey("a", pgha.LeaderPrimary, 10, 1)
	run(t, pgha.NewMember("c", policy), o, []step{
		{at: 0, want: kinds(pgha.ActBasebackup), target: "a"},
		{at: time.Second, obs: func(o *pgha.Observation) { o.Local.Busy = "basebackup" }, want: none()},
		{at: 5 * time.Second, obs: func(o *pgha.Observation) { o.Local = pgha.Local{Initialized: true} }, want: kinds(pgha.ActStartReplica), target: "a"},
	})
}

func TestBootstrap(t *testing.T) {
	o := pgha.Observation{View: pgha.View{Rev: 1, Fresh: true}, Lease: pgha.Lease{ID: 1}}
	run(t, pgha.NewMember("a", policy), o, []step{
		{at: 0, want: kinds(pgha.ActBootstrap)},
		{at: 100 * time.Millisecond, obs: func(o *pgha.Observation) { o.View.Init.Member = "a"; o.Local.Busy = "bootstrap" }, want: none()},
		{at: 2 * time.Second, obs: func(o *pgha.Observation) { o.Local = primary() }, want: kinds(pgha.ActCampaign), reason: "bootstrap"},
	})
	// Another member waits for the one that bootstraps, then clones from it.
	o.View.Init.Member = "a"
	run(t, pgha.NewMember("b", policy), o, []step{
		{at: 0, want: none()},
		{at: 3 * time.Second, obs: func(o *pgha.Observation) {
			o.View.Init.Done = true
			o.View.Leader = leaderKey("a", pgha.LeaderPrimary, 10, 1)
		}, want: kinds(pgha.ActBasebackup), target: "a"},
	})
}

func TestCutOffFromEtcd(t *testing.T) {
	o := pgha.Observation{Local: replica(), View: view(), Lease: pgha.Lease{ID: 2}}
	o.View.Leader = leaderKey("a", pgha.LeaderPrimary, 10, 1)
	o.Local.Upstream = "a"
	run(t, pgha.NewMember("b", policy), o, []step{
		{at: 0, want: none()},
		// Partitioned: no campaign, whatever the stale view says; a stopped postgres restarts read-only.
		{at: time.Second, obs: func(o *pgha.Observation) { o.View.Fresh = false; o.View.Leader = nil }, want: none()},
		{at: 2 * time.Second, obs: func(o *pgha.Observation) { o.Local = pgha.Local{Initialized: true} },
			want: kinds(pgha.ActStartReplica), target: "a"},
	})
}

func TestSyncStandbyManagement(t *testing.T) {
	o := leading()
	o.View.Sync = pgha.SyncInfo{Leader: "a"}
	row := pgha.Replication{Member: "b", Streaming: true, FlushLSN: 4000}
	// A pg_basebackup's WAL stream is listed too, but it is not a member: never a standby.
	o.Local.Replicas = []pgha.Replication{{Member: "c-basebackup", Streaming: true, FlushLSN: 9000}, row}
	o.View.Members["b"] = pgha.MemberInfo{Name: "b", Role: pgha.RoleReplica, Ready: true, Updated: t0}
	run(t, pgha.NewMember("a", syncPolicy()), o, []step{
		{at: 0, want: kinds(pgha.ActSetSyncStandby), target: "b"},
		{at: 500 * time.Millisecond, obs: func(o *pgha.Observation) { o.Local.SyncStandby = "b" }, want: none()}, // not in effect yet
		{at: time.Second, obs: func(o *pgha.Observation) {
			o.Local.Replicas[1].Sync = true
			o.Local.LSN = 6000 // commits acknowledged so far end at or before 6000
		}, want: none()},
		{at: 1500 * time.Millisecond, obs: func(o *pgha.Observation) { o.Local.Replicas[1].FlushLSN = 5999; o.Local.LSN = 7000 }, want: none()},
		{at: 2 * time.Second, obs: func(o *pgha.Observation) { o.Local.Replicas[1].FlushLSN = 6000 },
			want: kinds(pgha.ActWriteSync), target: "b", reason: "every acknowledged commit"},
		{at: 2500 * time.Millisecond, obs: func(o *pgha.Observation) { o.View.Sync.Standby = "b" }, want: none()},
		// b stops streaming: first the sync key (no one eligible), then writes go on without it.
		{at: 3 * time.Second, obs: func(o *pgha.Observation) { o.Local.Replicas = nil; o.Lease.SafeUntil = o.Now.Add(4 * time.Second) },
			want: kinds(pgha.ActWriteSync, pgha.ActSetSyncStandby), reason: "stopped streaming"},
	})
}

func TestSwitchover(t *testing.T) {
	o := leading()
	o.View.Members["b"] = pgha.MemberInfo{Name: "b", Role: pgha.RoleReplica, Ready: true, Streaming: true, Upstream: "a", LSN: 5000, Updated: t0}
	req := func(to string, forced bool) func(o *pgha.Observation) {
		return func(o *pgha.Observation) {
			o.View.Failover = &pgha.Failover{From: "a", To: to, Forced: forced, By: "api:alice", At: o.Now}
		}
	}
	run(t, pgha.NewMember("a", policy), o, []step{{at: 0, obs: req("b", false), want: kinds(pgha.ActHandoff), target: "b"}})
	run(t, pgha.NewMember("a", policy), o, []step{{at: 0, obs: req("", false), want: kinds(pgha.ActHandoff), target: "b"}})
	run(t, pgha.NewMember("a", policy), o, []step{{at: 0, obs: req("c", false), want: kinds(pgha.ActClearFailover, pgha.ActRefuse), reason: "not a member"}})
	run(t, pgha.NewMember("a", policy), o, []step{{at: 0, obs: req("b", true), want: kinds(pgha.ActFence), reason: "forced by api:alice"}})
	// In sync mode only the synchronous standby may take over.
	o.View.Sync = pgha.SyncInfo{Leader: "a", Standby: ""}
	run(t, pgha.NewMember("a", syncPolicy()), o, []step{{at: 0, obs: req("b", false), want: kinds(pgha.ActClearFailover, pgha.ActRefuse), reason: "synchronous standby"}})
	// A stale request from a former leader is dropped.
	o.View.Failover = &pgha.Failover{From: "z", To: "b", By: "api:bob", At: t0}
	run(t, pgha.NewMember("a", policy), o, []step{{at: 0, want: kinds(pgha.ActClearFailover)}})
	// A request older than the request timeout is ignored.
	run(t, pgha.NewMember("a", policy), o, []step{{at: time.Minute, obs: func(o *pgha.Observation) {
		o.Lease.SafeUntil = o.Now.Add(4 * time.Second)
		o.View.Failover.From = "a"
	}, want: none()}})
}

func TestLSN(t *testing.T) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF"} {
		n, err := pgha.ParseLSN(s)
		if err != nil || pgha.FormatLSN(n) != s {
			t.Fatalf("%s → %d, %v → %s", s, n, err, pgha.FormatLSN(n))
		}
	}
	if _, err := pgha.ParseLSN("nope"); err == nil {
		t.Fatal("parsed nonsense")
	}
}

func TestFencedMemberAlreadyFollowingNeedsNoRewind(t *testing.T) {
	o := pgha.Observation{View: view(), Lease: pgha.Lease{ID: 1}}
	o.View.Leader = leaderKey("b", pgha.LeaderPrimary, 20, 2)
	o.View.Members["b"] = pgha.MemberInfo{Name: "b", Role: pgha.RolePrimary, Ready: true, Timeline: 3, Updated: t0}
	o.Local = replica()
	o.Local.WasPrimary, o.Local.Upstream, o.Local.Streaming, o.Local.Timeline = true, "b", true, 2
	run(t, pgha.NewMember("a", policy), o, []step{
		// Still on its own timeline: streaming proves nothing yet; rewind.
		{at: 0, want: kinds(pgha.ActRewind), target: "b"},
		// On b's timeline: postgres accepted b's history, no rewind.
		{at: time.Second, obs: func(o *pgha.Observation) { o.Local.Timeline = 3 }, want: kinds(pgha.ActForgetPrimary), target: "b"},
	})
}

// TestProtectedMemberIsNeverPromotedAutomatically: a member marked protected
// refuses to campaign when the primary is gone (and a peer never counts it as
// the better candidate), but an operator's failover naming it still works.
func TestProtectedMemberIsNeverPromotedAutomatically(t *testing.T) {
	o := pgha.Observation{Local: replica(), View: view(), Lease: pgha.Lease{ID: 2}}
	o.View.Optime = 1000
	p := policy
	p.Protected = true
	run(t, pgha.NewMember("b", p), o, []step{
		{at: 0, want: kinds(pgha.ActRefuse), reason: "b is protected"},
		{at: time.Second, want: none()},
		{at: 2 * time.Second, obs: func(o *pgha.Observation) {
			o.View.Failover = &pgha.Failover{To: "b", Forced: true, By: "api:alice", At: t0.Add(2 * time.Second)}
		}, want: kinds(pgha.ActCampaign), reason: "requested by api:alice"},
	})
	// c has more WAL but is protected: b does not wait for it.
	o.View.Members["c"] = pgha.MemberInfo{Name: "c", Role: pgha.RoleReplica, Ready: true, LSN: 2000, Updated: t0, Protected: true}
	run(t, pgha.NewMember("b", policy), o, []step{{at: 0, want: kinds(pgha.ActCampaign)}})
}

func TestAsyncLeaderEmptiesTheSyncKey(t *testing.T) {
	// After a switch from sync to async mode the sync key still names the
	// old standby: medic db status went on naming a "sync standby" (issue 14).
	o := leading()
	o.View.Sync = pgha.SyncInfo{Leader: "a", Standby: "b"}
	run(t, pgha.NewMember("a", policy), o, []step{
		{at: 0, want: kinds(pgha.ActWriteSync), reason: "names no standby"},
		{at: time.Second, obs: func(o *pgha.Observation) { o.View.Sync.Standby = "" }, want: none()},
	})
}

package pgha_test

import (
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/pgha"
)

func failsafePolicy() pgha.Policy { p := policy; p.Failsafe = true; return p }

var fsKey = pgha.FailsafeInfo{Leader: "a", Rev: 10, Key: strings.Repeat("ab", 32),
	Members: map[string]string{"a": "127.0.0.1:8008", "b": "127.0.0.1:8009", "c": "127.0.0.1:8010"}}

var fsReq = pgha.FailsafeRequest{Cluster: "pg", Leader: "a", Rev: 10, Seq: 7}

func accepted(member string, promise time.Duration) pgha.PeerAnswer {
	return pgha.PeerAnswer{Answer: pgha.FailsafeAnswer{Member: member, Leader: "a", Rev: 10, Seq: 7, Accepted: true,
		PromiseMS: promise.Milliseconds()}}
}

// TestDecideFailsafe: the leader keeps writing past its lease's fence
// deadline only when every other member accepted this very request; the
// new deadline is the send time plus the shortest promise, minus
// retry_timeout, so it always falls before any promise ends.
func TestDecideFailsafe(t *testing.T) {
	sent := t0.Add(10 * time.Second)
	cases := []struct {
		name    string
		answers map[string]pgha.PeerAnswer
		until   time.Duration // after sent; 0: no extension
		why     string
	}{
		{"all accept", map[string]pgha.PeerAnswer{"b": accepted("b", 4*time.Second), "c": accepted("c", 4*time.Second)},
			3500 * time.Millisecond, "confirmed by b, c"},
		{"the shortest promise counts", map[string]pgha.PeerAnswer{"b": accepted("b", 4*time.Second), "c": accepted("c", 2*time.Second)},
			1500 * time.Millisecond, "confirmed"},
		{"one unreachable", map[string]pgha.PeerAnswer{"b": accepted("b", 4*time.Second), "c": {Err: "connection refused"}},
			0, "c did not answer: connection refused"},
		{"one not asked", map[string]pgha.PeerAnswer{"b": accepted("b", 4*time.Second)}, 0, "c was not asked"},
		{"one refuses", map[string]pgha.PeerAnswer{"b": accepted("b", 4*time.Second),
			"c": {Answer: pgha.FailsafeAnswer{Member: "c", Leader: "a", Rev: 10, Seq: 7, Reason: "this member reaches etcd"}}},
			0, "c refused: this member reaches etcd"},
		{"an answer to an older request", map[string]pgha.PeerAnswer{"b": accepted("b", 4*time.Second),
			"c": {Answer: pgha.FailsafeAnswer{Member: "c", Leader: "a", Rev: 10, Seq: 6, Accepted: true, PromiseMS: 4000}}},
			0, "c answered another question"},
		{"an answer for another token", map[string]pgha.PeerAnswer{"b": accepted("b", 4*time.Second),
			"c": {Answer: pgha.FailsafeAnswer{Member: "c", Leader: "a", Rev: 9, Seq: 7, Accepted: true, PromiseMS: 4000}}},
			0, "c answered another question"},
		{"an answer from another member", map[string]pgha.PeerAnswer{"b": accepted("b", 4*time.Second), "c": accepted("b", 4*time.Second)},
			0, "c answered another question"},
		{"a promise no longer than retry_timeout", map[string]pgha.PeerAnswer{"b": accepted("b", 4*time.Second), "c": accepted("c", 500*time.Millisecond)},
			0, "not longer than retry_timeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := pgha.DecideFailsafe(failsafePolicy(), "a", fsKey, fsReq, sent, c.answers)
			want := time.Time{}
			if c.until != 0 {
				want = sent.Add(c.until)
			}
			if !d.Until.Equal(want) {
				t.Fatalf("until %v, want %v (%s)", d.Until, want, d.Why)
			}
			if !strings.Contains(d.Why, c.why) {
				t.Fatalf("why %q lacks %q", d.Why, c.why)
			}
		})
	}
	// A key of another leadership is never used.
	other := fsKey
	other.Rev = 9
	all := map[string]pgha.PeerAnswer{"b": accepted("b", 4*time.Second), "c": accepted("c", 4*time.Second)}
	if d := pgha.DecideFailsafe(failsafePolicy(), "a", other, fsReq, sent, all); !d.Until.IsZero() {
		t.Fatalf("a key of token 9 extended token 10's deadline: %+v", d)
	}
	// A key that lists no other member gives no failsafe: a member that
	// registered after it was written could not tell this leader, cut off,
	// from a dead one (DecideRelease counts on it).
	solo := fsKey
	solo.Members = map[string]string{"a": ""}
	if d := pgha.DecideFailsafe(failsafePolicy(), "a", solo, fsReq, sent, nil); !d.Until.IsZero() || !strings.Contains(d.Why, "no other member") {
		t.Fatalf("single member: %+v", d)
	}
}

// TestAnswerFailsafe: a member accepts only when it sees the requester lead
// with the same token, cannot reach etcd, is neither leading nor writable,
// and the request is newer than the last it accepted.
func TestAnswerFailsafe(t *testing.T) {
	base := func() pgha.FailsafeState {
		v := view()
		v.Fresh = false
		v.Leader = leaderKey("a", pgha.LeaderPrimary, 10, 1)
		k := fsKey
		v.FailsafeKey = &k
		return pgha.FailsafeState{Now: t0, Self: "b", View: v, PromiseMS: 4000, LastRev: 10, LastSeq: 6}
	}
	if a := pgha.AnswerFailsafe(base(), fsReq); !a.Accepted || a.PromiseMS != 4000 || a.Member != "b" || a.Seq != 7 || a.Rev != 10 {
		t.Fatalf("want accepted with a 4s promise: %+v", a)
	}
	cases := []struct {
		name string
		mod  func(s *pgha.FailsafeState)
		req  pgha.FailsafeRequest
		why  string
	}{
		{"reaches etcd", func(s *pgha.FailsafeState) { s.EtcdOK = true }, fsReq, "reaches etcd"},
		{"leading", func(s *pgha.FailsafeState) { s.Leading = true }, fsReq, "holds or seeks the lease"},
		{"writable", func(s *pgha.FailsafeState) { s.Writable = true }, fsReq, "writable"},
		{"no key since start", func(s *pgha.FailsafeState) { s.View.FailsafeKey = nil }, fsReq, "knows no failsafe key"},
		{"another leader key", func(s *pgha.FailsafeState) { s.View.Leader = leaderKey("c", pgha.LeaderPrimary, 20, 3) }, fsReq, "another leader key"},
		{"no leader key", func(s *pgha.FailsafeState) { s.View.Leader = nil }, fsReq, "another leader key"},
		{"an old token", nil, pgha.FailsafeRequest{Cluster: "pg", Leader: "a", Rev: 9, Seq: 8}, "failsafe key names a (token 10)"},
		{"a replayed request", nil, pgha.FailsafeRequest{Cluster: "pg", Leader: "a", Rev: 10, Seq: 6}, "not newer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := base()
			if c.mod != nil {
				c.mod(&s)
			}
			a := pgha.AnswerFailsafe(s, c.req)
			if a.Accepted || !strings.Contains(a.Reason, c.why) {
				t.Fatalf("answer %+v, want refused with %q", a, c.why)
			}
		})
	}
}

// TestFailsafeMovesTheFence: the leader whose peers confirmed it stays up
// past the lease's deadline, and fences at the failsafe's.
func TestFailsafeMovesTheFence(t *testing.T) {
	o := leading()
	k := fsKey
	k.Members = map[string]string{"a": "", "b": ""}
	o.View.FailsafeKey = &k
	o.View.Members["a"] = pgha.MemberInfo{Name: "a"}
	o.View.Members["b"] = pgha.MemberInfo{Name: "b"}
	run(t, pgha.NewMember("a", failsafePolicy()), o, []step{
		{at: 2 * time.Second, obs: func(o *pgha.Observation) { o.View.Fresh = false }, want: none()},
		// Confirmed at +3s (sent): writable until +6.5s.
		{at: 3 * time.Second, obs: func(o *pgha.Observation) { o.Lease.FailsafeUntil = t0.Add(6500 * time.Millisecond) }, want: none()},
		{at: 3500 * time.Millisecond, want: none()}, // the lease's deadline passed: the failsafe holds
		{at: 6499 * time.Millisecond, want: none()},
		{at: 6500 * time.Millisecond, want: kinds(pgha.ActFence), reason: "failsafe could not be confirmed"},
	})
	// Without a confirmation, the lease's deadline stands.
	run(t, pgha.NewMember("a", failsafePolicy()), o, []step{
		{at: 2 * time.Second, obs: func(o *pgha.Observation) { o.View.Fresh = false }, want: none()},
		{at: 3500 * time.Millisecond, want: kinds(pgha.ActFence), reason: "not renewed in time"},
	})
}

// TestFailsafeKey: a leader with the failsafe on lists every member (and
// its own token); with it off, it deletes a key it finds.
func TestFailsafeKey(t *testing.T) {
	o := leading()
	o.View.Members["a"] = pgha.MemberInfo{Name: "a", REST: "127.0.0.1:8008"}
	o.View.Members["b"] = pgha.MemberInfo{Name: "b", REST: "127.0.0.1:8009"}
	m := pgha.NewMember("a", failsafePolicy())
	_, acts := m.Step(withNow(o, t0))
	if len(acts) != 1 || acts[0].Kind != pgha.ActWriteFailsafe || len(acts[0].Members) != 2 || acts[0].Members["b"] != "127.0.0.1:8009" {
		t.Fatalf("want the key written with a and b: %v", acts)
	}
	k := pgha.FailsafeInfo{Leader: "a", Rev: 10, Members: acts[0].Members, Key: fsKey.Key}
	o.View.FailsafeKey = &k
	if _, acts := m.Step(withNow(o, t0)); len(acts) != 0 {
		t.Fatalf("the key is current: %v", acts)
	}
	o.View.Members["c"] = pgha.MemberInfo{Name: "c", REST: "127.0.0.1:8010"} // a member joins
	if _, acts := m.Step(withNow(o, t0)); len(acts) != 1 || acts[0].Kind != pgha.ActWriteFailsafe || len(acts[0].Members) != 3 {
		t.Fatalf("c joined: want the key rewritten: %v", acts)
	}
	// A member without REST endpoint could never confirm: no key, which
	// would only keep unlisted members from campaigning.
	o.View.Members["c"] = pgha.MemberInfo{Name: "c"}
	if _, acts := m.Step(withNow(o, t0)); len(acts) != 1 || acts[0].Kind != pgha.ActWriteFailsafe || acts[0].Members != nil ||
		!strings.Contains(acts[0].Reason, "c has no REST endpoint") {
		t.Fatalf("c without REST: want the key deleted: %v", acts)
	}
	// Alone, likewise.
	solo := o
	solo.View.Members = map[string]pgha.MemberInfo{"a": o.View.Members["a"]}
	if _, acts := m.Step(withNow(solo, t0)); len(acts) != 1 || acts[0].Members != nil || !strings.Contains(acts[0].Reason, "no other member") {
		t.Fatalf("alone: want the key deleted: %v", acts)
	}
	solo.View.FailsafeKey = nil
	if _, acts := m.Step(withNow(solo, t0)); len(acts) != 0 {
		t.Fatalf("alone without a key: %v", acts)
	}
	// A key of an earlier leadership (token 9) is rewritten.
	k9 := k
	k9.Rev = 9
	o.View.FailsafeKey = &k9
	delete(o.View.Members, "c")
	if _, acts := m.Step(withNow(o, t0)); len(acts) != 1 || acts[0].Kind != pgha.ActWriteFailsafe {
		t.Fatalf("old token: want the key rewritten: %v", acts)
	}
	// Failsafe off: the key goes.
	if _, acts := pgha.NewMember("a", policy).Step(withNow(o, t0)); len(acts) != 1 || acts[0].Kind != pgha.ActWriteFailsafe || acts[0].Members != nil {
		t.Fatalf("failsafe off: want the key deleted: %v", acts)
	}
	// Not while etcd does not answer.
	o.View.Fresh = false
	if _, acts := m.Step(withNow(o, t0)); len(acts) != 0 {
		t.Fatalf("etcd silent: %v", acts)
	}
}

// TestFailsafeCampaign: a member that promised not to campaign does not,
// until the promise ends; a member the failsafe key does not list never does.
func TestFailsafeCampaign(t *testing.T) {
	o := pgha.Observation{Local: replica(), View: view(), Lease: pgha.Lease{ID: 2}}
	o.View.Optime = 1000
	o.NoCampaignUntil = t0.Add(4 * time.Second)
	run(t, pgha.NewMember("b", policy), o, []step{
		{at: 0, want: none()},
		{at: 3999 * time.Millisecond, want: none()},
		{at: 4 * time.Second, want: kinds(pgha.ActCampaign)},
	})
	o.NoCampaignUntil = time.Time{}
	k := fsKey
	k.Members = map[string]string{"a": "", "c": ""}
	o.View.FailsafeKey = &k
	run(t, pgha.NewMember("b", policy), o, []step{
		{at: 0, want: kinds(pgha.ActRefuse), reason: "does not list this member"},
		{at: time.Second, want: none()}, // recorded once
		{at: 2 * time.Second, obs: func(o *pgha.Observation) { o.View.FailsafeKey.Members["b"] = "" }, want: kinds(pgha.ActCampaign)},
	})
	// Not listed, but every listed member is done with the key's leader.
	k2 := fsKey
	k2.Members = map[string]string{"a": "", "c": ""}
	o.View.FailsafeKey = &k2
	run(t, pgha.NewMember("b", policy), o, []step{
		{at: 0, want: kinds(pgha.ActRefuse), reason: "does not list this member"},
		{at: time.Second, obs: func(o *pgha.Observation) { o.FailsafeReleased = "c is done with a" }, want: kinds(pgha.ActCampaign), reason: "c is done with a"},
	})
}

func released(member string) pgha.PeerRelease {
	return pgha.PeerRelease{Answer: pgha.ReleaseAnswer{Member: member, Leader: "a", Rev: 10, Released: true}}
}

// TestDecideRelease: a member the failsafe key does not list campaigns only
// when every other member the key lists answered that it is done with the
// key's leader and token; a key that lists only its leader needs no answer.
func TestDecideRelease(t *testing.T) {
	cases := []struct {
		name    string
		key     map[string]string
		answers map[string]pgha.PeerRelease
		ok      bool
		why     string
	}{
		{"all released", fsKey.Members, map[string]pgha.PeerRelease{"b": released("b"), "c": released("c")}, true, "(b, c)"},
		{"the leader is not asked", fsKey.Members, map[string]pgha.PeerRelease{"b": released("b"), "c": released("c"), "a": {Err: "refused"}}, true, ""},
		{"one unreachable", fsKey.Members, map[string]pgha.PeerRelease{"b": released("b"), "c": {Err: "connection refused"}}, false, "c did not answer"},
		{"one not asked", fsKey.Members, map[string]pgha.PeerRelease{"b": released("b")}, false, "c was not asked"},
		{"one still promised", fsKey.Members, map[string]pgha.PeerRelease{"b": released("b"),
			"c": {Answer: pgha.ReleaseAnswer{Member: "c", Leader: "a", Rev: 10, Reason: "this member promised a"}}}, false, "c is not done with a"},
		{"an answer for another token", fsKey.Members, map[string]pgha.PeerRelease{"b": released("b"),
			"c": {Answer: pgha.ReleaseAnswer{Member: "c", Leader: "a", Rev: 9, Released: true}}}, false, "c answered another question"},
		{"an answer from another member", fsKey.Members, map[string]pgha.PeerRelease{"b": released("b"), "c": released("b")}, false, "c answered another question"},
		{"only the leader listed", map[string]string{"a": ""}, nil, true, "lists no other member"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := fsKey
			k.Members = c.key
			ok, why := pgha.DecideRelease("d", k, c.answers)
			if ok != c.ok || !strings.Contains(why, c.why) {
				t.Fatalf("got %v %q, want %v %q", ok, why, c.ok, c.why)
			}
		})
	}
	if got := pgha.ReleaseTargets("b", fsKey); strings.Join(got, ",") != "c" {
		t.Fatalf("targets of b: %v, want c (not the leader, not itself)", got)
	}
}

// TestAnswerRelease: a listed member is done with the key's leader only
// once it saw its leader key gone, holds no running promise to it, and has
// run for a lease TTL (a promise from before a restart is over).
func TestAnswerRelease(t *testing.T) {
	q := pgha.ReleaseQuery{Cluster: "pg", Leader: "a", Rev: 10, From: "d"}
	base := func() pgha.ReleaseState {
		v := view()
		v.Leader = nil
		return pgha.ReleaseState{Now: t0.Add(time.Minute), Self: "b", Started: t0, TTL: 4 * time.Second, View: v,
			PromLeader: "a", PromRev: 10, PromUntil: t0.Add(50 * time.Second)}
	}
	if a := pgha.AnswerRelease(base(), q); !a.Released || a.Member != "b" || a.Leader != "a" || a.Rev != 10 {
		t.Fatalf("want released: %+v", a)
	}
	cases := []struct {
		name string
		mod  func(*pgha.ReleaseState)
		why  string
	}{
		{"still sees the leader key", func(s *pgha.ReleaseState) { s.View.Leader = leaderKey("a", pgha.LeaderPrimary, 10, 1) }, "still sees a"},
		{"a promise runs", func(s *pgha.ReleaseState) { s.PromUntil = s.Now.Add(time.Millisecond) }, "promised a"},
		{"started less than a TTL ago", func(s *pgha.ReleaseState) { s.Started = s.Now.Add(-3 * time.Second) }, "less than a lease TTL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := base()
			c.mod(&s)
			if a := pgha.AnswerRelease(s, q); a.Released || !strings.Contains(a.Reason, c.why) {
				t.Fatalf("got %+v, want not released: %q", a, c.why)
			}
		})
	}
	// A promise to another leadership, or a newer leader key, is no reason.
	s := base()
	s.PromRev, s.PromUntil = 9, s.Now.Add(time.Second)
	s.View.Leader = leaderKey("c", pgha.LeaderPrimary, 12, 1)
	if a := pgha.AnswerRelease(s, q); !a.Released {
		t.Fatalf("a promise to token 9 and a newer leader: want released: %+v", a)
	}
}

func withNow(o pgha.Observation, now time.Time) pgha.Observation { o.Now = now; return o }

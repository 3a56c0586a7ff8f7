package e2e_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/pgha"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
)

// failsafeKeyPath is the failsafe key of database pg under the e2e prefix.
const failsafeKeyPath = "/medic/e2e/pg/failsafe"

// rewriteFailsafeKey replaces the members the failsafe key lists, keeping
// its leader, token and MAC key: the key a leader wrote before it listed
// a member that joined since (a leader rewrites it within one loop_wait
// while it lives; lost in that window, it never does).
func rewriteFailsafeKey(t *testing.T, c *etcd.Client, members map[string]string) pgha.FailsafeInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, ok, err := c.Get(ctx, failsafeKeyPath)
	if err != nil || !ok {
		t.Fatalf("read the failsafe key: %v (present: %v)", err, ok)
	}
	var fi pgha.FailsafeInfo
	if err := json.Unmarshal(kv.Value, &fi); err != nil {
		t.Fatalf("decode the failsafe key: %v", err)
	}
	fi.Members = members
	b, _ := json.Marshal(fi)
	if err := c.Put(ctx, failsafeKeyPath, string(b)); err != nil {
		t.Fatalf("rewrite the failsafe key: %v", err)
	}
	return fi
}

// TestDBFailsafeLostLeaderUnlisted reproduces what the full CI run saw
// (issue 14): the leader is lost for good with a failsafe key that does
// not list the survivor.
//
//  1. The key lists a (lost) and x, a member that never answers: b cannot
//     tell that a is not in failsafe on x's word, so it does not campaign
//     on its own; the operator's `medic db failover --to b` clears the key
//     (audited) and b leads.
//  2. The key lists only b (lost), a is the survivor: a leader that no
//     other member confirms gets no failsafe, so a campaigns on its own
//     once b's lease is gone.
//
// Before the fix, b refused the failover (and a bootstrap from backup)
// until the request timed out, and a never campaigned.
func TestDBFailsafeLostLeaderUnlisted(t *testing.T) {
	pgtest.Require(t)
	srv := etcdtest.Start(t)
	c, err := etcd.Dial(etcd.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, b := newDBNode(t, "a", srv.Endpoint, "async"), newDBNode(t, "b", srv.Endpoint, "async")
	a.withFailsafe(true)
	b.withFailsafe(true)
	a.start()
	a.eventually(60*time.Second, "a leads", leaderIs("a"))
	b.start()
	a.eventually(60*time.Second, "b streams from a", streams("b", "a", false))
	listsBoth := func(st pgha.Status) bool { return strings.Join(st.Failsafe.Members, ",") == "a,b" }
	a.eventually(20*time.Second, "the failsafe key lists a and b", listsBoth)

	// 1. a is lost with a key listing a and x.
	a.crash()
	rewriteFailsafeKey(t, c, map[string]string{"a": a.rest, "x": "127.0.0.1:1"})
	b.eventually(30*time.Second, "a's lease is gone", func(st pgha.Status) bool { return st.Etcd && st.Leader == nil })
	hold := 3 * 4 * time.Second // three lease TTLs
	for end := time.Now().Add(hold); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if st, err := b.status(); err == nil && st.Leader != nil {
			t.Fatalf("b took the lease (%+v) while the failsafe key lists x, which never answered: a may be in failsafe on x's word", st.Leader)
		}
	}
	if !strings.Contains(b.stderr.String(), "does not list this member") {
		t.Errorf("b's log does not say why it does not campaign:\n%s", tail(b.stderr.String(), 3000))
	}
	start := time.Now()
	if out, err := b.medic("db", "failover", "--to", "b"); err != nil {
		t.Fatalf("medic db failover --to b with a key not listing b: %v\n%s\nagent stderr:\n%s", err, out, tail(b.stderr.String(), 3000))
	}
	t.Logf("phase 1: the operator's failover to b, not listed in the failsafe key, took %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(b.stderr.String(), "kind=db.failsafe_cleared") {
		t.Errorf("b's events lack db.failsafe_cleared")
	}

	// 2. a comes back and follows b; b is lost with a key listing only b.
	a.start()
	b.eventually(90*time.Second, "a streams from b", streams("a", "b", false))
	b.eventually(20*time.Second, "the failsafe key lists a and b", listsBoth)
	b.crash()
	rewriteFailsafeKey(t, c, map[string]string{"b": b.rest})
	start = time.Now()
	a.eventually(60*time.Second, "a, not listed in b's failsafe key, leads", leaderIs("a"))
	t.Logf("phase 2: a, not listed in the failsafe key of b (lost), led %v after the loss", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(a.stderr.String(), "kind=db.failsafe_released") {
		t.Errorf("a's events lack db.failsafe_released")
	}
}

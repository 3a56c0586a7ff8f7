package pgha_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/etcd"
)

// leaderKey reads the cluster's leader key straight from etcd.
func (c *cluster) leaderKey(t *testing.T) (etcd.Leader, error) {
	t.Helper()
	cli, err := etcd.Dial(etcd.Config{Endpoints: []string{c.etcd.Endpoint}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return cli.Leader(ctx, "/medic-test/pg/leader")
}

func (n *node) event(kind string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range n.events {
		if string(e.Kind) == kind {
			return e.Reason, true
		}
	}
	return "", false
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// handOverLeader starts a leading and b streaming from it, then hands a's
// member over (its agent stops as on an upgrade) and returns a's
// postmaster pid and the leader key as they were.
func handOverLeader(t *testing.T) (*cluster, *node, etcd.Leader, int) {
	c := newCluster(t, "async")
	a := c.start("a")
	a.waitLeader(t, "a", 60*time.Second)
	b := c.start("b")
	a.waitReplica(t, "b", "a", 60*time.Second)
	_ = b
	lead, err := c.leaderKey(t)
	if err != nil {
		t.Fatal(err)
	}
	pm := a.postmasterPID()
	a.agent.HandOver()
	a.stop()
	if why, ok := a.event("db.handover"); !ok || !strings.Contains(why, fmt.Sprint(pm)) {
		t.Fatalf("no db.handover event naming postmaster %d: %q; events: %s", pm, why, a.kinds())
	}
	if !alive(pm) {
		t.Fatalf("postmaster %d stopped by a handover", pm)
	}
	return c, a, lead, pm
}

// TestHandOverAdoptsPostgres: an agent stopped for a handover leaves its
// postmaster running and its lease unrevoked; the next agent on the same
// state directory adopts both: same postmaster, same leader key (revision
// and lease), and the old watchdog is ended.
func TestHandOverAdoptsPostgres(t *testing.T) {
	c, _, lead, pm := handOverLeader(t)
	a := c.start("a")
	a.waitLeader(t, "a", 10*time.Second)
	if got := a.postmasterPID(); got != pm {
		t.Fatalf("postmaster %d after the adoption, was %d", got, pm)
	}
	why, ok := a.event("db.adopted")
	if !ok || !strings.Contains(why, "same lease") || !strings.Contains(why, "watchdog ended") {
		t.Fatalf("db.adopted: %q; events: %s", why, a.kinds())
	}
	// Held for more than a TTL by the new agent alone, the key is the same.
	time.Sleep(3 * time.Second)
	now, err := c.leaderKey(t)
	if err != nil || now.CreateRev != lead.CreateRev || now.Lease != lead.Lease {
		t.Fatalf("leader key %+v, %v after the adoption; was revision %d lease %x", now, err, lead.CreateRev, lead.Lease)
	}
	if got := a.postmasterPID(); got != pm || !alive(pm) {
		t.Fatalf("postmaster %d (alive %v) a TTL after the adoption, was %d", got, alive(pm), pm)
	}
	if k := a.kinds(); strings.Contains(k, "db.fenced") || strings.Contains(k, "db.elected") {
		t.Fatalf("the adopting agent fenced or campaigned: %s", k)
	}
}

// TestHandOverNotAdoptedIsFenced: a leader's postmaster handed over and
// not adopted is killed by the old watchdog at the fence deadline, before
// the lease can expire.
func TestHandOverNotAdoptedIsFenced(t *testing.T) {
	_, _, lead, pm := handOverLeader(t)
	start := time.Now()
	for i := 0; i < 200 && alive(pm); i++ { // the lease TTL is 2s
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pm) {
		t.Fatalf("postmaster %d still runs %v after a handover nobody took", pm, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("fenced by the old watchdog %v after the handover (lease %x, TTL 2s)", time.Since(start).Round(time.Millisecond), lead.Lease)
}

// TestHandOverLostLeaseIsFenced: when the lease handed over is gone by the
// time the next agent starts (here revoked, so b takes over), the adopted
// postmaster, writable, is fenced at once and rejoins as b's replica.
func TestHandOverLostLeaseIsFenced(t *testing.T) {
	c, _, lead, pm := handOverLeader(t)
	cli, err := etcd.Dial(etcd.Config{Endpoints: []string{c.etcd.Endpoint}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := cli.Revoke(ctx, lead.Lease); err != nil {
		t.Fatal(err)
	}
	a := c.start("a")
	c.nodes["b"].waitLeader(t, "b", 30*time.Second)
	why, ok := a.event("db.fenced")
	if !ok || !strings.Contains(why, "could not be carried on") {
		t.Fatalf("db.fenced: %q; events: %s", why, a.kinds())
	}
	if alive(pm) {
		t.Fatalf("the postmaster %d whose lease was lost still runs", pm)
	}
	if _, ok := a.event("db.adopted"); ok {
		t.Fatalf("adopted although the lease was gone: %s", a.kinds())
	}
	c.nodes["b"].waitReplica(t, "a", "b", 60*time.Second)
}

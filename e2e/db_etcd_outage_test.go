package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/pgha"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
)

// etcdDown is how long the only etcd is stopped.
const etcdDown = 10 * time.Second

// TestDBEtcdOutage: the cluster's only etcd stops for 10 s under write load
// (failsafe off, the default). The primary fences itself (no lease can be
// confirmed); when etcd returns it extends every lease it held, which
// revived the fenced leader's key and routed clients to its postgres, by
// then in recovery (issue 14: ~5 s of read-only errors). Now the fenced
// member revokes that lease as soon as etcd answers: 0 read-only errors
// after etcd returns, the outage at most the etcd outage + 1 s, and never
// two writable members (both probed directly every 50 ms).
func TestDBEtcdOutage(t *testing.T) {
	pgtest.Require(t)
	srv := etcdtest.Start(t)
	a, b := newDBNode(t, "a", srv.Endpoint, "async"), newDBNode(t, "b", srv.Endpoint, "async")
	a.start()
	a.eventually(60*time.Second, "a leads", leaderIs("a"))
	b.start()
	a.eventually(60*time.Second, "b streams from a", streams("b", "a", false))
	if _, err := pgtest.Connect(t, a.pg).Exec(context.Background(), "CREATE TABLE acks (id int PRIMARY KEY, at timestamptz DEFAULT now())"); err != nil {
		t.Fatal(err)
	}
	w := &writer{dsn: fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%s,%s user=postgres dbname=postgres sslmode=disable connect_timeout=1",
		port(a.prim), port(b.prim))}
	ctx, cancel := context.WithCancel(context.Background())
	wdone := make(chan struct{})
	go func() { w.run(ctx); close(wdone) }()
	var rounds int
	var both []string
	pdone := make(chan struct{})
	go func() {
		defer close(pdone)
		for ctx.Err() == nil {
			if wa, wb := pgtest.Writable(a.pg), pgtest.Writable(b.pg); wa && wb {
				both = append(both, time.Now().Format("15:04:05.000"))
			}
			rounds++
			time.Sleep(50 * time.Millisecond)
		}
	}()
	defer func() { cancel(); <-wdone; <-pdone }()
	waitAcks(t, w, 200, 20*time.Second)

	stopped := time.Now()
	srv.Stop()
	time.Sleep(etcdDown)
	srv.Restart(t)
	down := time.Since(stopped) // until etcd answers again
	w.mu.Lock()
	roBefore := w.readOnly
	w.mu.Unlock()
	serving := func(st pgha.Status) bool { return st.Leader != nil && st.Leader.State == pgha.LeaderPrimary && st.Etcd }
	b.eventually(30*time.Second, "a primary serves again", serving)
	n := w.count()
	waitAcks(t, w, n+200, 30*time.Second)
	cancel()
	<-wdone
	<-pdone
	gap, before, after := w.outage(stopped.Add(-time.Second))
	t.Logf("etcd stopped %v at %s (answering again after %v): last ack %s, first after %s: write outage %v; %d read-only errors after etcd returned; %d probe rounds",
		etcdDown, stopped.Format("15:04:05.000"), down.Round(10*time.Millisecond), before.Format("15:04:05.000"), after.Format("15:04:05.000"), gap.Round(10*time.Millisecond),
		w.readOnly-roBefore, rounds)
	if len(both) > 0 {
		t.Errorf("two members accepted writes, at %v", both)
	}
	if w.readOnly > roBefore {
		t.Errorf("%d writes reached a member in recovery after etcd returned", w.readOnly-roBefore)
	}
	if t.Failed() || gap > down+time.Second {
		for _, n := range []*dbNode{a, b} {
			var lines []string
			for _, l := range strings.Split(n.stderr.String(), "\n") {
				if strings.Contains(l, "kind=db.") || strings.Contains(l, "level=WARN") {
					lines = append(lines, l)
				}
			}
			t.Logf("%s:\n%s", n.name, tail(strings.Join(lines, "\n"), 4000))
		}
	}
	if gap > down+time.Second {
		t.Errorf("write outage %v exceeds the etcd outage %v + 1s", gap.Round(10*time.Millisecond), down.Round(10*time.Millisecond))
	}
}

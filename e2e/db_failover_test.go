package e2e_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
)

// rtoBound is the bound on the client-visible outage when the
// primary's host is lost, at medic's default timings (lease_ttl 4s).
const rtoBound = 5 * time.Second

// TestDBPrimaryHostLostUnderLoad: two agents keep a sync-mode cluster at the
// default timings; a writer commits 100 single-row transactions per second
// through the agents' primary listeners. The primary's host is lost (agent
// and postgres SIGKILLed). The replica takes over within the RTO bound, no
// acknowledged write is lost, and the old primary, started again, rejoins
// as a replica.
func TestDBPrimaryHostLostUnderLoad(t *testing.T) {
	pgtest.Require(t)
	srv := etcdtest.Start(t)
	a, b := newDBNode(t, "a", srv.Endpoint, "sync"), newDBNode(t, "b", srv.Endpoint, "sync")
	a.start()
	a.eventually(60*time.Second, "a leads", leaderIs("a"))
	b.start()
	a.eventually(60*time.Second, "b is the synchronous standby", streams("b", "a", true))
	if _, err := pgtest.Connect(t, a.pg).Exec(context.Background(), "CREATE TABLE acks (id int PRIMARY KEY, at timestamptz DEFAULT now())"); err != nil {
		t.Fatal(err)
	}
	w := &writer{dsn: fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%s,%s user=postgres dbname=postgres sslmode=disable connect_timeout=1",
		port(a.prim), port(b.prim))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitAcks(t, w, 200, 20*time.Second)

	killed := time.Now()
	a.crash()
	b.eventually(30*time.Second, "b leads", leaderIs("b"))
	n := w.count()
	waitAcks(t, w, n+200, 30*time.Second)
	cancel()
	<-done
	rto, before, after := w.outage(killed.Add(-time.Second))
	t.Logf("primary host lost at %s: last ack before %s, first ack after %s: RTO %v (%d acks, %d client errors)",
		killed.Format("15:04:05.000"), before.Format("15:04:05.000"), after.Format("15:04:05.000"), rto.Round(time.Millisecond), w.count(), w.errs)
	if rto > rtoBound {
		t.Errorf("RTO %v exceeds %v", rto, rtoBound)
	}
	acked := w.acked()
	var found int
	if err := pgtest.Connect(t, b.pg).QueryRow(context.Background(), "SELECT count(*) FROM acks WHERE id = ANY($1)", acked).Scan(&found); err != nil {
		t.Fatal(err)
	}
	if found != len(acked) {
		t.Fatalf("sync mode lost %d of %d acknowledged writes", len(acked)-found, len(acked))
	}
	t.Logf("all %d acknowledged writes are on the new primary", len(acked))

	a.start()
	b.eventually(90*time.Second, "a rejoins as b's replica", streams("a", "b", false))
	if pgtest.Writable(a.pg) {
		t.Fatal("the old primary came back writable")
	}
}

// TestDBPrimaryCutFromEtcd: the primary's agent is cut off from etcd (a TCP
// link between them is cut) while a writer runs. Probing both postgres
// directly all along, never do two members accept writes; the replica
// takes over; after the cut the old primary rejoins as a replica.
func TestDBPrimaryCutFromEtcd(t *testing.T) {
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
	defer func() { cancel(); <-wdone }()
	waitAcks(t, w, 100, 20*time.Second)

	stop := make(chan struct{})
	pdone := make(chan struct{})
	var rounds int
	var both []string
	go func() {
		defer close(pdone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if wa, wb := pgtest.Writable(a.pg), pgtest.Writable(b.pg); wa && wb {
				both = append(both, time.Now().Format("15:04:05.000"))
			}
			rounds++
		}
	}()
	cut := time.Now()
	a.link.Cut()
	b.eventually(30*time.Second, "b leads", leaderIs("b"))
	n := w.count()
	waitAcks(t, w, n+100, 30*time.Second)
	close(stop)
	<-pdone
	if len(both) > 0 {
		t.Fatalf("two members accepted writes during the cut, at %v", both)
	}
	rto, _, _ := w.outage(cut.Add(-time.Second))
	t.Logf("%d probe rounds of both members during the cut: never two writable; client-visible outage %v", rounds, rto.Round(time.Millisecond))

	a.link.Restore()
	b.eventually(90*time.Second, "a rejoins as b's replica", streams("a", "b", false))
}

func waitAcks(t *testing.T, w *writer, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for w.count() < n {
		if time.Now().After(deadline) {
			w.mu.Lock()
			last := w.lastErr
			w.mu.Unlock()
			t.Fatalf("the writer has %d acknowledged writes, want %d within %v (%d errors, the last: %v)", w.count(), n, within, w.errs, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func port(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i+1:]
		}
	}
	return addr
}

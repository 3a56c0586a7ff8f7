package e2e_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/pgha"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
)

// etcdDown is how long the only etcd is stopped.
const etcdDown = 10 * time.Second

// withFailsafe sets databases.pg.failsafe on node n.
func (n *dbNode) withFailsafe(on bool) {
	appendFile(n.t, filepath.Join(n.dir, "medic.yaml"), fmt.Sprintf("    failsafe: %v\n", on))
}

// statusWithin is n's status, or an error after d.
func (n *dbNode) statusWithin(d time.Duration) (pgha.Status, error) {
	type res struct {
		st  pgha.Status
		err error
	}
	ch := make(chan res, 1)
	go func() { st, err := n.status(); ch <- res{st, err} }()
	select {
	case r := <-ch:
		return r.st, r.err
	case <-time.After(d):
		return pgha.Status{}, fmt.Errorf("%s: no status within %v", n.name, d)
	}
}

// outageRun is one etcd outage under write load, as measured.
type outageRun struct {
	a, b          *dbNode
	w             *writer
	stopped, back time.Time     // etcd stopped; etcd answering again
	down          time.Duration // back - stopped
	both          []string      // probe rounds that found two writable members
	rounds        int
	roBefore      int
	errs          int            // writes that failed from just before etcd stopped until the writer was stopped
	lastErr       error          // the last of them
	mid           [2]pgha.Status // a's and b's status halfway through the outage
}

// etcdOutage starts a (primary) and b (streaming replica) with the failsafe
// set to failsafe, writes through both primary listeners (a multi-host
// DSN), probes both postgres servers every 50 ms, and stops the only etcd
// for etcdDown; freeze, if set, runs just before etcd stops and thaw just
// before it restarts.
func etcdOutage(t *testing.T, failsafe bool, freeze, thaw func(a, b *dbNode)) *outageRun {
	pgtest.Require(t)
	srv := etcdtest.Start(t)
	a, b := newDBNode(t, "a", srv.Endpoint, "async"), newDBNode(t, "b", srv.Endpoint, "async")
	a.withFailsafe(failsafe)
	b.withFailsafe(failsafe)
	a.start()
	a.eventually(60*time.Second, "a leads", leaderIs("a"))
	b.start()
	a.eventually(60*time.Second, "b streams from a", streams("b", "a", false))
	if failsafe {
		a.eventually(20*time.Second, "the failsafe key lists a and b", func(st pgha.Status) bool {
			return strings.Join(st.Failsafe.Members, ",") == "a,b"
		})
	}
	if _, err := pgtest.Connect(t, a.pg).Exec(context.Background(), "CREATE TABLE acks (id int PRIMARY KEY, at timestamptz DEFAULT now())"); err != nil {
		t.Fatal(err)
	}
	r := &outageRun{a: a, b: b}
	r.w = &writer{dsn: fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%s,%s user=postgres dbname=postgres sslmode=disable connect_timeout=1",
		port(a.prim), port(b.prim))}
	ctx, cancel := context.WithCancel(context.Background())
	wdone := make(chan struct{})
	go func() { r.w.run(ctx); close(wdone) }()
	pdone := make(chan struct{})
	go func() {
		defer close(pdone)
		for ctx.Err() == nil {
			if wa, wb := pgtest.Writable(a.pg), pgtest.Writable(b.pg); wa && wb {
				r.both = append(r.both, time.Now().Format("15:04:05.000"))
			}
			r.rounds++
			time.Sleep(50 * time.Millisecond)
		}
	}()
	defer func() { cancel(); <-wdone; <-pdone }()
	waitAcks(t, r.w, 200, 20*time.Second)

	r.w.mu.Lock()
	errsBefore := r.w.errs
	r.w.mu.Unlock()
	if freeze != nil {
		freeze(a, b)
	}
	r.stopped = time.Now()
	srv.Stop()
	time.Sleep(etcdDown / 2)
	r.mid[0], _ = a.statusWithin(2 * time.Second) // b may be frozen: bounded
	r.mid[1], _ = b.statusWithin(2 * time.Second)
	time.Sleep(time.Until(r.stopped.Add(etcdDown)))
	if thaw != nil {
		thaw(a, b)
	}
	srv.Restart(t)
	r.back = time.Now()
	r.down = r.back.Sub(r.stopped) // until etcd answers again
	r.w.mu.Lock()
	r.roBefore = r.w.readOnly
	r.w.mu.Unlock()
	serving := func(st pgha.Status) bool { return st.Leader != nil && st.Leader.State == pgha.LeaderPrimary && st.Etcd }
	b.eventually(30*time.Second, "a primary serves again", serving)
	n := r.w.count()
	waitAcks(t, r.w, n+200, 30*time.Second)
	r.w.mu.Lock()
	r.errs, r.lastErr = r.w.errs-errsBefore, r.w.lastErr
	r.w.mu.Unlock()
	cancel() // the write in flight fails now: not counted
	<-wdone
	<-pdone
	return r
}

// logEvents logs each agent's db events and warnings.
func (r *outageRun) logEvents(t *testing.T) {
	for _, n := range []*dbNode{r.a, r.b} {
		var lines []string
		for _, l := range strings.Split(n.stderr.String(), "\n") {
			if strings.Contains(l, "kind=db.") || strings.Contains(l, "level=WARN") {
				lines = append(lines, l)
			}
		}
		t.Logf("%s:\n%s", n.name, tail(strings.Join(lines, "\n"), 4000))
	}
}

// TestDBEtcdOutage: the cluster's only etcd stops for 10 s under write load
// with the failsafe off. The primary fences itself (no lease can be
// confirmed); when etcd returns it extends every lease it held, which
// revived the fenced leader's key and routed clients to its postgres, by
// then in recovery (issue 14: ~5 s of read-only errors). Now the fenced
// member revokes that lease as soon as etcd answers: 0 read-only errors
// after etcd returns, the outage at most the etcd outage + 1 s, and never
// two writable members (both probed directly every 50 ms).
func TestDBEtcdOutage(t *testing.T) {
	r := etcdOutage(t, false, nil, nil)
	gap, before, after := r.w.outage(r.stopped.Add(-time.Second))
	t.Logf("failsafe off: etcd stopped %v at %s (answering again after %v): last ack %s, first after %s: write outage %v; %d read-only errors after etcd returned; %d probe rounds",
		etcdDown, r.stopped.Format("15:04:05.000"), r.down.Round(10*time.Millisecond), before.Format("15:04:05.000"), after.Format("15:04:05.000"),
		gap.Round(10*time.Millisecond), r.w.readOnly-r.roBefore, r.rounds)
	if len(r.both) > 0 {
		t.Errorf("two members accepted writes, at %v", r.both)
	}
	if r.w.readOnly > r.roBefore {
		t.Errorf("%d writes reached a member in recovery after etcd returned", r.w.readOnly-r.roBefore)
	}
	if gap > r.down+time.Second {
		t.Errorf("write outage %v exceeds the etcd outage %v + 1s", gap.Round(10*time.Millisecond), r.down.Round(10*time.Millisecond))
	}
	if t.Failed() {
		r.logEvents(t)
	}
}

// TestDBEtcdOutageFailsafe: the same outage with the failsafe on (the
// default). The primary cannot renew its lease, asks b's agent, which
// cannot reach etcd either and sees a lead, and stays writable on its
// word: no write fails and no gap between acknowledgments reaches a
// second, both agents report the failsafe active, and never are two
// members writable.
func TestDBEtcdOutageFailsafe(t *testing.T) {
	r := etcdOutage(t, true, nil, nil)
	from := r.stopped.Add(-time.Second)
	gap, before, after := r.w.outage(from)
	errs, lastErr := r.errs, r.lastErr
	t.Logf("failsafe on: etcd stopped %v at %s (answering again after %v): longest gap between acks %v (%s to %s); %d failed writes (last: %v); "+
		"%d acks; %d probe rounds; a mid-outage: failsafe %+v; b: %+v",
		etcdDown, r.stopped.Format("15:04:05.000"), r.down.Round(10*time.Millisecond), gap.Round(time.Millisecond),
		before.Format("15:04:05.000"), after.Format("15:04:05.000"), errs, lastErr, r.w.count(), r.rounds, r.mid[0].Failsafe, r.mid[1].Failsafe)
	if len(r.both) > 0 {
		t.Errorf("two members accepted writes, at %v", r.both)
	}
	if errs > 0 {
		t.Errorf("%d writes failed (the last: %v); with the failsafe every write must be acknowledged", errs, lastErr)
	}
	if gap >= time.Second {
		t.Errorf("a write outage of %v (%s to %s) with the failsafe on", gap.Round(time.Millisecond), before.Format("15:04:05.000"), after.Format("15:04:05.000"))
	}
	if f := r.mid[0].Failsafe; !f.Active || f.Leader != "a" {
		t.Errorf("a's status mid-outage does not show the failsafe active: %+v", f)
	}
	if f := r.mid[1].Failsafe; !f.Active || f.Leader != "a" {
		t.Errorf("b's status mid-outage does not show its promise to a: %+v", f)
	}
	ea := r.a.stderr.String()
	for _, k := range []string{"kind=db.failsafe ", "kind=db.failsafe_ended"} {
		if !strings.Contains(ea+" ", k) {
			t.Errorf("a's events lack %s", strings.TrimSpace(k))
		}
	}
	if strings.Contains(ea, "kind=db.fenced") {
		t.Errorf("a fenced itself although b confirmed it")
	}
	if !strings.Contains(r.b.stderr.String(), "kind=db.failsafe_promised") {
		t.Errorf("b's events lack db.failsafe_promised")
	}
	if t.Failed() {
		r.logEvents(t)
	}
}

// TestDBEtcdOutageFailsafeMemberDown: the failsafe on, but b's agent is
// frozen (SIGSTOP) just before etcd stops, so it cannot answer: the
// primary cannot confirm and fences as without the failsafe — no write is
// acknowledged after the lease's fence deadline (last renewal + lease_ttl −
// retry_timeout, 3.5 s at the defaults, the renewal being before etcd
// stopped) plus a margin for a write in flight.
func TestDBEtcdOutageFailsafeMemberDown(t *testing.T) {
	var frozen int
	r := etcdOutage(t, true, func(a, b *dbNode) {
		frozen = b.cmd.Process.Pid
		syscall.Kill(frozen, syscall.SIGSTOP)
	}, func(a, b *dbNode) {
		syscall.Kill(frozen, syscall.SIGCONT)
	})
	bound := r.stopped.Add(4 * time.Second) // lease_ttl: a renewal sent before the stop + 3.5 s, and 0.5 s for a write in flight
	var last time.Time
	r.w.mu.Lock()
	for _, a := range r.w.acks {
		if a.at.After(last) && a.at.Before(r.back) {
			last = a.at
		}
	}
	r.w.mu.Unlock()
	t.Logf("failsafe on, b's agent frozen: etcd stopped at %s, answering again after %v: last write acknowledged %v after the stop (bound %v); "+
		"%d read-only errors after etcd returned; a mid-outage: failsafe %+v; %d probe rounds",
		r.stopped.Format("15:04:05.000"), r.down.Round(10*time.Millisecond), last.Sub(r.stopped).Round(time.Millisecond), bound.Sub(r.stopped),
		r.w.readOnly-r.roBefore, r.mid[0].Failsafe, r.rounds)
	if len(r.both) > 0 {
		t.Errorf("two members accepted writes, at %v", r.both)
	}
	if last.After(bound) {
		t.Errorf("a write was acknowledged %v after etcd stopped although b could not confirm the primary (bound %v)",
			last.Sub(r.stopped).Round(time.Millisecond), bound.Sub(r.stopped))
	}
	if f := r.mid[0].Failsafe; f.Active {
		t.Errorf("a's status mid-outage shows the failsafe active without b's confirmation: %+v", f)
	}
	if r.w.readOnly > r.roBefore {
		t.Errorf("%d writes reached a member in recovery after etcd returned (a stale lease routed clients)", r.w.readOnly-r.roBefore)
	}
	if ea := r.a.stderr.String(); !strings.Contains(ea, "kind=db.fenced") || !strings.Contains(ea, "did not answer") {
		t.Errorf("a's events lack a fence naming b's silence")
	}
	if t.Failed() {
		r.logEvents(t)
	}
}

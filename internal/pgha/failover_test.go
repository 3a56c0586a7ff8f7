package pgha_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/pgha"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
)

// TestFailoverAndRejoin: a bootstraps, b clones and streams; the primary's
// host is lost (its postgres SIGKILLed and its agent cut off from etcd); b
// promotes within the lease; when a comes back it rejoins as b's replica
// (pg_rewind), never as a second primary. In sync mode every acknowledged
// commit survives.
func TestFailoverAndRejoin(t *testing.T) {
	for _, mode := range []string{"sync", "async"} {
		t.Run(mode, func(t *testing.T) {
			c := newCluster(t, mode)
			a := c.start("a")
			a.waitLeader(t, "a", 60*time.Second)
			b := c.start("b")
			a.waitReplica(t, "b", "a", 60*time.Second)
			if mode == "sync" {
				waitFor(t, 20*time.Second, "b named synchronous standby", func() (bool, string) {
					st := a.status()
					return st.Sync != nil && st.Sync.Standby == "b", ""
				})
			}
			waitWritable(t, a.pgAddr, 20*time.Second)
			checkREST(t, a, b, mode)
			conn := pgtest.Connect(t, a.pgAddr)
			exec1(t, conn, "CREATE TABLE acks (id int PRIMARY KEY)")
			acked := 0
			for i := 1; i <= 200; i++ {
				exec1(t, conn, "INSERT INTO acks VALUES ($1)", i)
				acked = i
			}

			// The primary's host is lost.
			pid := a.postmasterPID()
			a.link.Cut()
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
			took := b.waitLeader(t, "b", 30*time.Second)
			t.Logf("b serves as primary %v after a was lost (lease ttl 2s)", took.Round(time.Millisecond))
			if mode == "sync" {
				if n := count(t, b.pgAddr); n != acked {
					t.Fatalf("sync mode: b holds %d rows, %d were acknowledged", n, acked)
				}
			}
			waitWritable(t, b.pgAddr, 10*time.Second)
			exec1(t, pgtest.Connect(t, b.pgAddr), "INSERT INTO acks VALUES (1000)")

			// a's agent is back in touch: it rejoins as a replica of b.
			a.link.Restore()
			b.waitReplica(t, "a", "b", 60*time.Second)
			want := count(t, b.pgAddr)
			waitFor(t, 10*time.Second, "a replays b's writes", func() (bool, string) {
				n := count(t, a.pgAddr)
				return n == want, ""
			})
			if ks := a.kinds(); !strings.Contains(ks, "db.rejoined") {
				t.Fatalf("a's events lack db.rejoined: %s", ks)
			}
			if ks := b.kinds(); !strings.Contains(ks, "db.elected") || !strings.Contains(ks, "db.promoted") {
				t.Fatalf("b's events lack the election and promotion: %s", ks)
			}
			// a is read-only.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := pgtest.Connect(t, a.pgAddr).Exec(ctx, "INSERT INTO acks VALUES (2000)")
			if err == nil || !strings.Contains(err.Error(), "read-only") {
				t.Fatalf("write on the rejoined member: %v, want a read-only error", err)
			}
		})
	}
}

// TestPrimaryPostgresCrashRestarts: only postgres dies; the agent restarts it
// in place, without a failover.
func TestPrimaryPostgresCrashRestarts(t *testing.T) {
	c := newCluster(t, "async")
	a := c.start("a")
	a.waitLeader(t, "a", 60*time.Second)
	pid := a.postmasterPID()
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(t, 20*time.Second, "postgres restarted", func() (bool, string) {
		p := a.postmasterPID()
		return p != 0 && p != pid && a.status().Leader != nil, ""
	})
	a.waitLeader(t, "a", 20*time.Second)
	waitWritable(t, a.pgAddr, 20*time.Second)
	if ks := a.kinds(); strings.Contains(ks, "db.fenced") || strings.Count(ks, "db.elected") != 1 {
		t.Fatalf("a crash of postgres alone caused a fence or a new election: %s", ks)
	}
}

// TestSwitchoverAndForcedFailover: a graceful switchover to b, then a forced failover back to a.
func TestSwitchoverAndForcedFailover(t *testing.T) {
	c := newCluster(t, "sync")
	a := c.start("a")
	a.waitLeader(t, "a", 60*time.Second)
	b := c.start("b")
	a.waitReplica(t, "b", "a", 60*time.Second)
	waitFor(t, 20*time.Second, "b named synchronous standby", func() (bool, string) {
		st := a.status()
		return st.Sync != nil && st.Sync.Standby == "b", ""
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	got, err := b.agent.Switchover(ctx, "b", "api:alice")
	if err != nil || got != "b" {
		t.Fatalf("Switchover = %q, %v", got, err)
	}
	t.Logf("switchover took %v", time.Since(start).Round(time.Millisecond))
	b.waitReplica(t, "a", "b", 60*time.Second)
	if ks := a.kinds(); !strings.Contains(ks, "db.switchover") {
		t.Fatalf("a's events lack db.switchover: %s", ks)
	}
	// The switchover to a member that is not a replica is refused at once.
	if _, err := b.agent.Switchover(ctx, "b", "api:alice"); !errors.Is(err, pgha.ErrAlreadyPrimary) || !errors.Is(err, pgha.ErrRefused) {
		t.Fatalf("switchover to the primary: %v, want ErrAlreadyPrimary, an ErrRefused", err)
	}
	if _, err := b.agent.Failover(ctx, "b", "api:alice"); !errors.Is(err, pgha.ErrAlreadyPrimary) {
		t.Fatalf("failover to the primary: %v, want ErrAlreadyPrimary", err)
	}
	if _, err := b.agent.Failover(ctx, "zz", "api:alice"); !errors.Is(err, pgha.ErrUnknownMember) {
		t.Fatalf("failover to nobody: %v, want ErrUnknownMember", err)
	}
	got, err = a.agent.Failover(ctx, "a", "api:bob")
	if err != nil || got != "a" {
		t.Fatalf("Failover = %q, %v", got, err)
	}
	a.waitReplica(t, "b", "a", 60*time.Second)
	if ks := b.kinds(); !strings.Contains(ks, "db.fenced") {
		t.Fatalf("b's events lack db.fenced: %s", ks)
	}
}

// TestPartitionedPrimaryFencesItself: the primary's agent is cut off from
// etcd while its postgres runs. It kills its own postgres before its lease
// can expire, b promotes only after that, and at no moment do both accept
// writes (probed directly, every few milliseconds). After the cut, a rejoins
// as a replica.
func TestPartitionedPrimaryFencesItself(t *testing.T) {
	c := newCluster(t, "async")
	a := c.start("a")
	a.waitLeader(t, "a", 60*time.Second)
	b := c.start("b")
	a.waitReplica(t, "b", "a", 60*time.Second)
	waitWritable(t, a.pgAddr, 20*time.Second)

	stop := make(chan struct{})
	both := make(chan string, 1)
	var probes int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			wa, wb := pgtest.Writable(a.pgAddr), pgtest.Writable(b.pgAddr)
			probes++
			if wa && wb {
				select {
				case both <- time.Now().Format("15:04:05.000"):
				default:
				}
			}
		}
	}()
	a.link.Cut()
	b.waitLeader(t, "b", 30*time.Second)
	waitWritable(t, b.pgAddr, 10*time.Second)
	close(stop)
	<-done
	select {
	case at := <-both:
		t.Fatalf("a and b both accepted writes at %s", at)
	default:
	}
	t.Logf("%d probe rounds during the cut: never two writable members", probes)
	// a stopped accepting writes before b could win (checked above); the
	// record of its fence is written once its postgres has exited, which may
	// be just after b's promotion is visible.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(a.kinds(), "db.fenced") {
		if time.Now().After(deadline) {
			t.Fatalf("a's events lack db.fenced: %s", a.kinds())
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.link.Restore()
	b.waitReplica(t, "a", "b", 60*time.Second)
}

// checkREST: the endpoints HAProxy and Patroni tooling use answer as Patroni's do.
func checkREST(t *testing.T, primary, replica *node, mode string) {
	t.Helper()
	type restCase struct {
		n            *node
		method, path string
		want         int
	}
	cases := []restCase{
		{primary, "OPTIONS", "/primary", 200}, // HAProxy's default check method
		{primary, "OPTIONS", "/", 200},        // Patroni: "/" is the primary (its shipped haproxy.cfg checks it)
		{replica, "OPTIONS", "/", 503},
		{replica, "GET", "/", 503},
		{primary, "GET", "/leader", 200},
		{replica, "GET", "/leader", 503},
		{primary, "GET", "/standby-leader", 503},
		{replica, "GET", "/read-only?lag=16MB", 200},
		{primary, "GET", "/master", 200},
		{primary, "HEAD", "/read-write", 200},
		{replica, "OPTIONS", "/primary", 503},
		{primary, "GET", "/replica", 503},
		{replica, "GET", "/replica", 200},
		{replica, "GET", "/replica?lag=16MB", 200},
		{replica, "GET", "/read-only", 200},
		{primary, "GET", "/read-only", 200},
		{primary, "GET", "/health", 200},
		{replica, "GET", "/health", 200},
		{primary, "GET", "/liveness", 200},
		{replica, "GET", "/readiness", 200},
		{primary, "GET", "/patroni", 200},
		{replica, "GET", "/replica?lag=lots", 400},
		{replica, "GET", "/nope", 404},
		{replica, "POST", "/primary", 405},
	}
	if mode == "sync" {
		cases = append(cases, restCase{replica, "GET", "/sync", 200}, restCase{replica, "GET", "/async", 503})
	} else {
		cases = append(cases, restCase{replica, "GET", "/sync", 503}, restCase{replica, "GET", "/async", 200})
	}
	for _, c := range cases {
		// The replica's view of its streaming state may lag a loop.
		waitFor(t, 5*time.Second, c.method+" "+c.path+" on "+c.n.name, func() (bool, string) {
			got := c.n.restCode(t, c.method, c.path)
			return got == c.want, fmt.Sprint(got)
		})
	}
}

package fleet_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/fleet"
)

// agentT is one agent running against a real etcd until stopped.
type agentT struct {
	*fleet.Agent
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	events []medic.Event
}

func startAgent(t *testing.T, endpoint, host string, ttl, grace time.Duration) *agentT {
	t.Helper()
	cli, err := etcd.Dial(etcd.Config{Endpoints: []string{endpoint}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	at := &agentT{done: make(chan struct{})}
	a, err := fleet.New(fleet.Options{Fleet: "prod", Host: host, Address: "10.0.0." + host[len(host)-1:], Capacity: 4,
		Version: "test", Prefix: "/medic", LeaseTTL: ttl, Grace: grace, Etcd: cli,
		Record: func(_ context.Context, ev medic.Event) {
			at.mu.Lock()
			at.events = append(at.events, ev)
			at.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	at.Agent = a
	ctx, cancel := context.WithCancel(context.Background())
	at.cancel = cancel
	go func() { defer close(at.done); a.Serve(ctx); cli.Close() }()
	t.Cleanup(at.stop)
	return at
}

func (at *agentT) stop() {
	at.cancel()
	<-at.done
}

func (at *agentT) states() string {
	s := ""
	for _, m := range at.Status().Hosts {
		s += fmt.Sprintf("%s=%s ", m.Host, m.State)
	}
	return s
}

// kinds lists the events at recorded for host after its join (which is
// recorded only when host was not in at's first snapshot).
func (at *agentT) kinds(host string) []medic.EventKind {
	at.mu.Lock()
	defer at.mu.Unlock()
	var ks []medic.EventKind
	for _, ev := range at.events {
		if ev.Target == "fleet/prod/"+host && (len(ks) > 0 || ev.Kind != medic.EventHostJoined) {
			ks = append(ks, ev.Kind)
		}
	}
	return ks
}

// waitStates polls at's view until it reads want, within d.
func waitStates(t *testing.T, at *agentT, want string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if at.states() == want {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("after %v: states %q, want %q", d, at.states(), want)
	return 0
}

// TestMembershipAgainstEtcd: three agents join; one stops cleanly (its
// lease revoked): the others see it suspect at once and lost only after the
// grace; it returns; a fourth agent with a taken name waits instead of
// taking the key over.
func TestMembershipAgainstEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	const ttl, grace = 2 * time.Second, 3 * time.Second
	a := startAgent(t, srv.Endpoint, "h1", ttl, grace)
	startAgent(t, srv.Endpoint, "h2", ttl, grace)
	c := startAgent(t, srv.Endpoint, "h3", ttl, grace)
	waitStates(t, a, "h1=up h2=up h3=up ", 5*time.Second)
	// The watch can show h1's key before h1's own create has returned and
	// marked it joined (CI saw Joined false with every host up).
	waitJoined(t, a)
	st := a.Status()
	if !st.Joined || st.Lease == 0 || !st.Watching || st.Hosts[1].Address != "10.0.0.2" || st.Hosts[1].Capacity != 4 {
		t.Fatalf("status %+v", st)
	}
	// A second agent named h2 does not take h2's key: the first keeps it.
	dup := startAgent(t, srv.Endpoint, "h2", ttl, grace)
	time.Sleep(ttl)
	if dup.Status().Joined {
		t.Fatal("a second agent named h2 joined over the first")
	}
	dup.stop()

	c.stop()
	waitStates(t, a, "h1=up h2=up h3=suspect ", time.Second) // revoked: seen at once
	suspectAt := time.Now()
	waitStates(t, a, "h1=up h2=up h3=lost ", grace+time.Second)
	if d := time.Since(suspectAt); d < grace-100*time.Millisecond {
		t.Fatalf("lost %v after suspect, before the grace %v", d, grace)
	}
	c = startAgent(t, srv.Endpoint, "h3", ttl, grace)
	waitStates(t, a, "h1=up h2=up h3=up ", 5*time.Second)
	waitStates(t, c, "h1=up h2=up h3=up ", 5*time.Second)
	want := []medic.EventKind{medic.EventHostSuspect, medic.EventHostLost, medic.EventHostReturned}
	if got := a.kinds("h3"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("h1 recorded %v for h3, want %v", got, want)
	}
}

// TestPartitionedHostIsLostAndRejoins: a host cut from etcd stops renewing;
// its lease expires after the TTL, the others see it suspect, then lost
// after the grace; when the link returns it joins again with a new lease.
func TestPartitionedHostIsLostAndRejoins(t *testing.T) {
	srv := etcdtest.Start(t)
	link := etcdtest.NewLink(t, srv.Endpoint)
	const ttl, grace = 2 * time.Second, 2 * time.Second
	a := startAgent(t, srv.Endpoint, "h1", ttl, grace)
	b := startAgent(t, link.Addr, "h2", ttl, grace)
	waitStates(t, a, "h1=up h2=up ", 5*time.Second)
	lease := b.Status().Lease
	link.Cut()
	cut := time.Now()
	waitStates(t, a, "h1=up h2=suspect ", ttl+2*time.Second)
	if d := time.Since(cut); d < ttl-ttl/3-100*time.Millisecond {
		// The lease lives at least TTL after the last renewal, at most TTL/3 before the cut.
		t.Fatalf("suspect %v after the cut, sooner than the lease allows", d)
	}
	suspect := time.Since(cut)
	waitStates(t, a, "h1=up h2=lost ", grace+time.Second)
	t.Logf("lease_ttl %v, grace %v: h2 cut from etcd; suspect after %v, lost after %v",
		ttl, grace, suspect.Round(10*time.Millisecond), time.Since(cut).Round(10*time.Millisecond))
	link.Restore()
	waitStates(t, a, "h1=up h2=up ", 3*ttl)
	if nl := b.Status().Lease; nl == lease || nl == 0 {
		t.Fatalf("h2 rejoined with lease %x, want a new one (was %x)", nl, lease)
	}
	want := []medic.EventKind{medic.EventHostSuspect, medic.EventHostLost, medic.EventHostReturned}
	if got := a.kinds("h2"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("h1 recorded %v for h2, want %v", got, want)
	}
}

// TestDeletedKeyIsWrittenAgain: this host's key deleted while its lease
// lives (by hand, or etcd restored from a snapshot) comes back at the next
// renewal instead of leaving a live host suspect, then lost.
func TestDeletedKeyIsWrittenAgain(t *testing.T) {
	srv := etcdtest.Start(t)
	a := startAgent(t, srv.Endpoint, "h1", 3*time.Second, 3*time.Second)
	waitStates(t, a, "h1=up ", 5*time.Second)
	cli, err := etcd.Dial(etcd.Config{Endpoints: []string{srv.Endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if err := cli.Delete(context.Background(), fleet.HostsPrefix("/medic", "prod")+"/h1"); err != nil {
		t.Fatal(err)
	}
	// Suspect for at most one renewal period (1s), then back.
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		got := a.kinds("h1")
		if len(got) >= 2 && got[len(got)-1] == medic.EventHostReturned && a.states() == "h1=up " {
			break
		}
		if time.Since(start) > 3*time.Second {
			t.Fatalf("after 3s: h1 is %s, recorded %v; want its key gone and back", a.states(), got)
		}
	}
}

// TestJoinDelay: the wait before the first join is jitter × r, 0 for a
// jitter of 0, and never beyond the jitter.
func TestJoinDelay(t *testing.T) {
	for _, c := range []struct {
		jitter time.Duration
		r      float64
		want   time.Duration
	}{
		{0, 0.5, 0},
		{2 * time.Second, 0, 0},
		{2 * time.Second, 0.5, time.Second},
		{2 * time.Second, 0.999, 1998 * time.Millisecond},
		{2 * time.Second, 7, 2 * time.Second}, // a bad source is clamped
		{2 * time.Second, -1, 0},
	} {
		if got := fleet.JoinDelay(c.jitter, c.r); got != c.want {
			t.Errorf("JoinDelay(%v, %v) = %v, want %v", c.jitter, c.r, got, c.want)
		}
	}
}

// TestJoinJitter: with join_jitter 2s and a random source giving 0.75, the
// agent joins only once its (injected) clock has moved 1.5s, never before.
func TestJoinJitter(t *testing.T) {
	srv := etcdtest.Start(t)
	cli, err := etcd.Dial(etcd.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	clk := clocktest.New(time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC))
	a, err := fleet.New(fleet.Options{Fleet: "prod", Host: "h1", Address: "10.0.0.1", Prefix: "/medic",
		LeaseTTL: 3 * time.Second, Grace: 3 * time.Second, Etcd: cli, Clock: clk,
		JoinJitter: 2 * time.Second, Rand: func() float64 { return 0.75 }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	start := clk.Now()
	// Move the clock 50ms at a time (each step after a real 20ms, room for
	// the agent to act) until it has joined: bounded to 10s of fake time.
	for i := 0; !a.Status().Joined; i++ {
		if i > 200 {
			t.Fatalf("not joined after %v of fake time (join jitter 2s × 0.75 = 1.5s)", clk.Now().Sub(start))
		}
		if a.Status().Lease != 0 && clk.Now().Sub(start) < 1500*time.Millisecond {
			t.Fatalf("granted a lease after %v of fake time, before the 1.5s join delay", clk.Now().Sub(start))
		}
		time.Sleep(20 * time.Millisecond)
		clk.Advance(50 * time.Millisecond)
	}
	if d := clk.Now().Sub(start); d < 1500*time.Millisecond {
		t.Fatalf("joined after %v of fake time, before the 1.5s join delay", d)
	}
	t.Logf("joined after %v of fake time", clk.Now().Sub(start))
}

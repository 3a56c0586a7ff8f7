package etcd_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
)

func dial(t *testing.T, endpoint string) *etcd.Client {
	t.Helper()
	c, err := etcd.Dial(etcd.Config{Endpoints: []string{endpoint}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSessionSafeUntilAndExpiry(t *testing.T) {
	srv := etcdtest.Start(t)
	c := dial(t, srv.Endpoint)
	ctx := ctxT(t)
	before := time.Now()
	s, err := c.NewSession(ctx, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.TTL() < 2*time.Second {
		t.Fatalf("TTL %v, want ≥ 2s", s.TTL())
	}
	// SafeUntil counts from the time the grant was sent, never later.
	if su := s.SafeUntil(); su.Before(before.Add(2*time.Second)) || su.After(time.Now().Add(2*time.Second)) {
		t.Fatalf("SafeUntil %v not within [sent+ttl, now+ttl]", su)
	}
	if err := s.Put(ctx, "/t/member", "x"); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	su, err := s.Renew(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if su.Before(sent.Add(s.TTL())) {
		t.Fatalf("after renew SafeUntil %v is before send time + ttl %v", su, sent.Add(s.TTL()))
	}
	// The server agrees the lease lives at least until SafeUntil.
	left, err := c.TimeToLive(ctx, s.Lease())
	if err != nil || left <= 0 {
		t.Fatalf("TimeToLive = %v, %v", left, err)
	}
	// Without renewals the lease expires and its keys go with it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok, err := c.Get(ctx, "/t/member"); err == nil && !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the key bound to an unrenewed lease outlived it")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if time.Now().Before(su) {
		t.Fatalf("the lease expired at %v, before SafeUntil %v", time.Now(), su)
	}
	if _, err := s.Renew(ctx); !errors.Is(err, etcd.ErrLeaseExpired) {
		t.Fatalf("Renew after expiry = %v, want ErrLeaseExpired", err)
	}
	if !s.Expired() {
		t.Fatal("Expired() = false after a renewal found the lease gone")
	}
}

func TestElectionFencing(t *testing.T) {
	srv := etcdtest.Start(t)
	c := dial(t, srv.Endpoint)
	ctx := ctxT(t)
	a, err := c.NewSession(ctx, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.NewSession(ctx, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	ea, eb := a.Election("/t/leader"), b.Election("/t/leader")
	if err := ea.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if ea.Rev() == 0 {
		t.Fatal("leader has no fencing revision")
	}
	l, err := c.Leader(ctx, "/t/leader")
	if err != nil || string(l.Value) != "a" || l.CreateRev != ea.Rev() || l.Lease != a.Lease() {
		t.Fatalf("Leader = %+v, %v; want a at rev %d", l, err, ea.Rev())
	}
	if err := ea.PutIfLeader(ctx, "/t/sync", "a-wrote"); err != nil {
		t.Fatal(err)
	}
	// b queues behind a; a campaign bounded by a deadline withdraws.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if err := eb.Campaign(short, "b"); err == nil {
		t.Fatal("b won while a leads")
	}
	cancel()
	// a loses its lease (revoked: as if it expired); b takes over.
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := eb.Campaign(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := eb.PutIfLeader(ctx, "/t/sync", "b-wrote"); err != nil {
		t.Fatal(err)
	}
	// The old leader's fenced writes fail and change nothing.
	if err := ea.PutIfLeader(ctx, "/t/sync", "a-late"); !errors.Is(err, etcd.ErrNotLeader) {
		t.Fatalf("stale leader's write = %v, want ErrNotLeader", err)
	}
	if kv, _, _ := c.Get(ctx, "/t/sync"); string(kv.Value) != "b-wrote" {
		t.Fatalf("/t/sync = %q after a stale write", kv.Value)
	}
	if err := eb.Proclaim(ctx, "b2"); err != nil {
		t.Fatal(err)
	}
	if l, _ := c.Leader(ctx, "/t/leader"); string(l.Value) != "b2" {
		t.Fatalf("leader value %q after Proclaim", l.Value)
	}
	if err := eb.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Leader(ctx, "/t/leader"); !errors.Is(err, etcd.ErrNoLeader) {
		t.Fatalf("Leader after resign = %v, want ErrNoLeader", err)
	}
	if err := c.Create(ctx, "/t/init", "x", 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, "/t/init", "y", 0); !errors.Is(err, etcd.ErrExists) {
		t.Fatalf("second Create = %v, want ErrExists", err)
	}
}

func TestWatchFollowsChanges(t *testing.T) {
	srv := etcdtest.Start(t)
	c := dial(t, srv.Endpoint)
	ctx := ctxT(t)
	if err := c.Put(ctx, "/w/a", "1"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var last etcd.Snapshot
	got := make(chan struct{}, 100)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(wctx, "/w", nil, func(s etcd.Snapshot) {
			mu.Lock()
			last = s
			mu.Unlock()
			got <- struct{}{}
		})
	}()
	waitFor := func(what string, ok func(etcd.Snapshot) bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			mu.Lock()
			s := last
			mu.Unlock()
			if s.KVs != nil && ok(s) {
				return
			}
			select {
			case <-got:
			case <-deadline:
				t.Fatalf("watch never saw %s; last %+v", what, s)
			}
		}
	}
	waitFor("the initial key", func(s etcd.Snapshot) bool { return string(s.KVs["/w/a"].Value) == "1" })
	s, err := c.NewSession(ctx, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Election("/w/leader").Campaign(ctx, "me"); err != nil {
		t.Fatal(err)
	}
	c.Put(ctx, "/w/b", "2")
	c.Delete(ctx, "/w/a")
	waitFor("b put, a deleted and a leader", func(s etcd.Snapshot) bool {
		l, ok := s.First("/w/leader")
		_, hasA := s.KVs["/w/a"]
		return !hasA && string(s.KVs["/w/b"].Value) == "2" && ok && string(l.Value) == "me"
	})
	if u := last.Under("/w"); len(u) != 1 || string(u["b"].Value) != "2" {
		t.Fatalf("Under(/w) = %v", u)
	}
	s.Close(ctx)
	waitFor("the leader gone with its lease", func(s etcd.Snapshot) bool { _, ok := s.First("/w/leader"); return !ok })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch returned %v, want context.Canceled", err)
	}
}

func TestLinkCutPartitionsTheClient(t *testing.T) {
	srv := etcdtest.Start(t)
	link := etcdtest.NewLink(t, srv.Endpoint)
	c := dial(t, link.Addr)
	ctx := ctxT(t)
	s, err := c.NewSession(ctx, 3*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	link.Cut()
	rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = s.Renew(rctx)
	cancel()
	if err == nil {
		t.Fatal("renewed through a cut link")
	}
	link.Restore()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err = s.Renew(rctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no renewal after the link was restored: %v", err)
		}
	}
}

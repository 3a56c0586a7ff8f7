package etcd_test

import (
	"context"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
)

// A Cut partitions the client from the real etcd: requests fail at once,
// the session cannot renew, and after Restore the client reconnects.
func TestCutPartitionsTheClient(t *testing.T) {
	srv := etcdtest.Start(t)
	cut := &etcd.Cut{}
	c, err := etcd.Dial(etcd.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: time.Second, Cut: cut})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Put(ctx, "/cut/a", "1"); err != nil {
		t.Fatalf("put before the cut: %v", err)
	}
	s, err := c.NewSession(ctx, 3*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	cut.Cut()
	if !cut.Active() {
		t.Fatal("cut not active")
	}
	rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = s.Renew(rctx)
	rcancel()
	if err == nil {
		t.Fatal("renewed through a cut")
	}
	cut.Restore()
	renewsWithin(t, ctx, s, 5*time.Second, 300*time.Millisecond, "the cut was restored")
	if _, ok, err := c.Get(ctx, "/cut/a"); err != nil || !ok {
		t.Fatalf("get after restore: ok %v, %v", ok, err)
	}
}

// A blackhole lets nothing through and errors nothing: requests time out,
// as in a network that drops packets, and resume after Restore.
func TestBlackholeStallsTheClient(t *testing.T) {
	srv := etcdtest.Start(t)
	cut := &etcd.Cut{}
	c, err := etcd.Dial(etcd.Config{Endpoints: []string{srv.Endpoint}, DialTimeout: time.Second, Cut: cut})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := c.NewSession(ctx, 3*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	cut.Blackhole()
	start := time.Now()
	rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = s.Renew(rctx)
	rcancel()
	if err == nil {
		t.Fatal("renewed through a blackhole")
	}
	if e := time.Since(start); e < 400*time.Millisecond {
		t.Fatalf("the renewal failed after %v: a blackhole must time out, not refuse (%v)", e, err)
	}
	cut.Restore()
	renewsWithin(t, ctx, s, 10*time.Second, 500*time.Millisecond, "the blackhole ended")
}

// renewsWithin retries renewing s, each try bounded by try, until one
// succeeds or within passes.
func renewsWithin(t *testing.T, ctx context.Context, s *etcd.Session, within, try time.Duration, after string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		rctx, cancel := context.WithTimeout(ctx, try)
		_, err := s.Renew(rctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no renewal after %s: %v", after, err)
		}
	}
}

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
	deadline := time.Now().Add(5 * time.Second)
	for {
		rctx, rcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err = s.Renew(rctx)
		rcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no renewal after the cut was restored: %v", err)
		}
	}
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err = s.Renew(rctx)
		rcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no renewal after the blackhole ended: %v", err)
		}
	}
}

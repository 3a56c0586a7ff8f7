package etcd_test

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
)

// TestMembers: a one-member cluster lists its member healthy and leading;
// once it is stopped, the member list fails (no member answers) and its
// endpoint is unhealthy. Quorum is a majority.
func TestMembers(t *testing.T) {
	srv := etcdtest.Start(t)
	c := dial(t, srv.Endpoint)
	ms, err := c.Members(ctxT(t), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || !ms[0].Healthy || !ms[0].Leader || ms[0].Endpoint == "" || ms[0].Name == "" {
		t.Fatalf("members %+v", ms)
	}
	ep := ms[0].Endpoint
	srv.Stop()
	if _, err := c.MemberHealthy(ctxT(t), ep, 300*time.Millisecond); err == nil {
		t.Fatal("a stopped member is healthy")
	}
	for n, q := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3} {
		if etcd.Quorum(n) != q {
			t.Errorf("Quorum(%d) = %d, want %d", n, etcd.Quorum(n), q)
		}
	}
}

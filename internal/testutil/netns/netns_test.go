package netns_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/testutil/netns"
)

// TestHostsClusterKillPartition makes two hosts and a 3-member etcd cluster
// on one bridge, and checks what fleet tests rely on: a host reaches etcd,
// a partitioned host does not and reaches it again once healed, a
// blackholed address only is cut, a killed host's processes are all gone
// (by PID) and the cluster survives the loss of one member.
func TestHostsClusterKillPartition(t *testing.T) {
	n := netns.Require(t)
	if _, err := exec.LookPath("etcdctl"); err != nil {
		t.Skip("etcdctl not found (install the Debian package etcd-client)")
	}
	c := n.MustStartCluster(t, 3)
	h1, h2 := n.MustAddHost(t, "h1"), n.MustAddHost(t, "h2")
	eps := strings.Join(c.Endpoints, ",")
	put := func(h *netns.Host, key string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", h.NS, "etcdctl", "--endpoints", eps,
			"--dial-timeout", "1s", "--command-timeout", "2s", "put", key, h.Name)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return &cmdErr{err, string(out)}
		}
		return nil
	}
	// putSoon is put retried for 20s: right after a member is killed (or
	// a host healed) the cluster may need a leader election first, which
	// takes longer on a loaded machine.
	putSoon := func(h *netns.Host, key string) error {
		deadline := time.Now().Add(20 * time.Second)
		for {
			err := put(h, key)
			if err == nil || time.Now().After(deadline) {
				return err
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if err := putSoon(h1, "a"); err != nil {
		t.Fatalf("h1 cannot write to etcd: %v", err)
	}
	if err := h1.Partition(); err != nil {
		t.Fatal(err)
	}
	if err := put(h1, "b"); err == nil {
		t.Fatal("a partitioned host wrote to etcd")
	}
	if err := putSoon(h2, "b"); err != nil {
		t.Fatalf("h2 cannot write while h1 is partitioned: %v", err)
	}
	if err := h1.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := putSoon(h1, "c"); err != nil {
		t.Fatalf("h1 cannot write once healed: %v", err)
	}
	// Cut h2 from every etcd member but not from h1.
	for _, m := range c.Members {
		if err := h2.Blackhole(m.Host.Addr); err != nil {
			t.Fatal(err)
		}
	}
	if err := put(h2, "d"); err == nil {
		t.Fatal("a host blackholed from every member wrote to etcd")
	}
	if err := h2.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := putSoon(h2, "d"); err != nil {
		t.Fatalf("h2 cannot write once its blackholes are gone: %v", err)
	}

	// Kill h1 with a process (and its child) running in it.
	p, err := h1.Start(h1.Command("sh", "-c", "sleep 600 & sleep 600"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := h1.PIDs()
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("h1 runs %v, want sh and its sleep", pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := h1.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("the killed host's process is still running")
	}
	if pids, _ := h1.PIDs(); len(pids) != 0 {
		t.Fatalf("processes %v left on a killed host", pids)
	}

	// One member of three lost: the others still take writes.
	if err := c.Members[0].Kill(); err != nil {
		t.Fatal(err)
	}
	if err := putSoon(h2, "e"); err != nil {
		t.Fatalf("the cluster refuses a write with 2 of 3 members: %v", err)
	}
	if err := c.Members[0].Restart(); err != nil {
		t.Fatal(err)
	}
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	deadline = time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := cli.Get(ctx, "e")
		cancel()
		if err == nil && len(r.Kvs) == 1 && string(r.Kvs[0].Value) == "h2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("read back e: %v %v", r, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type cmdErr struct {
	err error
	out string
}

func (e *cmdErr) Error() string { return e.err.Error() + ": " + e.out }

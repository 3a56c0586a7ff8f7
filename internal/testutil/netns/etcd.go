package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Cluster is a real etcd cluster, each member in its own namespace on the
// Net (hosts e1, e2, e3…), listening for clients on <its address>:2379 and
// for peers on :2380.
type Cluster struct {
	Members   []*Member
	Endpoints []string // host:port of every member's client URL
	dir       string
}

// Member is one etcd process of a Cluster.
type Member struct {
	Name string
	Host *Host
	args []string
	log  string
	proc *Proc
}

// Endpoint is the member's client address, host:port.
func (m *Member) Endpoint() string { return m.Host.Addr.String() + ":2379" }

// StartCluster runs an etcd cluster of size members on n, with their data
// and logs under dir, and waits until every member answers. Its members
// stop with the Net's Close (or Stop).
func (n *Net) StartCluster(dir string, size int) (*Cluster, error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return nil, errors.New("etcd not found (install the Debian package etcd-server)")
	}
	c := &Cluster{dir: dir}
	var initial []string
	for i := range size {
		h, err := n.AddHost(fmt.Sprintf("e%d", i+1))
		if err != nil {
			return nil, err
		}
		m := &Member{Name: h.Name, Host: h, log: filepath.Join(dir, h.Name+".log")}
		c.Members = append(c.Members, m)
		c.Endpoints = append(c.Endpoints, m.Endpoint())
		initial = append(initial, fmt.Sprintf("%s=http://%s:2380", m.Name, h.Addr))
	}
	for _, m := range c.Members {
		a := m.Host.Addr.String()
		m.args = []string{bin, "--name", m.Name, "--data-dir", filepath.Join(dir, m.Name),
			"--listen-client-urls", "http://" + a + ":2379", "--advertise-client-urls", "http://" + a + ":2379",
			"--listen-peer-urls", "http://" + a + ":2380", "--initial-advertise-peer-urls", "http://" + a + ":2380",
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "medic-" + n.ID, "--log-level", "warn"}
		if err := m.start(); err != nil {
			return nil, err
		}
	}
	for _, m := range c.Members {
		if err := m.waitReady(30 * time.Second); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// MustStartCluster is StartCluster for a test: it skips (or fails with
// MEDIC_REQUIRE_INTEGRATION=1) when etcd is missing, and fails on an error.
func (n *Net) MustStartCluster(tb testing.TB, size int) *Cluster {
	tb.Helper()
	if _, err := exec.LookPath("etcd"); err != nil {
		msg := "etcd not found (install the Debian package etcd-server)"
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	c, err := n.StartCluster(tb.TempDir(), size)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func (m *Member) start() error {
	f, err := os.OpenFile(m.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := m.Host.Command(m.args[0], m.args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	p, err := m.Host.Start(cmd)
	f.Close() // the child holds its own copy
	if err != nil {
		return err
	}
	m.proc = p
	return nil
}

// PID is the member's process as this package started it (its first
// start or its last Restart).
func (m *Member) PID() int { return m.proc.Cmd.Process.Pid }

// Argv is the member's etcd command line (run in its host's namespace with
// ip netns exec <Host.NS>), for a test that stops and starts the member
// with commands of its own.
func (m *Member) Argv() []string { return slices.Clone(m.args) }

// Log is the file the member's output goes to.
func (m *Member) Log() string { return m.log }

// Kill ends the member at once (its host is killed: SIGKILL by PID, link
// down), as in the loss of an etcd machine.
func (m *Member) Kill() error { return m.Host.Kill() }

// Restart brings a killed member back on its data, and waits until it answers.
func (m *Member) Restart() error {
	if err := m.Host.Revive(); err != nil {
		return err
	}
	if err := m.start(); err != nil {
		return err
	}
	return m.waitReady(30 * time.Second)
}

func (m *Member) waitReady(within time.Duration) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.Endpoint()}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err = cli.Get(ctx, "health") // a linearizable read: the member sees a leader
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-m.proc.Done():
			b, _ := os.ReadFile(m.log)
			return fmt.Errorf("etcd member %s exited: %v\n%s", m.Name, m.proc.Err(), tail(string(b), 2000))
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(m.log)
			return fmt.Errorf("etcd member %s not ready after %v: %v\n%s", m.Name, within, err, tail(string(b), 2000))
		}
		time.Sleep(50 * time.Millisecond) // polling a deadline for an external process
	}
}

// Client returns a client of every member, closed by the caller.
func (c *Cluster) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}

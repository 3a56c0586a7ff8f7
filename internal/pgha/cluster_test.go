package pgha_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/pgha"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
)

// node is one member: its agent runs in the test process, its postgres as a child.
type node struct {
	name   string
	dir    string
	pgAddr string
	rest   string // Patroni-compatible endpoints
	link   *etcdtest.Link
	agent  *pgha.Agent
	cancel context.CancelFunc
	done   chan error

	mu     sync.Mutex
	events []medic.Event
}

// cluster is an etcd and the members that share it.
type cluster struct {
	t     *testing.T
	etcd  *etcdtest.Server
	mode  string
	nodes map[string]*node
}

func newCluster(t *testing.T, mode string) *cluster {
	pgtest.Require(t)
	return &cluster{t: t, etcd: etcdtest.Start(t), mode: mode, nodes: map[string]*node{}}
}

// testDatabase is the member config the tests use: a 2s lease so that a failover takes seconds.
// Its bin_dir is pgtest.CachedBinDir: initdb copies a template cluster.
func testDatabase(t *testing.T, dir, listen, rest, mode string) *config.Database {
	d := &config.Database{
		Postgres:     config.Postgres{BinDir: pgtest.CachedBinDir(t), Data: filepath.Join(dir, "pg"), Listen: listen},
		REST:         &config.DatabaseREST{Listen: rest},
		Replication:  config.Replication{Mode: mode},
		LeaseTTL:     config.Duration(2 * time.Second),
		LoopWait:     config.Duration(200 * time.Millisecond),
		RetryTimeout: config.Duration(300 * time.Millisecond),
	}
	d.SetDefaults()
	return d
}

// start runs member name until the test ends (or stop).
func (c *cluster) start(name string) *node {
	t := c.t
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) { // the postgres user must reach its data directory
		if strings.HasPrefix(d, os.TempDir()+"/") {
			os.Chmod(d, 0o755)
		}
	}
	n := &node{name: name, dir: dir, pgAddr: fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t)),
		rest: fmt.Sprintf("127.0.0.1:%d", etcdtest.FreePort(t)), done: make(chan error, 1)}
	if old, ok := c.nodes[name]; ok {
		n.dir, n.pgAddr, n.rest, n.link = old.dir, old.pgAddr, old.rest, old.link
	} else {
		n.link = etcdtest.NewLink(t, c.etcd.Endpoint)
	}
	cli, err := etcd.Dial(etcd.Config{Endpoints: []string{n.link.Addr}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(testWriter{t, name}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n.agent, err = pgha.New(pgha.Options{Cluster: "pg", Member: name, Config: testDatabase(t, n.dir, n.pgAddr, n.rest, c.mode),
		Etcd: cli, Prefix: "/medic-test", StateDir: filepath.Join(n.dir, "state"), Logger: logger,
		Record: func(_ context.Context, ev medic.Event) { n.mu.Lock(); n.events = append(n.events, ev); n.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- n.agent.Serve(ctx); cli.Close() }()
	t.Cleanup(n.stop)
	c.nodes[name] = n
	return n
}

// stop stops the member's agent (which stops its postgres) and waits.
func (n *node) stop() {
	n.cancel()
	<-n.done
	n.done <- nil // stop may be called again
}

func (n *node) kinds() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var ks []string
	for _, e := range n.events {
		ks = append(ks, string(e.Kind))
	}
	return strings.Join(ks, " ")
}

// postmasterPID reads the member's postmaster.pid (0: none).
func (n *node) postmasterPID() int {
	b, err := os.ReadFile(filepath.Join(n.dir, "pg", "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(first))
	return pid
}

type testWriter struct {
	t    *testing.T
	name string
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s: %s", w.name, strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for time.Since(start) < within {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		last = state
		time.Sleep(50 * time.Millisecond) // polling a real cluster against a deadline
	}
	t.Fatalf("%s: not within %v; last state: %s", what, within, last)
	return 0
}

func (n *node) status() pgha.Status {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return n.agent.Status(ctx)
}

// leaderIs waits until member leads and serves as primary, per n's view.
func (n *node) waitLeader(t *testing.T, member string, within time.Duration) time.Duration {
	t.Helper()
	return waitFor(t, within, n.name+" sees "+member+" as primary", func() (bool, string) {
		st := n.status()
		if st.Leader == nil {
			return false, "no leader"
		}
		return st.Leader.Member == member && st.Leader.State == pgha.LeaderPrimary, fmt.Sprintf("%+v", *st.Leader)
	})
}

// waitReplica waits until member streams from upstream, per n's view.
func (n *node) waitReplica(t *testing.T, member, upstream string, within time.Duration) {
	t.Helper()
	waitFor(t, within, member+" streams from "+upstream, func() (bool, string) {
		for _, mi := range n.status().Members {
			if mi.Name == member {
				return mi.Role == pgha.RoleReplica && mi.Streaming && mi.Upstream == upstream, fmt.Sprintf("%+v", mi)
			}
		}
		return false, "no member key"
	})
}

func exec1(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, addr string) int {
	t.Helper()
	c := pgtest.Connect(t, addr)
	var n int
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.QueryRow(ctx, "SELECT count(*) FROM acks").Scan(&n); err != nil {
		t.Fatalf("count on %s: %v", addr, err)
	}
	return n
}

// waitWritable waits until the postgres at addr accepts a write.
func waitWritable(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	waitFor(t, within, addr+" accepts writes", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres sslmode=disable", host, port))
		if err != nil {
			return false, err.Error()
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "CREATE TEMP TABLE probe (x int)")
		return err == nil, fmt.Sprint(err)
	})
}

// rest answers method path on the member's Patroni-compatible endpoint with the status code.
func (n *node) restCode(t *testing.T, method, path string) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+n.rest+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, n.name, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

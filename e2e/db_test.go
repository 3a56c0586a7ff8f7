package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/medic-dev/medic/internal/backup"
	"github.com/medic-dev/medic/internal/etcd/etcdtest"
	"github.com/medic-dev/medic/internal/pgha"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
)

// dbNode is one `medic run` keeping one member of database "pg".
type dbNode struct {
	t                   *testing.T
	name, dir           string
	api, pg, rest, prim string // addresses
	token               string // admin
	link                *etcdtest.Link
	cmd                 *exec.Cmd
	stderr              *lockedBuffer
	done                chan error
}

// newDBNode writes member name's config (defaults for every timing) in a
// directory the postgres user can reach; its etcd traffic goes through a
// link the test can cut.
func newDBNode(t *testing.T, name, etcdAddr, mode string) *dbNode {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	os.MkdirAll(dir, 0o755)
	for d := filepath.Dir(dir); strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	p := func() string { return fmt.Sprintf("127.0.0.1:%d", freePort(t, 1)) }
	n := &dbNode{t: t, name: name, dir: dir, api: p(), pg: p(), rest: p(), prim: p(), link: etcdtest.NewLink(t, etcdAddr)}
	tok, err := runMedic("token", "add", "e2e", "--role", "admin", "-f", filepath.Join(dir, "tokens.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n.token = strings.TrimSpace(tok)
	cfg := fmt.Sprintf(`name: %s
data_dir: %s/medic
etcd: {endpoints: ["%s"], prefix: /medic/e2e}
api: {listen: %s, tokens_file: tokens.yaml}
databases:
  pg:
    postgres:
      bin_dir: %s
      data: ./pg
      listen: %s
      user: postgres
%s    replication: {mode: %s}
    rest: {listen: %s}
    proxy: {primary: %s, replicas: %s}
    drills: {allow: true}
`, name, dir, n.link.Addr, n.api, pgtest.CachedBinDir(t), n.pg, fastPGParameters, mode, n.rest, n.prim, p())
	if err := os.WriteFile(filepath.Join(dir, "medic.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.stop)
	return n
}

// fastPGParameters is the line of newDBNode's config that speeds
// PostgreSQL up for tests, through medic's own pass-through
// (databases.*.postgres.parameters): no fsync (a test kills processes,
// never the machine, and the page cache survives that) and a small shared
// memory segment. medic's own settings (synchronous_commit,
// full_page_writes …) come after these and win, so what a failover may
// lose is what it may lose in production. A test whose window depends on
// PostgreSQL's own timing drops the line (productionPostgres).
const fastPGParameters = `      parameters: {fsync: "off", shared_buffers: 16MB}` + "\n"

// productionPostgres removes the test-only PostgreSQL settings from the
// node's config (before start), for a test whose window depends on how
// long PostgreSQL itself takes (a crash recovery, say).
func (n *dbNode) productionPostgres() {
	n.t.Helper()
	path := filepath.Join(n.dir, "medic.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		n.t.Fatal(err)
	}
	cfg := strings.Replace(string(raw), fastPGParameters, "", 1)
	if cfg == string(raw) {
		n.t.Fatal("the parameters line of the node's config changed: update productionPostgres")
	}
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

func (n *dbNode) start() {
	n.t.Helper()
	n.stderr, n.done = &lockedBuffer{}, make(chan error, 1)
	n.cmd = exec.Command(medicBin, "run", "-c", filepath.Join(n.dir, "medic.yaml"))
	n.cmd.Stderr = n.stderr
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(n.cmd, n.done)
}

// stop ends the agent with SIGTERM (it stops its postgres) and waits.
func (n *dbNode) stop() {
	if n.cmd == nil || n.cmd.ProcessState != nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(40 * time.Second):
		syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.done
		n.t.Errorf("%s: medic did not stop within 40s after SIGTERM", n.name)
	}
	n.killPostgres() // never leave a postgres behind, whatever happened
	n.killBackupServer()
}

// crash loses the host: the agent and its postgres are SIGKILLed.
func (n *dbNode) crash() {
	syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	n.killPostgres()
	n.killBackupServer()
	<-n.done
}

// killBackupServer kills the pgBackRest TLS server the agent ran (its
// own process group, named by its pid file), if one is left.
func (n *dbNode) killBackupServer() {
	if pid := backup.ServerPIDOf(filepath.Join(n.dir, "pg.backup")); pid > 0 {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
}

func (n *dbNode) killPostgres() {
	b, err := os.ReadFile(filepath.Join(n.dir, "pg", "postmaster.pid"))
	if err != nil {
		return
	}
	first, _, _ := strings.Cut(string(b), "\n")
	if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && pid > 0 {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && filepath.Base(exe) == "postgres" {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
}

func (n *dbNode) status() (pgha.Status, error) {
	req, err := http.NewRequest("GET", "http://"+n.api+"/v1/db/status", nil)
	if err != nil {
		return pgha.Status{}, err
	}
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return pgha.Status{}, err
	}
	defer resp.Body.Close()
	var doc struct{ Databases []pgha.Status }
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || len(doc.Databases) != 1 {
		return pgha.Status{}, fmt.Errorf("decode status: %v (%d databases)", err, len(doc.Databases))
	}
	return doc.Databases[0], nil
}

// eventually polls cond against a deadline.
func (n *dbNode) eventually(within time.Duration, what string, cond func(pgha.Status) bool) {
	n.t.Helper()
	deadline := time.Now().Add(within)
	var last pgha.Status
	for time.Now().Before(deadline) {
		if st, err := n.status(); err == nil {
			last = st
			if cond(st) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := json.Marshal(last)
	n.t.Fatalf("%s: %s not within %v; status %s\nstderr:\n%s", n.name, what, within, b, tail(n.stderr.String(), 3000))
}

func leaderIs(m string) func(pgha.Status) bool {
	return func(st pgha.Status) bool {
		return st.Leader != nil && st.Leader.Member == m && st.Leader.State == pgha.LeaderPrimary
	}
}

func streams(m, from string, syncStandby bool) func(pgha.Status) bool {
	return func(st pgha.Status) bool {
		if syncStandby && (st.Sync == nil || st.Sync.Standby != m) {
			return false
		}
		for _, mi := range st.Members {
			if mi.Name == m {
				return mi.Role == pgha.RoleReplica && mi.Streaming && mi.Upstream == from
			}
		}
		return false
	}
}

// writer commits one single-row transaction every 10ms (100/s) through the
// agents' primary listeners (a multi-host DSN over both proxies, as an
// application would), logging every acknowledgment.
type writer struct {
	dsn      string
	mu       sync.Mutex
	acks     []ack
	errs     int
	readOnly int // errors of a write that reached a read-only server (SQLSTATE 25006)
	lastErr  error
}

type ack struct {
	id int
	at time.Time
}

func (w *writer) run(ctx context.Context) {
	var conn *pgx.Conn
	id := 0
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if conn != nil {
				conn.Close(context.Background())
			}
			return
		case <-tick.C:
		}
		if conn == nil || conn.IsClosed() {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			c, err := pgx.Connect(cctx, w.dsn)
			cancel()
			if err != nil {
				w.mu.Lock()
				w.errs++
				w.lastErr = err
				w.mu.Unlock()
				continue
			}
			conn = c
		}
		id++
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := conn.Exec(qctx, "INSERT INTO acks (id) VALUES ($1)", id)
		cancel()
		w.mu.Lock()
		if err == nil {
			w.acks = append(w.acks, ack{id, time.Now()})
		} else {
			w.errs++
			w.lastErr = err
			if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "25006" {
				w.readOnly++
			}
			conn.Close(context.Background())
			conn = nil
		}
		w.mu.Unlock()
	}
}

// outage is the longest gap between consecutive acknowledgments after from.
func (w *writer) outage(from time.Time) (gap time.Duration, before, after time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := 1; i < len(w.acks); i++ {
		if w.acks[i].at.Before(from) {
			continue
		}
		if g := w.acks[i].at.Sub(w.acks[i-1].at); g > gap {
			gap, before, after = g, w.acks[i-1].at, w.acks[i].at
		}
	}
	return gap, before, after
}

func (w *writer) acked() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]int, len(w.acks))
	for i, a := range w.acks {
		ids[i] = a.id
	}
	return ids
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks)
}

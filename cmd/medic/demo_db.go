package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/medic-dev/medic/internal/demodb"
	"github.com/medic-dev/medic/internal/pgha"
)

// demoPGBin is where Debian's postgresql-15 package installs the server.
const demoPGBin = "/usr/lib/postgresql/15/bin"

// demoDBAgentConfig is one member of database pg at the default timings;
// %[9]s is the services section (node-b only).
const demoDBAgentConfig = `# medic demo: member %[1]s of database pg.
name: %[1]s
data_dir: %[2]s/medic
etcd: {endpoints: ["%[3]s"], prefix: /medic/demo}
api: {listen: "%[4]s"}
databases:
  pg:
    postgres: {bin_dir: %[5]s, data: ./pg, listen: "%[6]s"}
    replication: {mode: sync}
    proxy: {primary: "%[7]s", replicas: "%[8]s"}
%[9]s`

// demoDBService runs demodb under node-b: liveness never touches the
// database, readiness asks for a writable primary.
const demoDBService = `services:
  demodb:
    command: [%[1]q, demodb, --listen, "127.0.0.1:${PORT}", --ready-timeout, 400ms, --dsn, %[2]q]
    port: %[3]s
    restart: {policy: always}
    stop: {signal: TERM, grace: 5s}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 1s, timeout: 500ms, failure_threshold: 3}
      readiness: {http: {path: /healthz/ready}, period: 500ms, timeout: 500ms, failure_threshold: 1}
`

// demoDBResult is what the database part measured.
type demoDBResult struct {
	OldPrimary, NewPrimary string
	Killed, Promoted       time.Duration // since the part began
	Outage                 time.Duration // last acknowledgment before the kill → first after
	LastAck, FirstAck      time.Duration // since the part began
	Acked, Failed, Lost    int
	Unacked                int // rows committed whose acknowledgment the client never got
	Restarts               int // of demodb, during the whole part
}

// demoDBMissing names what the database part needs and cannot find.
func demoDBMissing() []string {
	var missing []string
	if _, err := os.Stat(filepath.Join(demoPGBin, "postgres")); err != nil {
		missing = append(missing, demoPGBin+"/postgres")
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		missing = append(missing, "etcd")
	}
	return missing
}

// runDemoDB is the demo's database part: skipped with one line when
// PostgreSQL 15 or etcd is missing, else run and judged.
func runDemoDB(ctx context.Context, bin string, keep bool) error {
	if missing := demoDBMissing(); len(missing) > 0 {
		fmt.Printf("\n== database failover: skipped, %s not installed (apt-get install postgresql-15 etcd-server)\n",
			strings.Join(missing, " and "))
		return nil
	}
	res, err := demoDB(ctx, bin, keep, os.Stdout)
	if err != nil {
		return err
	}
	switch {
	case res.NewPrimary == "" || res.NewPrimary == res.OldPrimary:
		return fmt.Errorf("demo: no other member became the primary after %s's host was lost", res.OldPrimary)
	case res.Lost > 0:
		return fmt.Errorf("demo: %d acknowledged writes lost in sync mode", res.Lost)
	}
	return nil
}

// demoDBRun is the database part's processes and addresses.
type demoDBRun struct {
	dir, bin  string
	out       io.Writer
	t0        time.Time
	etcd      *demoProc
	etcdAddr  string
	a, b      *demoDBNode
	svcAddr   string
	svcDSN    string
	ready     bool // demodb's readiness last printed
	closeOnce sync.Once
}

// demoDB starts etcd and two agents keeping database pg in sync mode, the
// second also supervising demodb; runs 100 writes/s through demodb, loses the
// primary's host and measures what the client saw. Every process it started
// is stopped before it returns; the temporary directory is removed unless keep.
func demoDB(ctx context.Context, bin string, keep bool, out io.Writer) (demoDBResult, error) {
	dir, err := os.MkdirTemp("", "medic-demo-db-")
	if err != nil {
		return demoDBResult{}, fmt.Errorf("demo db: make a temporary directory: %w", err)
	}
	// postgres runs as the postgres user when medic runs as root: it must
	// reach the data directories below.
	if err := os.Chmod(dir, 0o755); err != nil {
		return demoDBResult{}, fmt.Errorf("demo db: open %s to the postgres user: %w", dir, err)
	}
	r := &demoDBRun{dir: dir, bin: bin, out: out, t0: time.Now()}
	defer func() {
		r.close()
		if keep {
			fmt.Fprintf(out, "  kept %s (--keep): agent logs in node-*/medic.log, postgres logs under node-*/medic\n", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	fmt.Fprintf(out, "\n== database failover: PostgreSQL 15 in sync mode kept by two medic agents through etcd, data in %s\n", dir)
	if err := r.start(ctx); err != nil {
		return demoDBResult{}, err
	}
	return r.failover(ctx)
}

// start runs etcd, node-a (the first primary), node-b (its synchronous
// standby, supervising demodb), and waits until demodb is ready.
func (r *demoDBRun) start(ctx context.Context) error {
	addrs, err := freeAddrs(11)
	if err != nil {
		return fmt.Errorf("demo db: %w", err)
	}
	r.etcdAddr = addrs[0]
	r.a = &demoDBNode{name: "node-a", dir: filepath.Join(r.dir, "node-a"), api: addrs[2], pg: addrs[3], prim: addrs[4], repl: addrs[5]}
	r.b = &demoDBNode{name: "node-b", dir: filepath.Join(r.dir, "node-b"), api: addrs[6], pg: addrs[7], prim: addrs[8], repl: addrs[9]}
	r.svcAddr = addrs[10]
	// The application lists both agents' primary listeners, its own first;
	// target_session_attrs makes pgx skip a server that cannot write.
	r.svcDSN = fmt.Sprintf("host=127.0.0.1,127.0.0.1 port=%s,%s user=postgres dbname=postgres sslmode=disable target_session_attrs=read-write",
		portOf(r.b.prim), portOf(r.a.prim))

	etcdURL, peerURL := "http://"+addrs[0], "http://"+addrs[1]
	r.etcd, err = startProc(filepath.Join(r.dir, "etcd.log"), "etcd", "--name", "demo",
		"--data-dir", filepath.Join(r.dir, "etcd"), "--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL, "--initial-cluster", "demo="+peerURL,
		"--log-level", "warn")
	if err != nil {
		return fmt.Errorf("demo db: start etcd: %w", err)
	}
	if !pollUntil(ctx, 15*time.Second, func() bool { return etcdHealthy(ctx, etcdURL) }) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("demo db: etcd not healthy on %s within 15s:\n%s", r.etcdAddr, tailFile(r.etcd.log, 1500))
	}
	r.line("etcd", "serving on %s", r.etcdAddr)

	svc := fmt.Sprintf(demoDBService, r.bin, r.svcDSN, portOf(r.svcAddr))
	for _, n := range []*demoDBNode{r.a, r.b} {
		services := ""
		if n == r.b {
			services = svc
		}
		if err := n.write(r.etcdAddr, services); err != nil {
			return err
		}
	}
	if err := r.a.start(r.bin); err != nil {
		return err
	}
	r.line("node-a", "agent started: postgres %s, primary listener %s", r.a.pg, r.a.prim)
	if err := r.a.waitStatus(ctx, 60*time.Second, "node-a becomes the primary", leaderIsNode("node-a")); err != nil {
		return err
	}
	r.line("node-a", "primary: bootstrapped, holds the leader lease")
	if err := r.b.start(r.bin); err != nil {
		return err
	}
	r.line("node-b", "agent started: postgres %s, primary listener %s, supervising demodb on %s", r.b.pg, r.b.prim, r.svcAddr)
	if err := r.a.waitStatus(ctx, 60*time.Second, "node-b becomes the synchronous standby", func(st pgha.Status) bool {
		return !r.b.proc.exited() && syncStandby("node-b", "node-a")(st)
	}); err != nil {
		if r.b.proc.exited() {
			return fmt.Errorf("demo db: node-b's agent exited (%v):\n%s", r.b.proc.cmd.ProcessState, tailFile(r.b.log(), 2000))
		}
		return err
	}
	r.line("node-b", "replica: streaming from node-a, the synchronous standby")
	ready := pollUntil(ctx, 30*time.Second, func() bool {
		if r.b.proc.exited() {
			return false
		}
		in, err := r.b.demodb(ctx)
		return err == nil && in.Ready
	})
	if !ready {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("demo db: demodb not ready within 30s:\n%s", tailFile(r.b.log(), 2000))
	}
	r.ready = true
	r.line("demodb", "ready on %s (readiness: a writable primary through the pool)", r.svcAddr)
	r.line("demodb", "pgx pool: connect %gs, idle %gs, lifetime %gs, health check %gs, ping on checkout after %gs idle",
		demodb.ConnectTimeout.Seconds(), demodb.MaxConnIdleTime.Seconds(), demodb.MaxConnLifetime.Seconds(),
		demodb.HealthCheckPeriod.Seconds(), demodb.PingIdleAfter.Seconds())
	r.line("demodb", "DSN %s", r.svcDSN)
	return nil
}

// failover runs the load, loses node-a's host, and measures.
func (r *demoDBRun) failover(ctx context.Context) (demoDBResult, error) {
	res := demoDBResult{OldPrimary: "node-a"}
	in0, err := r.b.demodb(ctx)
	if err != nil {
		return res, err
	}
	load := &writeLoad{url: "http://" + r.svcAddr + "/write", client: &http.Client{Timeout: 3 * time.Second}}
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { load.Serve(loadCtx); close(loadDone) }()
	stop := func() { stopLoad(); <-loadDone }
	defer stop()
	r.line("load", "100 writes/s: POST http://%s/write?id=N, every acknowledged id recorded", r.svcAddr)
	if !pollUntil(ctx, 15*time.Second, func() bool { return load.acked() >= 200 }) {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, fmt.Errorf("demo db: fewer than 200 writes acknowledged within 15s (%d failed):\n%s", load.failures(), tailFile(r.b.log(), 2000))
	}

	st, err := r.a.status(ctx)
	if err != nil {
		return res, fmt.Errorf("demo db: ask node-a before the fault: %w", err)
	}
	if !leaderIsNode("node-a")(st) {
		return res, fmt.Errorf("demo db: node-a is no longer the primary before the fault (leader %+v)", st.Leader)
	}
	agentPID, pgPID := r.a.crash()
	killed := time.Now()
	res.Killed = killed.Sub(r.t0)
	r.line("node-a", "host lost: agent (pid %d) and its postgres (pid %d) SIGKILLed", agentPID, pgPID)

	// node-b's view names node-a until its lease expires: wait for another.
	if err := r.b.waitStatus(ctx, 30*time.Second, "another member becomes the primary", func(st pgha.Status) bool {
		r.noteReadiness(ctx)
		if st.Leader != nil && st.Leader.State == pgha.LeaderPrimary && st.Leader.Member != res.OldPrimary {
			res.NewPrimary = st.Leader.Member
		}
		return res.NewPrimary != ""
	}); err != nil {
		return res, err
	}
	res.Promoted = time.Since(r.t0)
	r.line(res.NewPrimary, "primary: promoted after node-a's lease expired")
	after := func() int { return load.ackedSince(killed) }
	if pollUntil(ctx, 20*time.Second, func() bool { r.noteReadiness(ctx); return after() > 0 }) {
		r.line("load", "writes acknowledged again")
	}
	if !pollUntil(ctx, 20*time.Second, func() bool { r.noteReadiness(ctx); return after() >= 200 }) {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, fmt.Errorf("demo db: writes did not resume within 20s of the promotion (%d acknowledged since the kill):\n%s",
			after(), tailFile(r.b.log(), 2000))
	}
	stop()

	acks, failed := load.results()
	res.Acked, res.Failed = len(acks), failed
	gap, before, first := longestGap(ackTimes(acks), killed.Add(-time.Second))
	res.Outage, res.LastAck, res.FirstAck = gap, before.Sub(r.t0), first.Sub(r.t0)
	r.line("load", "stopped: %d writes acknowledged, %d failed", res.Acked, res.Failed)

	found, total, err := r.readBack(ctx, acks)
	if err != nil {
		return res, err
	}
	res.Lost, res.Unacked = len(acks)-found, total-found
	if in1, err := r.b.demodb(ctx); err == nil {
		res.Restarts = in1.Restarts - in0.Restarts
	}
	r.summary(res)
	return res, nil
}

// readBack counts the acknowledged ids present on the new primary, through
// node-b's primary listener, and the table's rows.
func (r *demoDBRun) readBack(ctx context.Context, acks []demoAck) (found, total int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%s user=postgres dbname=postgres sslmode=disable connect_timeout=5", portOf(r.b.prim)))
	if err != nil {
		return 0, 0, fmt.Errorf("demo db: connect to the new primary through %s: %w", r.b.prim, err)
	}
	defer conn.Close(context.Background())
	ids := make([]int64, len(acks))
	for i, a := range acks {
		ids[i] = a.id
	}
	q := "SELECT count(*) FILTER (WHERE id = ANY($1)), count(*) FROM " + demodb.Table
	if err := conn.QueryRow(ctx, q, ids).Scan(&found, &total); err != nil {
		return 0, 0, fmt.Errorf("demo db: read the acknowledged writes back: %w", err)
	}
	return found, total, nil
}

func (r *demoDBRun) summary(res demoDBResult) {
	s := func(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }
	fmt.Fprintf(r.out, "\n== database failover timeline\n")
	fmt.Fprintf(r.out, "  %-28s %s at %s\n", "primary host lost", res.OldPrimary, s(res.Killed))
	fmt.Fprintf(r.out, "  %-28s %s at %s (%s after the kill)\n", "new primary", res.NewPrimary, s(res.Promoted), s(res.Promoted-res.Killed))
	fmt.Fprintf(r.out, "  %-28s %s (last acknowledgment %s → first after %s)\n", "client-visible outage", s(res.Outage), s(res.LastAck), s(res.FirstAck))
	fmt.Fprintf(r.out, "  %-28s %d of %d (503 within the 2s write timeout, or refused)\n", "failed writes", res.Failed, res.Failed+res.Acked)
	fmt.Fprintf(r.out, "  %-28s %d of %d (each read back from %s through its primary listener)\n", "acknowledged writes lost", res.Lost, res.Acked, res.NewPrimary)
	if res.Unacked > 0 {
		fmt.Fprintf(r.out, "  %-28s %d (in flight at the kill: failed for the client, yet durable)\n", "committed, not acknowledged", res.Unacked)
	}
	fmt.Fprintf(r.out, "  %-28s %d (liveness never touches the database)\n", "demodb restarts", res.Restarts)
}

// noteReadiness prints the edges of demodb's readiness as node-b's agent
// sees them.
func (r *demoDBRun) noteReadiness(ctx context.Context) {
	in, err := r.b.demodb(ctx)
	if err != nil || in.Ready == r.ready {
		return
	}
	r.ready = in.Ready
	if in.Ready {
		r.line("demodb", "ready again (%s)", in.Detail)
	} else {
		r.line("demodb", "not ready (%s); liveness still passes, so no restart", in.Detail)
	}
}

// line prints one timeline entry, as the rest of the demo does.
func (r *demoDBRun) line(who, format string, args ...any) {
	fmt.Fprintf(r.out, "  %6.2fs  %-9s %s\n", time.Since(r.t0).Seconds(), who, fmt.Sprintf(format, args...))
}

// close stops the agents (SIGTERM: each stops its postgres and services;
// SIGKILL of the process group after 30 s) and then etcd.
func (r *demoDBRun) close() {
	r.closeOnce.Do(func() {
		var wg sync.WaitGroup
		for _, n := range []*demoDBNode{r.a, r.b} {
			if n != nil {
				wg.Go(n.stop)
			}
		}
		wg.Wait()
		if r.etcd != nil {
			r.etcd.stop(5 * time.Second)
		}
	})
}

// writeLoad sends POST url?id=N at 100 a second, at most 8 in flight,
// recording every acknowledgment (200) and counting failures.
type writeLoad struct {
	url    string
	client *http.Client

	mu     sync.Mutex
	acks   []demoAck
	failed int
}

type demoAck struct {
	id int64
	at time.Time
}

// Serve sends until ctx ends, then waits for the requests in flight.
func (l *writeLoad) Serve(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	slots := make(chan struct{}, 8)
	var wg sync.WaitGroup
	defer wg.Wait()
	var id int64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			continue // 8 writes in flight: this tick sends none
		}
		id++
		n := id // id moves on before the goroutine reads it
		wg.Go(func() {
			defer func() { <-slots }()
			l.write(ctx, n)
		})
	}
}

func (l *writeLoad) write(ctx context.Context, id int64) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s?id=%d", l.url, id), nil)
	if err != nil {
		return
	}
	resp, err := l.client.Do(req)
	ok := err == nil && resp.StatusCode == http.StatusOK
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	at := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case ok:
		l.acks = append(l.acks, demoAck{id, at})
	case ctx.Err() == nil: // a request cut by our own stop is not a failure
		l.failed++
	}
}

func (l *writeLoad) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

func (l *writeLoad) failures() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

func (l *writeLoad) ackedSince(t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.acks {
		if a.at.After(t) {
			n++
		}
	}
	return n
}

func (l *writeLoad) results() ([]demoAck, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.acks), l.failed
}

func ackTimes(acks []demoAck) []time.Time {
	ts := make([]time.Time, len(acks))
	for i, a := range acks {
		ts[i] = a.at
	}
	return ts
}

// longestGap is the client-visible outage: the longest gap between
// consecutive acknowledgments (in time order) that ends after from, with
// its two ends. Acknowledgments of concurrent requests arrive out of order,
// hence the sort.
func longestGap(acks []time.Time, from time.Time) (gap time.Duration, before, after time.Time) {
	acks = slices.Clone(acks)
	slices.SortFunc(acks, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(acks); i++ {
		if !acks[i].After(from) {
			continue
		}
		if g := acks[i].Sub(acks[i-1]); g > gap {
			gap, before, after = g, acks[i-1], acks[i]
		}
	}
	return gap, before, after
}

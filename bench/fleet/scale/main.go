// Command scale runs N in-process fleet agents against a real 3-member etcd
// cluster and reports what one etcd cluster carries: keys, watch events per
// second, etcd's CPU, and the CPU per agent (bench/fleet/README.md).
//
// Each agent is what a medic agent does with etcd for the fleet: its
// membership (a lease renewed every lease_ttl/3, the hosts' watch), its
// discovery publication of one service (2 instances, readiness flipping at
// the churn rate) and the watch of every host's publication, the placement
// of that service (the watch of the assignment; the coordinator writes it),
// and its one-view summary (published when it changes, every host's
// followed by a watch). Needs root (network namespaces) and etcd.
//
//	sudo go run ./bench/fleet/scale -agents 200 -for 60s
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/medic-dev/medic/internal/discovery"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/fleet"
	"github.com/medic-dev/medic/internal/fleetview"
	"github.com/medic-dev/medic/internal/placement"
	"github.com/medic-dev/medic/internal/testutil/netns"
)

func main() {
	agents := flag.Int("agents", 200, "in-process agents")
	dur := flag.Duration("for", 60*time.Second, "steady state measured after every agent sees every other")
	churn := flag.Float64("churn", 2, "readiness changes per second across the fleet (one instance of one random agent each)")
	ttl := flag.Duration("lease-ttl", 10*time.Second, "fleet.lease_ttl")
	grace := flag.Duration("grace", 40*time.Second, "fleet.grace")
	views := flag.Bool("view", true, "run the one-view summaries too")
	flag.IntVar(&etcdNice, "etcd-nice", -100, "run the etcd members at this nice value (as on machines of their own) rather than the bench's; -100: the bench's")
	flag.DurationVar(&joinWithin, "join-within", 3*time.Minute, "give up when not every agent sees every host up by then")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the agents' process (join and steady state) to this file (go tool pprof)")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			os.Exit(1)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if err := run(*agents, *dur, *churn, *ttl, *grace, *views); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

type agentT struct {
	name  string
	cli   *etcd.Client
	fa    *fleet.Agent
	pub   *discovery.Publisher
	ready [2]bool
	mu    sync.Mutex
}

var (
	joinWithin time.Duration
	etcdNice   int
	warns      = &warnCounter{counts: map[string]int{}}
	warnLog    = slog.New(warns)
)

// counters of watch deliveries seen by the agents (each delivery is a new
// snapshot of a prefix after one or more events).
var deliveries atomic.Int64

func run(n int, dur time.Duration, churn float64, ttl, grace time.Duration, views bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	nw, err := netns.New()
	if err != nil {
		return err
	}
	defer nw.Close()
	dir, err := os.MkdirTemp("", "medic-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cl, err := nw.StartCluster(dir, 3)
	if err != nil {
		return err
	}
	if etcdNice >= -20 {
		if err := renice(cl, etcdNice); err != nil {
			return err
		}
	}
	fmt.Printf("etcd: 3 members %s; %d agents, lease_ttl %v, grace %v, churn %.1f/s, view %v\n", strings.Join(cl.Endpoints, ","), n, ttl, grace, churn, views)
	const prefix, fleetName, svc = "/medic", "bench", "web"

	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var list []*agentT
	start := time.Now()
	for i := range n {
		name := fmt.Sprintf("h%03d", i)
		cli, err := etcd.Dial(etcd.Config{Endpoints: rotate(cl.Endpoints, i), DialTimeout: 2 * time.Second})
		if err != nil {
			cancel()
			return err
		}
		fa, err := fleet.New(fleet.Options{Fleet: fleetName, Host: name, Address: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1),
			Version: "bench", Prefix: prefix, LeaseTTL: ttl, Grace: grace, Etcd: cli, Logger: warnLog})
		if err != nil {
			cancel()
			return err
		}
		a := &agentT{name: name, cli: cli, fa: fa, ready: [2]bool{true, true}}
		dprefix := discovery.Prefix(prefix, fleetName, svc)
		a.pub = &discovery.Publisher{Etcd: cli, Key: dprefix + "/" + name, Host: name, Lease: fa.Lease, Period: ttl / 3, Logger: warnLog}
		a.pub.Set(a.instances())
		var readyMu sync.Mutex
		ready := map[string]int{}
		r := &placement.Runner{Spec: placement.Spec{Instances: 2 * n}, Service: svc, Self: name, Key: placement.Key(prefix, fleetName, svc),
			Etcd: cli, View: func() placement.View { return viewOf(fa) },
			Ready: func() map[string]int {
				readyMu.Lock()
				defer readyMu.Unlock()
				out := make(map[string]int, len(ready))
				for k, v := range ready {
					out[k] = v
				}
				return out
			},
			Apply: func(context.Context, int) error { return nil }, Logger: warnLog}
		wg.Add(4)
		go func() { defer wg.Done(); _ = fa.Serve(actx) }()
		go func() { defer wg.Done(); a.pub.Run(actx) }()
		go func() {
			defer wg.Done()
			_ = discovery.Follow(actx, cli, dprefix, nil, warnLog, func(u discovery.Update) {
				deliveries.Add(1)
				readyMu.Lock()
				defer readyMu.Unlock()
				if u.Reset {
					clear(ready)
					for h, pub := range u.All.All() {
						ready[h] = pub.Ready()
					}
					return
				}
				for _, h := range u.Changed {
					if pub, ok := u.All.Get(h); ok {
						ready[h] = pub.Ready()
					} else {
						delete(ready, h)
					}
				}
			})
		}()
		go func() { defer wg.Done(); _ = r.Run(actx) }()
		if views {
			sp := fleetview.SummariesPrefix(prefix, fleetName)
			vp := &fleetview.Publisher{Etcd: cli, Key: sp + "/" + name, Lease: fa.Lease, Build: func(context.Context) fleetview.Summary {
				a.mu.Lock()
				defer a.mu.Unlock()
				nr := 0
				for _, r := range a.ready {
					if r {
						nr++
					}
				}
				return fleetview.Summary{Host: name, Services: []fleetview.Service{{Name: svc, Desired: 2, Running: 2, Ready: nr, Fleet: true}}}
			}, Logger: warnLog}
			cache := &fleetview.Cache{}
			wg.Add(2)
			go func() { defer wg.Done(); vp.Run(actx) }()
			go func() {
				defer wg.Done()
				_ = cache.Follow(actx, cli, sp, nil, warnLog)
			}()
		}
		list = append(list, a)
	}
	defer func() {
		cancel()
		wg.Wait()
		for _, a := range list {
			a.cli.Close()
		}
	}()
	// Joined: every agent sees every host up.
	for {
		all := true
		for _, a := range list {
			st := a.fa.Status()
			up := 0
			for _, m := range st.Hosts {
				if m.State == fleet.Up {
					up++
				}
			}
			if up != n {
				all = false
				break
			}
		}
		if all {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) > joinWithin {
			hist := map[string]int{}
			for _, a := range list {
				st := a.fa.Status()
				c := map[fleet.State]int{}
				for _, m := range st.Hosts {
					c[m.State]++
				}
				hist[fmt.Sprintf("joined=%v up=%d suspect=%d lost=%d", st.Joined, c[fleet.Up], c[fleet.Suspect], c[fleet.Lost])]++
			}
			diagnose(cl.Endpoints, start)
			return fmt.Errorf("not every agent saw %d hosts up within %v: %v", n, joinWithin, compact(hist))
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("joined: every agent sees %d hosts up %.1fs after the first started\n", n, time.Since(start).Seconds())
	diagnose(cl.Endpoints, start)
	time.Sleep(3 * time.Second) // let the first publications settle

	before, err := scrape(cl.Endpoints)
	if err != nil {
		return err
	}
	ru0 := rusage()
	d0 := deliveries.Load()
	t0 := time.Now()
	changes := 0
	if churn > 0 {
		tick := time.NewTicker(time.Duration(float64(time.Second) / churn))
		end := time.After(dur)
	loop:
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-end:
				break loop
			case <-tick.C:
				a := list[rand.IntN(len(list))]
				a.mu.Lock()
				i := rand.IntN(2)
				a.ready[i] = !a.ready[i]
				a.mu.Unlock()
				a.pub.Set(a.instances())
				changes++
			}
		}
		tick.Stop()
	} else {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(dur):
		}
	}
	el := time.Since(t0).Seconds()
	ru1 := rusage()
	d1 := deliveries.Load()
	after, err := scrape(cl.Endpoints)
	if err != nil {
		return err
	}
	keys, err := countKeys(ctx, list[0].cli, prefix+"/fleet/"+fleetName+"/")
	if err != nil {
		return err
	}
	delta := func(name string) float64 { return after[name] - before[name] }
	fmt.Printf("steady state %.0fs, %d readiness changes (%.2f/s)\n", el, changes, float64(changes)/el)
	fmt.Printf("etcd keys of the fleet: %d (%s)\n", keys.total, keys.by)
	// Every member applies every write: a member's count is the cluster's.
	fmt.Printf("etcd writes/s: %.1f puts, %.1f txns, %.1f deletes\n", delta("etcd_mvcc_put_total")/el/3,
		delta("etcd_mvcc_txn_total")/el/3, delta("etcd_mvcc_delete_total")/el/3)
	fmt.Printf("watch events sent/s (all members): %.1f\n", delta("etcd_debugging_mvcc_events_total")/el)
	fmt.Printf("watchers (all members): %.0f, watch streams: %.0f\n", after["etcd_debugging_mvcc_watcher_total"], after["etcd_debugging_mvcc_watch_stream_total"])
	fmt.Printf("lease keepalives/s: %.1f; range requests/s: %.1f (all members)\n",
		delta("grpc_server_msg_received_total:LeaseKeepAlive")/el, delta("grpc_server_handled_total:Range")/el)
	fmt.Printf("watch deliveries to agents/s (snapshots of a prefix, discovery only): %.1f\n", float64(d1-d0)/el)
	fmt.Printf("etcd CPU: %.1f%% of one core per member (mean of 3)\n", 100*delta("process_cpu_seconds_total")/el/3)
	fmt.Printf("etcd db size: %.1f MiB per member; gRPC bytes sent/s %.0f KiB (all members)\n",
		after["etcd_mvcc_db_total_size_in_bytes"]/3/(1<<20), delta("etcd_network_client_grpc_sent_bytes_total")/el/1024)
	cpu := (ru1 - ru0).Seconds()
	fmt.Printf("agents' CPU: %.2f cores in all, %.2f ms/s per agent (%.3f%% of a core)\n", cpu/el, 1000*cpu/el/float64(n), 100*cpu/el/float64(n))
	return nil
}

func (a *agentT) instances() []discovery.Instance {
	a.mu.Lock()
	defer a.mu.Unlock()
	return []discovery.Instance{{ID: "web/0", Addr: "x:1", Ready: a.ready[0]}, {ID: "web/1", Addr: "x:2", Ready: a.ready[1]}}
}

func viewOf(fa *fleet.Agent) placement.View {
	st := fa.Status()
	var v placement.View
	first := ""
	for _, h := range st.Hosts {
		v.Hosts = append(v.Hosts, placement.Host{Name: h.Host, Lost: h.State == fleet.Lost, Capacity: h.Capacity})
		if h.State == fleet.Up && (first == "" || h.Host < first) {
			first = h.Host
		}
	}
	v.Coordinator = st.Joined && first == st.Self
	return v
}

func rotate(s []string, i int) []string {
	i %= len(s)
	return append(append([]string(nil), s[i:]...), s[:i]...)
}

func rusage() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// scrape sums the metrics of every member (their /metrics on the client URL).
func scrape(endpoints []string) (map[string]float64, error) {
	out := map[string]float64{}
	c := &http.Client{Timeout: 5 * time.Second}
	for _, ep := range endpoints {
		resp, err := c.Get("http://" + ep + "/metrics")
		if err != nil {
			return nil, fmt.Errorf("scrape %s: %w", ep, err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") {
				continue
			}
			name, val, ok := strings.Cut(line, " ")
			if !ok {
				continue
			}
			if i := strings.IndexByte(name, '{'); i >= 0 {
				labels := name[i:]
				name = name[:i] // sum over labels, but by gRPC method
				if j := strings.Index(labels, `grpc_method="`); j >= 0 {
					m, _, _ := strings.Cut(labels[j+len(`grpc_method="`):], `"`)
					name += ":" + m
				}
			}
			f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err == nil {
				out[name] += f
			}
		}
		resp.Body.Close()
	}
	return out, nil
}

type keyCount struct {
	total int
	by    string
}

func countKeys(ctx context.Context, cli *etcd.Client, prefix string) (keyCount, error) {
	resp, err := cli.Raw().Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return keyCount{}, err
	}
	by := map[string]int{}
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), prefix)
		kind, _, _ := strings.Cut(rest, "/")
		by[kind]++
	}
	var parts []string
	for k, v := range by {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return keyCount{total: len(resp.Kvs), by: strings.Join(parts, ", ")}, nil
}

// warnCounter is a slog handler that counts the agents' warnings by message.
type warnCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (w *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnCounter) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	w.counts[r.Message]++
	w.mu.Unlock()
	return nil
}
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnCounter) WithGroup(string) slog.Handler      { return w }

func (w *warnCounter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for m, c := range w.counts {
		parts = append(parts, fmt.Sprintf("%d× %q", c, m))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

// diagnose prints what says whether etcd or the agents fell behind: the
// agents' warnings so far (lease renewals that failed or came too late),
// the agents' CPU since start, and etcd's leader changes, slow applies,
// lease expiries and WAL fsync latency.
func diagnose(endpoints []string, start time.Time) {
	el := time.Since(start).Seconds()
	fmt.Printf("agents' warnings so far: %s\n", warns)
	fmt.Printf("agents' CPU since start: %.2f cores\n", rusage().Seconds()/el)
	m, err := scrape(endpoints)
	if err != nil {
		fmt.Println("diagnose:", err)
		return
	}
	fsync := 0.0
	if c := m["etcd_disk_wal_fsync_duration_seconds_count"]; c > 0 {
		fsync = 1000 * m["etcd_disk_wal_fsync_duration_seconds_sum"] / c
	}
	fmt.Printf("etcd since start (all members): leader changes %.0f, slow applies %.0f, heartbeat send failures %.0f, "+
		"leases expired %.0f, proposals failed %.0f, WAL fsync mean %.1f ms, CPU %.2f cores\n",
		m["etcd_server_leader_changes_seen_total"], m["etcd_server_slow_apply_total"], m["etcd_server_heartbeat_send_failures_total"],
		m["etcd_debugging_server_lease_expired_total"], m["etcd_server_proposals_failed_total"], fsync, m["process_cpu_seconds_total"]/el)
}

// compact shortens the histogram of agents' views for printing.
func compact(hist map[string]int) string {
	keys := make([]string, 0, len(hist))
	for k := range hist {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return hist[keys[i]] > hist[keys[j]] })
	var b strings.Builder
	for i, k := range keys {
		if i == 8 {
			fmt.Fprintf(&b, " … %d more kinds", len(keys)-i)
			break
		}
		fmt.Fprintf(&b, "[%d agents: %s] ", hist[k], k)
	}
	return b.String()
}

// renice sets every thread of every etcd member to nice (Linux nice is per
// thread; the threads started later inherit it).
func renice(cl *netns.Cluster, nice int) error {
	for _, m := range cl.Members {
		pids, err := m.Host.PIDs()
		if err != nil {
			return err
		}
		for _, pid := range pids {
			tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
			for _, t := range tasks {
				tid, err := strconv.Atoi(filepath.Base(t))
				if err != nil {
					continue
				}
				if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil {
					return fmt.Errorf("renice etcd %s (pid %d, thread %d): %w", m.Name, pid, tid, err)
				}
			}
		}
	}
	return nil
}

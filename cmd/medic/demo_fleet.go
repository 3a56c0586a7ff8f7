package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/fleet"
	"github.com/medic-dev/medic/internal/ports"
	"github.com/medic-dev/medic/internal/supervise"
)

// demoFleetHost is one "host" of `medic demo --fleet`: an agent on its own
// loopback address (127.0.0.N: its API and proxy), with a real 3-member
// etcd on loopback. Its instances listen on 127.0.0.1, each host on ports
// of its own ({SVCPORT}: a block of demoFleetShare): medic probes an
// instance at 127.0.0.1 (probes' host default) and its proxy sends to its
// own instances there (internal/app/traffic.go), as on a real host; other
// hosts reach them at fleet.address and the port they publish. With the
// instances on 127.0.0.N and one port block for all three, h2's and h3's
// probes and proxy reached h1's instance of the same index: an instance of
// theirs was ready only while h1 ran that index, so an assignment giving
// them more than h1 (h3 joins first and writes h3=6) never got ready and
// the placement waited for it (TestDemoFleet's 90 s timeout in CI on
// 2026-12-07: h2's web/2 went unready the moment h1 stopped its web/2).
const demoFleetHost = `
name: h{N}
data_dir: {DIR}/data
api: {listen: "127.0.0.{N}:{API}"}
etcd: {endpoints: [{ETCD}]}
fleet: {name: demo, address: 127.0.0.1, lease_ttl: 2s, grace: 2s, join_jitter: 0s}
services:
  web:
    command: [{BIN}, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: {SVCPORT}
    instances: 2
    stop: {grace: 1s}
    fleet: {instances: 6, spread: host}
    proxy: {listen: "127.0.0.{N}:{PROXY}", try_timeout: 300ms}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 300ms, timeout: 200ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready}, period: 200ms, timeout: 150ms, failure_threshold: 1}
`

// demoFleetShare is the most instances of web one demo host runs (all 6
// before the others join, and a rebalance's surge: config.ServiceFleet.
// MaxShare): the size of each host's port block.
var demoFleetShare = (&config.ServiceFleet{Instances: 6}).MaxShare()

// demoFleetConfig is host n's config (1 to 3).
func demoFleetConfig(n int, dir, bin string, etcd []string, api, proxy string, svcPort int) string {
	return strings.NewReplacer("{N}", fmt.Sprint(n), "{DIR}", dir, "{API}", api, "{ETCD}", strings.Join(etcd, ", "),
		"{BIN}", bin, "{SVCPORT}", fmt.Sprint(svcPort), "{PROXY}", proxy).Replace(demoFleetHost)
}

type demoFleetAgent struct {
	name, api, proxy string
	proc             *demoProc
}

func (a *demoFleetAgent) status(ctx context.Context) (api.StatusDoc, error) {
	var st api.StatusDoc
	return st, getJSON(ctx, "http://"+a.api+"/v1/status", &st)
}

func (a *demoFleetAgent) ready(ctx context.Context) int {
	st, err := a.status(ctx)
	if err != nil {
		return -1
	}
	for _, s := range st.Services {
		if s.Name == "web" {
			return s.Ready
		}
	}
	return 0
}

// runDemoFleet runs three agents in fleet demo (a real 3-member etcd on
// loopback), GETs through two of their proxies, kills the third "host"
// (its agent and every instance, SIGKILL) and prints the recovery.
func runDemoFleet(ctx context.Context, bin string, keep bool, out io.Writer) error {
	if _, err := exec.LookPath("etcd"); err != nil {
		return fmt.Errorf("demo --fleet needs etcd (the Debian package etcd-server): %w", err)
	}
	dir, err := os.MkdirTemp("", "medic-demo-fleet-")
	if err != nil {
		return err
	}
	t0 := time.Now()
	line := func(who, format string, args ...any) {
		fmt.Fprintf(out, "%7.2fs  %-6s %s\n", time.Since(t0).Seconds(), who, fmt.Sprintf(format, args...))
	}
	var procs []*demoProc
	var killedData string // the data dir of the host killed below: no medic starts there again
	defer func() {
		for _, p := range procs {
			p.stop(3 * time.Second)
		}
		if killedData != "" {
			// A medic started again on h3 would remove the cgroups its
			// SIGKILLed agent left (empty: its instances were killed too);
			// none is, so the demo does.
			supervise.RemoveTreeOf(killedData)
		}
		if keep {
			fmt.Fprintf(out, "kept %s (--keep)\n", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	addrs, err := freeAddrs(8)
	if err != nil {
		return err
	}
	// Each host's instances of web own a block of demoFleetShare ports on
	// 127.0.0.1, the whole block free and handed out once (not its first
	// port alone: an API, proxy or etcd port, or another process's, inside
	// it would keep an instance from ever binding, and the placement would
	// wait for that instance).
	var svcPorts []int
	for range 3 {
		p, err := ports.Free(demoFleetShare)
		if err != nil {
			return err
		}
		svcPorts = append(svcPorts, p)
	}
	var initial, clients []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("e%d=http://%s", i+1, addrs[2*i+1]))
		clients = append(clients, addrs[2*i])
	}
	for i := range 3 {
		cu, pu := "http://"+addrs[2*i], "http://"+addrs[2*i+1]
		p, err := startProc(filepath.Join(dir, fmt.Sprintf("etcd-%d.log", i+1)), "etcd", "--name", fmt.Sprintf("e%d", i+1),
			"--data-dir", filepath.Join(dir, fmt.Sprintf("etcd-%d", i+1)), "--listen-client-urls", cu, "--advertise-client-urls", cu,
			"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu, "--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new", "--log-level", "warn")
		if err != nil {
			return err
		}
		procs = append(procs, p)
	}
	for _, c := range clients {
		if !pollUntil(ctx, 30*time.Second, func() bool { return etcdHealthy(ctx, "http://"+c) }) {
			return fmt.Errorf("demo --fleet: etcd member %s not healthy within 30s:\n%s", c, tailFile(procs[0].log, 1500))
		}
	}
	line("etcd", "3 members on %s", strings.Join(clients, ", "))
	var agents []*demoFleetAgent
	for i := 1; i <= 3; i++ {
		hd := filepath.Join(dir, fmt.Sprintf("h%d", i))
		if err := os.MkdirAll(hd, 0o755); err != nil {
			return err
		}
		a := &demoFleetAgent{name: fmt.Sprintf("h%d", i), api: fmt.Sprintf("127.0.0.%d:%s", i, portOf(addrs[6])),
			proxy: fmt.Sprintf("127.0.0.%d:%s", i, portOf(addrs[7]))}
		cfg := demoFleetConfig(i, hd, bin, clients, portOf(addrs[6]), portOf(addrs[7]), svcPorts[i-1])
		path := filepath.Join(hd, "medic.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			return err
		}
		p, err := startProc(filepath.Join(hd, "medic.log"), bin, "run", "-c", path)
		if err != nil {
			return err
		}
		a.proc = p
		procs = append(procs, p)
		agents = append(agents, a)
	}
	// What the demo prints when the fleet is not placed or restored in
	// time (demo_fleet_diag.go).
	diagnose := func() string {
		var etcdLogs []string
		for _, p := range procs[:3] {
			etcdLogs = append(etcdLogs, p.log)
		}
		return diagnoseFleet(ctx, t0, agents, etcdLogs, clients)
	}
	total := func(list ...*demoFleetAgent) int {
		n := 0
		for _, a := range list {
			if r := a.ready(ctx); r > 0 {
				n += r
			}
		}
		return n
	}
	// Placed: the three hosts joined (as h1 sees them) and 2 ready on each
	// (before the join each agent runs its config's instances on its own).
	placed := func() bool {
		var hs fleet.Status
		if getJSON(ctx, "http://"+agents[0].api+"/v1/fleet/hosts", &hs) != nil {
			return false
		}
		up := 0
		for _, m := range hs.Hosts {
			if m.State == fleet.Up {
				up++
			}
		}
		for _, a := range agents {
			if a.ready(ctx) != 2 {
				return false
			}
		}
		return up == 3
	}
	if !pollUntil(ctx, 90*time.Second, placed) {
		return fmt.Errorf("demo --fleet: the three hosts not joined with 2 instances of web ready on each within 90s:\n%s", diagnose())
	}
	line("fleet", "h1, h2, h3 up; web placed instances: 6, spread: host — 2 ready on each (lease_ttl 2s, grace 2s)")

	// Load through h1's and h2's proxies.
	var sent, failed atomic.Int64
	lctx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 2 * time.Second}
	for _, a := range agents[:2] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond) // 50/s per proxy
			defer tick.Stop()
			for {
				select {
				case <-lctx.Done():
					return
				case <-tick.C:
				}
				sent.Add(1)
				resp, err := client.Get("http://" + a.proxy + "/")
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 500 {
					failed.Add(1)
				}
			}
		}()
	}
	defer func() { stopLoad(); wg.Wait() }()
	line("load", "100 GETs/s through the proxies of h1 and h2 (%s, %s)", agents[0].proxy, agents[1].proxy)
	sleepCtx(ctx, 3*time.Second)

	// Kill h3: its agent and every instance, as a host that loses power.
	h3 := agents[2]
	st, err := h3.status(ctx)
	if err != nil {
		return err
	}
	var pids []int
	for _, s := range st.Services {
		for _, in := range s.Instances {
			if in.PID > 0 {
				pids = append(pids, in.PID)
			}
		}
	}
	kill := time.Now()
	killedData = filepath.Join(dir, "h3", "data")
	syscall.Kill(-h3.proc.cmd.Process.Pid, syscall.SIGKILL)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	<-h3.proc.done
	line("h3", "killed: the agent and its %d instances (SIGKILL), no lease revoked", len(pids))
	var suspect, lost time.Duration
	restored := pollUntil(ctx, 60*time.Second, func() bool {
		var hs fleet.Status
		if getJSON(ctx, "http://"+agents[0].api+"/v1/fleet/hosts", &hs) == nil {
			for _, m := range hs.Hosts {
				if m.Host == "h3" && m.State == fleet.Suspect && suspect == 0 {
					suspect = time.Since(kill)
					line("h1", "sees h3 suspect after %.2fs (its lease expired)", suspect.Seconds())
				}
				if m.Host == "h3" && m.State == fleet.Lost && lost == 0 {
					lost = time.Since(kill)
					line("h1", "sees h3 lost after %.2fs (grace over): its share moves to h1 and h2", lost.Seconds())
				}
			}
		}
		return total(agents[0], agents[1]) >= 6
	})
	if !restored {
		return fmt.Errorf("demo --fleet: 6 ready on h1 and h2 not restored within 60s:\n%s", diagnose())
	}
	ttr := time.Since(kill)
	line("fleet", "6 instances ready on h1 and h2 %.2fs after the kill (bound: lease_ttl + grace + start + readiness + 1s)", ttr.Seconds())
	sleepCtx(ctx, 2*time.Second)
	stopLoad()
	wg.Wait()
	fmt.Fprintf(out, "\nrecovery: h3 lost, suspect after %.2fs, lost after %.2fs, capacity (6 ready) restored after %.2fs; GETs through h1 and h2: %d, failed %d\n",
		suspect.Seconds(), lost.Seconds(), ttr.Seconds(), sent.Load(), failed.Load())
	return nil
}

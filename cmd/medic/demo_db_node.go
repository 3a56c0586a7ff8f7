package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/pgha"
	"github.com/medic-dev/medic/internal/ports"
)

// demoDBNode is one `medic run` keeping one member of pg.
type demoDBNode struct {
	name, dir           string
	api, pg, prim, repl string
	proc                *demoProc
	mu                  sync.Mutex
	servicePIDs         []int // demodb processes seen, killed if the agent cannot stop them
}

func (n *demoDBNode) cfg() string { return filepath.Join(n.dir, "medic.yaml") }
func (n *demoDBNode) log() string { return filepath.Join(n.dir, "medic.log") }

func (n *demoDBNode) write(etcd, services string) error {
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return fmt.Errorf("demo db: make %s: %w", n.dir, err)
	}
	cfg := fmt.Sprintf(demoDBAgentConfig, n.name, n.dir, etcd, n.api, demoPGBin, n.pg, n.prim, n.repl, services)
	if err := os.WriteFile(n.cfg(), []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("demo db: write %s's config: %w", n.name, err)
	}
	return nil
}

func (n *demoDBNode) start(bin string) error {
	p, err := startProc(n.log(), bin, "run", "-c", n.cfg())
	if err != nil {
		return fmt.Errorf("demo db: start %s's agent: %w", n.name, err)
	}
	n.proc = p
	return nil
}

// crash loses the host: the agent's process group and its postmaster's are
// SIGKILLed (a watchdog left behind kills nothing more and exits).
func (n *demoDBNode) crash() (agentPID, pgPID int) {
	pgPID = n.postmaster()
	n.proc.kill()
	if pgPID > 0 {
		syscall.Kill(-pgPID, syscall.SIGKILL)
	}
	return n.proc.cmd.Process.Pid, pgPID
}

// stop ends the agent with SIGTERM and, whatever happened, leaves no
// postgres or demodb of it behind.
func (n *demoDBNode) stop() {
	if n.proc == nil {
		return
	}
	n.proc.stop(30 * time.Second)
	if pid := n.postmaster(); pid > 0 {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, pid := range n.servicePIDs {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exe == n.proc.cmd.Path {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
}

// postmaster is the running postmaster of n's data directory, or 0.
func (n *demoDBNode) postmaster() int {
	b, err := os.ReadFile(filepath.Join(n.dir, "pg", "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0
	}
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || filepath.Base(exe) != "postgres" {
		return 0
	}
	return pid
}

func (n *demoDBNode) status(ctx context.Context) (pgha.Status, error) {
	var doc struct{ Databases []pgha.Status }
	if err := getJSON(ctx, "http://"+n.api+"/v1/db/status", &doc); err != nil {
		return pgha.Status{}, err
	}
	if len(doc.Databases) != 1 {
		return pgha.Status{}, fmt.Errorf("%s's agent reports %d databases, want 1", n.name, len(doc.Databases))
	}
	return doc.Databases[0], nil
}

// demoInstance is what the demo reads of demodb's instance.
type demoInstance struct {
	Ready    bool
	Restarts int
	Detail   string // of the last readiness probe
}

// demodb is the demodb instance as n's agent sees it.
func (n *demoDBNode) demodb(ctx context.Context) (instance demoInstance, err error) {
	var doc api.StatusDoc
	if err := getJSON(ctx, "http://"+n.api+"/v1/status", &doc); err != nil {
		return instance, err
	}
	for _, s := range doc.Services {
		if s.Name == "demodb" && len(s.Instances) == 1 {
			in := s.Instances[0]
			if in.PID > 0 {
				n.mu.Lock()
				if !slices.Contains(n.servicePIDs, in.PID) {
					n.servicePIDs = append(n.servicePIDs, in.PID)
				}
				n.mu.Unlock()
			}
			instance.Ready, instance.Restarts = in.Ready, in.Restarts
			if p, ok := in.Probes[medic.ProbeReadiness]; ok {
				instance.Detail = "readiness probe: " + p.Detail
			}
			return instance, nil
		}
	}
	return instance, fmt.Errorf("%s's agent does not run demodb", n.name)
}

// waitStatus polls n's database status until cond holds.
func (n *demoDBNode) waitStatus(ctx context.Context, within time.Duration, what string, cond func(pgha.Status) bool) error {
	var last pgha.Status
	ok := pollUntil(ctx, within, func() bool {
		if n.proc.exited() {
			return true
		}
		st, err := n.status(ctx)
		if err == nil {
			last = st
		}
		return err == nil && cond(st)
	})
	switch {
	case n.proc.exited():
		return fmt.Errorf("demo db: %s's agent exited (%v) while waiting until %s:\n%s", n.name, n.proc.cmd.ProcessState, what, tailFile(n.log(), 2000))
	case ok:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	b, _ := json.Marshal(last)
	return fmt.Errorf("demo db: %s: not within %v; status %s\n%s's log:\n%s", what, within, b, n.name, tailFile(n.log(), 2000))
}

func leaderIsNode(m string) func(pgha.Status) bool {
	return func(st pgha.Status) bool {
		return st.Leader != nil && st.Leader.Member == m && st.Leader.State == pgha.LeaderPrimary
	}
}

func syncStandby(m, from string) func(pgha.Status) bool {
	return func(st pgha.Status) bool {
		if st.Sync == nil || st.Sync.Standby != m {
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

// demoProc is a process the database part started, in its own process group.
type demoProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProc(logPath, bin string, args ...string) (*demoProc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", logPath, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &demoProc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *demoProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process, then SIGKILL to its group after grace,
// and waits for it.
func (p *demoProc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
	}
}

// kill sends SIGKILL to the process group and waits for the process.
func (p *demoProc) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// pollUntil calls cond every 50 ms until it holds (true), within passes or
// ctx ends (false).
func pollUntil(ctx context.Context, within time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
}

func getJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", url, err)
	}
	return nil
}

func etcdHealthy(ctx context.Context, url string) bool {
	var h struct{ Health string }
	return getJSON(ctx, url+"/health", &h) == nil && h.Health == "true"
}

// freeAddrs returns n distinct loopback addresses free at the time of the
// call, below the ephemeral port range (see internal/ports).
func freeAddrs(n int) ([]string, error) {
	var addrs []string
	for range n {
		p, err := ports.Free(1)
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", p))
	}
	return addrs, nil
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

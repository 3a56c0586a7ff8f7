package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/medic-dev/medic/internal/ports"
)

// group is a process the harness started in its own process group; stop
// signals the group, then kills it. The harness never kills by name.
type group struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startGroup(name, dir, log string, argv []string, env ...string) (*group, error) {
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	g := &group{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { g.err = cmd.Wait(); f.Close(); close(g.done) }()
	return g, nil
}

func (g *group) exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the group, waits up to grace, then SIGKILLs the group.
func (g *group) stop(sig syscall.Signal, grace time.Duration) {
	if g == nil {
		return
	}
	pgid := g.cmd.Process.Pid
	syscall.Kill(-pgid, sig)
	select {
	case <-g.done:
	case <-time.After(grace):
	}
	syscall.Kill(-pgid, syscall.SIGKILL) // also ends members a fault left stopped
	syscall.Kill(-pgid, syscall.SIGCONT)
	<-g.done
}

// identity is demoapp's GET / body.
type identity struct {
	Instance string `json:"instance"`
	PID      int    `json:"pid"`
}

var quick = &http.Client{Timeout: 150 * time.Millisecond, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// pidAt returns the PID serving GET / on port with 200, or 0.
func pidAt(port int) int {
	pid, code := pidOf(port)
	if code != http.StatusOK {
		return 0
	}
	return pid
}

// pidOf returns the PID that answered GET / on port, whatever the status
// (an injected 500 carries it too), and the status; 0, 0 without an answer.
func pidOf(port int) (int, int) {
	resp, err := quick.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	var id identity
	if json.NewDecoder(resp.Body).Decode(&id) != nil {
		return 0, resp.StatusCode
	}
	return id.PID, resp.StatusCode
}

// waitServing waits until every port answers GET / with 200.
func waitServing(ctx context.Context, ports []int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for _, p := range ports {
		for pidAt(p) == 0 {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("port %d does not serve after %v", p, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// watchPID polls the instance's port and reports the first time a process
// other than old serves it (the restart, as a client sees it).
type watchPID struct {
	mu    sync.Mutex
	at    time.Time
	newPI int
}

func (w *watchPID) run(ctx context.Context, port, old int) {
	for ctx.Err() == nil {
		if pid := pidAt(port); pid != 0 && pid != old {
			w.mu.Lock()
			w.at, w.newPI = time.Now(), pid
			w.mu.Unlock()
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (w *watchPID) result() (time.Time, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.at, w.newPI
}

// freePorts returns the first of n consecutive free loopback ports.
func freePorts(n int) (int, error) { return ports.Free(n) }

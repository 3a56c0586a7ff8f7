// Package e2e runs the real medic binary against real demoapp processes.
package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/pgha/pgtest"
	"github.com/medic-dev/medic/internal/ports"
	"github.com/medic-dev/medic/internal/supervise"
)

var medicBin string

func TestMain(m *testing.M) {
	if os.Getenv("MEDIC_FLOOD_HELPER_ADDR") != "" {
		// A flood helper (TestFloodHelper, the test binary run again) needs
		// no medic binary: building it again, even from the cache, took
		// tens of seconds at nice 19 on a loaded machine.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "medic-e2e-bin-")
	if err != nil {
		panic(err)
	}
	medicBin = filepath.Join(dir, "medic")
	// The database tests' cached initdb is made (the first time) while
	// medic builds.
	go pgtest.PrepareCachedBinDir()
	if b := os.Getenv("MEDIC_E2E_BIN"); b != "" {
		// A binary built elsewhere (bench/deploy.sh MEDIC_BIN=…: an A/B
		// of two builds with the same tests).
		medicBin = b
	} else {
		build := exec.Command("go", "build", "-o", medicBin, "../cmd/medic")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build medic:", err)
			os.Exit(1)
		}
	}
	cgroupsBefore := supervise.Trees()
	code := m.Run()
	os.RemoveAll(dir)
	pgtest.PrepareCachedBinDir() // never exit while it is being made: its temporary directory would be left
	if os.Getenv("MEDIC_E2E_CGROUP_CHECK") == "caller" {
		// .ci/run's shared run: unit suites run beside these tests in the
		// same cgroup, and one of theirs, empty between two restarts, would
		// look left behind. .ci/run checks once both runs are done.
		os.Exit(code)
	}
	if left := leftCgroups(cgroupsBefore); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the tests left %d empty medic cgroups behind (a medic that exited without removing its tree; removed now):\n  %s\n",
			len(left), strings.Join(left, "\n  "))
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// leftCgroups returns the medic-* cgroups (v2 and v1, in this process's own
// groups: where the medics the tests start create theirs) that did not exist
// before the run and are empty after it, and removes them. A group another
// run on the machine is still tearing down is empty only for a moment: one
// is reported only if it is still there after 2s (10 looks, 200ms apart).
// Populated groups are not reported: on a shared machine they may be another
// run's live agents (the tests check their own processes themselves).
func leftCgroups(before []string) []string {
	var left []string
	for range 10 {
		left = left[:0]
		for _, d := range supervise.Trees() {
			if !slices.Contains(before, d) && !supervise.TreePopulated(d) {
				left = append(left, d)
			}
		}
		if len(left) == 0 {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, d := range left {
		supervise.RemoveEmptyTree(d)
	}
	return left
}

// agent is a running `medic run` process.
type agent struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string
	dir    string
	cfg    string
	stderr *lockedBuffer
	token  string // default --token for CLI calls
	done   chan error
	// started is when medic's process was started (the base of the
	// runtime's own times, such as gctrace's @s).
	started time.Time
}

// freePort returns a base port with n free consecutive ports after it.
func freePort(t *testing.T, n int) int {
	t.Helper()
	base, err := ports.Free(n)
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// startAgent writes config (with %[1]s = medic binary, %[2]d = API port,
// %[3]d = service base port, %[4]s = dir) and runs medic on it.
func startAgent(t *testing.T, config string) *agent {
	t.Helper()
	return startAgentIn(t, t.TempDir(), config)
}

// startAgentIn is startAgent with the config written into dir.
func startAgentIn(t *testing.T, dir, config string) *agent {
	t.Helper()
	return startAgentWrapped(t, dir, config)
}

// startAgentWrapped is startAgentIn with medic run under a wrapper command
// (such as prlimit --nofile=512:512 --).
func startAgentWrapped(t *testing.T, dir, config string, wrapper ...string) *agent {
	t.Helper()
	apiPort, base := freePort(t, 1), freePort(t, 5)
	a := &agent{t: t, dir: dir, addr: fmt.Sprintf("127.0.0.1:%d", apiPort), cfg: filepath.Join(dir, "medic.yaml"), stderr: &lockedBuffer{}, done: make(chan error, 1)}
	if err := os.WriteFile(a.cfg, []byte(fmt.Sprintf(config, medicBin, apiPort, base, dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	a.launch(wrapper...)
	return a
}

// restart stops the agent (SIGTERM) and starts medic again on the same
// config file, data directory and API address.
func (a *agent) restart() *agent {
	a.t.Helper()
	a.stop()
	b := &agent{t: a.t, dir: a.dir, addr: a.addr, cfg: a.cfg, token: a.token, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	b.launch()
	return b
}

// launch runs medic on a.cfg (under wrapper, if any) and waits for its API.
func (a *agent) launch(wrapper ...string) {
	t := a.t
	t.Helper()
	argv := append(append(wrapper[:len(wrapper):len(wrapper)], medicBin), "run", "-c", a.cfg)
	a.cmd = exec.Command(argv[0], argv[1:]...)
	a.cmd.Stderr = a.stderr
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if v := os.Getenv("MEDIC_AGENT_GOMAXPROCS"); v != "" {
		// The agent's alone (bench/deploy.sh AGENT_GOMAXPROCS), not the test's clients'.
		a.cmd.Env = append(os.Environ(), "GOMAXPROCS="+v)
	}
	if v := os.Getenv("MEDIC_AGENT_GODEBUG"); v != "" {
		// bench/deploy.sh ATTRIBUTE=1: gctrace=1 for the GC cycles in a deploy's window.
		if a.cmd.Env == nil {
			a.cmd.Env = os.Environ()
		}
		a.cmd.Env = append(a.cmd.Env, "GODEBUG="+v)
	}
	if d := os.Getenv("MEDIC_AGENT_RUNTIME_TRACE"); d != "" {
		// bench/deploy.sh TRACE=1: the agent's flight recorder (e2e/deploy_attr_test.go, dumpTrace).
		if a.cmd.Env == nil {
			a.cmd.Env = os.Environ()
		}
		a.cmd.Env = append(a.cmd.Env, "MEDIC_RUNTIME_TRACE="+filepath.Join(d, "agent.trace"), "MEDIC_RUNTIME_TRACE_AGE=8s")
	}
	a.started = time.Now()
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- a.cmd.Wait() }()
	t.Cleanup(func() { a.stop() })
	a.eventually(10*time.Second, "API up", func() bool {
		resp, err := http.Get("http://" + a.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
}

// stop sends SIGTERM and waits; then makes sure no process of the test is left.
func (a *agent) stop() {
	select {
	case err := <-a.done: // it ended on its own (handed over): Wait is done, nothing to stop
		a.done <- err
		return
	default:
	}
	if a.cmd.ProcessState != nil { // a test took done after it ended
		return
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.done:
		a.done <- err
	case <-time.After(30 * time.Second):
		syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		a.done <- <-a.done
		a.t.Errorf("medic did not stop within 30s after SIGTERM; stderr:\n%s", a.stderr)
	}
}

func (a *agent) eventually(within time.Duration, what string, cond func() bool) {
	a.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			a.t.Fatalf("after %v: %s\nmedic stderr:\n%s", within, what, tail(a.stderr.String(), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// medic runs the CLI against the agent and returns stdout.
func (a *agent) medic(args ...string) (string, error) {
	args = append(args, "--addr", a.addr)
	if a.token != "" && !containsFlag(args, "--token") {
		args = append(args, "--token", a.token)
	}
	cmd := exec.Command(medicBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("medic %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (a *agent) status() api.StatusDoc {
	a.t.Helper()
	out, err := a.medic("status", "--json")
	if err != nil {
		a.t.Fatal(err)
	}
	var doc api.StatusDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		a.t.Fatalf("status --json is not one JSON document: %v\n%s", err, out)
	}
	return doc
}

func (a *agent) instance(svc string, i int) supervise.InstanceStatus {
	for _, s := range a.status().Services {
		if s.Name == svc && i < len(s.Instances) {
			return s.Instances[i]
		}
	}
	a.t.Fatalf("no instance %s/%d", svc, i)
	return supervise.InstanceStatus{}
}

// getWithToken is get with a bearer token.
func getWithToken(url, token string) (int, string) {
	c := &http.Client{Timeout: 5 * time.Second}
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// get returns the status code and body of GET url (fresh connection, 1s timeout).
func get(url string) (int, string) {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func containsFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag {
			return true
		}
	}
	return false
}

// lockedBuffer is a bytes.Buffer that the process's output copier writes
// while a test reads it (a failing test prints the agent's stderr while the
// agent still runs).
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

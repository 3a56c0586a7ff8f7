package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestSuperviseSelfRestartsADeadAgent: `medic run --supervise-self` starts
// the agent again when it is SIGKILLed; the new agent adopts the instances
// (same pids); SIGTERM to the supervisor stops everything.
func TestSuperviseSelfRestartsADeadAgent(t *testing.T) {
	dir := t.TempDir()
	mark := "MEDIC_E2E_MARK=" + dir
	apiPort, base := freePort(t, 1), freePort(t, 2)
	cfg := filepath.Join(dir, "medic.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d"}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    env: {MEDIC_E2E_MARK: "%[4]s"}
    instances: 2
    port: %[3]d
    probes:
      readiness: {http: {path: /healthz/ready}, period: 100ms, timeout: 100ms}
`, medicBin, apiPort, base, dir)), 0o644)
	sup := exec.Command(medicBin, "run", "--supervise-self", "-c", cfg)
	sup.Stderr = &lockedBuffer{}
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { sup.Wait(); close(done) }()
	t.Cleanup(func() {
		sup.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("medic --supervise-self did not stop within 30s")
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", apiPort)
	pids := func() []int {
		doc, ok := statusOf(addr)
		if !ok || len(doc.Services) != 1 || doc.Services[0].Ready != 2 {
			return nil
		}
		return []int{doc.Services[0].Instances[0].PID, doc.Services[0].Instances[1].PID}
	}
	pidFile := filepath.Join(dir, "data", "medic.pid")
	var before []int
	var agent1 int
	waitFor(t, 15*time.Second, "2 instances ready and the agent's pid file", func() bool {
		before = pids()
		agent1, _ = readPIDFile(pidFile)
		return before != nil && agent1 != 0 && agent1 != sup.Process.Pid
	})
	syscall.Kill(agent1, syscall.SIGKILL)
	var agent2 int
	waitFor(t, 15*time.Second, "a new agent adopted the same instances", func() bool {
		agent2, _ = readPIDFile(pidFile)
		now := pids()
		return agent2 != agent1 && now != nil && now[0] == before[0] && now[1] == before[1]
	})
	t.Logf("agent %d SIGKILLed; agent %d adopted instances %v", agent1, agent2, before)
	sup.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("medic --supervise-self did not stop within 30s of SIGTERM")
	}
	if left := marked(mark); len(left) != 0 {
		t.Fatalf("processes left after medic stopped: %v", left)
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package e2e_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

const webConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 2
    port: %[3]d
    stop: {grace: 1s}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 200ms, timeout: 150ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready}, period: 100ms, timeout: 100ms, failure_threshold: 1}
`

func writeTokens(t *testing.T, dir string) (op, viewer string) {
	t.Helper()
	for _, r := range []struct {
		name, role string
		dst        *string
	}{{"ops", "operator", &op}, {"dash", "viewer", &viewer}} {
		out, err := runMedic("token", "add", r.name, "--role", r.role, "-f", dir+"/tokens.yaml")
		if err != nil {
			t.Fatal(err)
		}
		*r.dst = strings.TrimSpace(out)
	}
	return op, viewer
}

// runMedic runs the CLI without an agent address (commands that need none).
func runMedic(args ...string) (string, error) {
	out, err := exec.Command(medicBin, args...).Output()
	if err != nil {
		return string(out), fmt.Errorf("medic %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// TestKillAndHangRecover is the core promise: a SIGKILLed instance and a hung
// instance are both back serving without a human.
func TestKillAndHangRecover(t *testing.T) {
	dir := t.TempDir()
	op, viewer := writeTokens(t, dir)
	a := startAgentIn(t, dir, webConfig)
	a.token = viewer
	a.eventually(15*time.Second, "2 ready", func() bool { return a.status().Services[0].Ready == 2 })

	// Kill web/0 with SIGKILL: medic sees the exit (no polling) and restarts at once.
	in := a.instance("web", 0)
	syscall.Kill(in.PID, syscall.SIGKILL)
	t0 := time.Now()
	a.eventually(10*time.Second, "web/0 serving again after SIGKILL", func() bool {
		code, body := get(fmt.Sprintf("http://127.0.0.1:%d/", in.Port))
		return code == 200 && !strings.Contains(body, fmt.Sprintf(`"pid":%d`, in.PID))
	})
	t.Logf("SIGKILL → serving again: %v", time.Since(t0))
	if st := a.instance("web", 0); st.Restarts != 1 || st.LastExit == nil || st.LastExit.Signal == "" {
		t.Fatalf("after SIGKILL: restarts %d, last exit %+v", st.Restarts, st.LastExit)
	}

	// Hang web/1: alive, not serving. Liveness (2 × 200ms) restarts it.
	hung := a.instance("web", 1)
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/fault/hang", hung.Port), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	t1 := time.Now()
	a.eventually(15*time.Second, "web/1 restarted after hang", func() bool {
		st := a.instance("web", 1)
		return st.PID != 0 && st.PID != hung.PID && st.Ready
	})
	t.Logf("hang → ready again: %v", time.Since(t1))
	out, err := a.medic("audit", "list", "--target", "web/1", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "liveness probe failed") {
		t.Fatalf("audit has no liveness decision for web/1:\n%s", out)
	}

	// Operator actions need a token; the viewer role is refused with 403.
	if _, err := a.medic("restart", "web/0"); err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		t.Fatalf("restart with a viewer token: %v, want HTTP 403", err)
	}
	if _, err := a.medic("status", "--token", "medic_wrong"); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("status with a wrong token: %v, want HTTP 401", err)
	}
	if _, err := a.medic("restart", "web/0", "--token", op); err != nil {
		t.Fatal(err)
	}
	if out, err := a.medic("audit", "verify"); err != nil || !strings.Contains(out, "audit chain ok") {
		t.Fatalf("audit verify: %v %s", err, out)
	}

	// SIGTERM to medic stops every instance: no demoapp is left behind.
	pids := []int{a.instance("web", 0).PID, a.instance("web", 1).PID}
	a.stop()
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(b), ") Z") {
				t.Fatalf("instance pid %d still alive after medic stopped", pid)
			}
		}
	}
}

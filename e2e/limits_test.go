package e2e_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/supervise"
)

// requireLimits skips with the reason when this host cannot apply memory and
// pids limits (no controller in cgroup v2 nor in a v1 hierarchy, not root),
// and fails in CI.
func requireLimits(t *testing.T) {
	t.Helper()
	requireCgroups(t)
	if err := supervise.LimitSupport(); err != nil {
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("resource limits are required (MEDIC_REQUIRE_INTEGRATION=1): %v", err)
		}
		t.Skipf("resource limits cannot be applied here: %v", err)
	}
}

// TestLimitsOOMAndForkBomb: with the real binary, an instance that allocates
// past its memory limit is OOM-killed, reported as oom_killed (exit reason
// and audited event) and restarted by its policy; an instance that forks
// without end is held at its pids limit while the other service's instance
// is left alone (same pid, still serving). The bomb is bash's: bash retries
// a fork that fails for want of pids, as a real bomb keeps trying; dash
// exits at the first failed fork (its processes then come and go with its
// restarts, and the sampling below sees a bomb that gave up).
func TestLimitsOOMAndForkBomb(t *testing.T) {
	requireLimits(t)
	dir := t.TempDir()
	bombMark := "MEDIC_E2E_BOMB=" + dir
	cfg := `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d"}
services:
  web:
    command: [%[1]s, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: %[3]d
    limits: {memory: 64MiB}
    restart: {policy: always, initial: 100ms}
    probes:
      readiness: {http: {path: /healthz/ready}, period: 200ms, timeout: 200ms}
  bomb:
    command: [bash, -c, 'while :; do sleep 600 & done']
    env: {MEDIC_E2E_BOMB: "%[4]s"}
    limits: {pids: 16}
    restart: {policy: always, initial: 100ms, max: 500ms}
`
	a := startAgentIn(t, dir, cfg)
	a.eventually(20*time.Second, "web ready", func() bool { st := a.instance("web", 0); return st.Ready })
	web := a.instance("web", 0)

	// The fork bomb is held at its limit, however long it tries.
	most := 0
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		n := len(marked(bombMark))
		most = max(most, n)
		if n > 16 {
			t.Fatalf("the fork bomb has %d processes, over its pids limit of 16", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if most < 8 {
		t.Fatalf("the fork bomb reached only %d processes: it did not run", most)
	}
	if st := a.instance("web", 0); st.PID != web.PID || !st.Ready {
		t.Fatalf("web touched by the other service's fork bomb: pid %d (was %d), ready %v", st.PID, web.PID, st.Ready)
	}
	if code, body := get(fmt.Sprintf("http://127.0.0.1:%d/", web.Port)); code != http.StatusOK {
		t.Fatalf("web does not serve beside the fork bomb: %d %s", code, body)
	}
	t.Logf("figures: fork bomb held at %d processes (pids limit 16); web untouched (pid %d)", most, web.PID)

	// Past its memory limit, web is OOM-killed, reported and restarted.
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/fault/leak?mb_per_s=200", web.Port), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	a.eventually(30*time.Second, "web OOM-killed and restarted", func() bool {
		st := a.instance("web", 0)
		return st.PID != 0 && st.PID != web.PID && st.Ready && st.LastExit != nil
	})
	st := a.instance("web", 0)
	if !strings.HasPrefix(st.LastExit.Reason, "oom_killed:") || st.LastExit.Signal != "SIGKILL" {
		t.Fatalf("last exit %+v, want oom_killed by SIGKILL", *st.LastExit)
	}
	out, err := a.medic("events", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"instance.oom_killed"`) {
		t.Fatalf("no instance.oom_killed event recorded:\n%s", tail(out, 2000))
	}
	if st.Restarts < 1 {
		t.Fatalf("web restarts %d after the OOM kill, want ≥ 1", st.Restarts)
	}
	a.stop()
	if left := marked(bombMark); len(left) != 0 {
		t.Fatalf("fork bomb processes left after medic stopped: %v", left)
	}
}

// TestValidateRefusesLimitsTheHostCannotApply: `medic validate` refuses
// services.*.limits where `medic run` would (here forced with
// MEDIC_CGROUPS=none), naming the file, line and field; where the host can
// apply them, it accepts the same file.
func TestValidateRefusesLimitsTheHostCannotApply(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "medic.yaml")
	if err := os.WriteFile(cfg, []byte(`data_dir: `+dir+`/data
services:
  web:
    command: [sleep, "100"]
    limits: {memory: 64MiB, pids: 16}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	validate := func(env ...string) (string, error) {
		c := exec.Command(medicBin, "validate", "-c", cfg)
		c.Env = append(os.Environ(), env...)
		out, err := c.CombinedOutput()
		return string(out), err
	}
	out, err := validate("MEDIC_CGROUPS=none")
	if err == nil {
		t.Fatalf("validate accepted limits with cgroups off:\n%s", out)
	}
	if want := cfg + ":5:5: services.web.limits: cannot be applied on this host"; !strings.Contains(out, want) {
		t.Fatalf("validate said:\n%s\nwant a line with %q", out, want)
	}
	out, err = validate("MEDIC_CGROUPS=auto")
	if why := supervise.LimitSupport(); why != nil {
		if err == nil || !strings.Contains(out, "services.web.limits") {
			t.Fatalf("this host cannot apply limits (%v) but validate said:\n%s", why, out)
		}
		return
	}
	if err != nil {
		t.Fatalf("this host can apply limits but validate refused them: %v\n%s", err, out)
	}
}

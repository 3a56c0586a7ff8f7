package e2e_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

const hostileReloadConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d"}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: %[3]d
    stop: {grace: 2s}
    probes:
      readiness: {http: {path: /healthz/ready}, period: 200ms}
`

// TestHostileReloadKeepsTheAgentResponsive: each hostile config of the
// corpus, written over the config and sent with SIGHUP, is rejected while
// the agent keeps answering; then a merge bomb followed at once by SIGTERM:
// medic exits within the stop grace. Before, validation of an 833-byte merge
// bomb ran for minutes on the signal loop and SIGTERM went unanswered.
func TestHostileReloadKeepsTheAgentResponsive(t *testing.T) {
	a := startAgent(t, hostileReloadConfig)
	a.eventually(15*time.Second, "web ready", func() bool { return a.status().Services[0].Ready == 1 })
	good, err := os.ReadFile(a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("../internal/config/testdata/hostile/*.yaml")
	if err != nil || len(files) < 40 {
		t.Fatalf("hostile corpus: %d files, %v", len(files), err)
	}
	sent := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := config.Parse(a.cfg, data); err == nil {
			continue // a valid config (the corpus holds a few): not hostile to the agent
		}
		sent++
		if err := os.WriteFile(a.cfg, data, 0o644); err != nil {
			t.Fatal(err)
		}
		a.cmd.Process.Signal(syscall.SIGHUP)
		start := time.Now()
		if _, err := a.medic("status", "--json"); err != nil || time.Since(start) > time.Second {
			t.Fatalf("%s: status after SIGHUP: %v after %v", filepath.Base(f), err, time.Since(start))
		}
		// One at a time: SIGHUPs that come during a reload fold into one.
		a.eventually(2*time.Second, filepath.Base(f)+" rejected", func() bool {
			return strings.Count(a.stderr.String(), "reload rejected") == sent
		})
	}
	if err := os.WriteFile(a.cfg, good, 0o644); err != nil {
		t.Fatal(err)
	}

	bomb, err := os.ReadFile("../internal/config/testdata/hostile/merge_bomb_12x9.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.cfg, bomb, 0o644); err != nil {
		t.Fatal(err)
	}
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.cmd.Process.Signal(syscall.SIGTERM)
	start := time.Now()
	select {
	case <-a.done:
		t.Logf("medic exited %v after SIGHUP (merge bomb) + SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(2*time.Second + time.Second): // the grace, and a second for the API and the audit
		syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		<-a.done
		t.Fatalf("medic still running %v after SIGTERM during a hostile reload", time.Since(start))
	}
}

package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/supervise"
)

// drillConfig: web (3 instances behind the proxy) for the instance faults;
// api depends on db and its readiness asks db (a dependency check belongs in
// readiness, never in liveness), for dependency-down. %[5]d and %[6]d are
// the db and api ports.
const drillConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 3
    port: %[3]d
    stop: {grace: 1s}
    restart: {initial: 200ms, crash_loop: {restarts: 4, window: 1m}}
    proxy: {listen: "127.0.0.1:0", try_timeout: 300ms, outlier: {base_ejection: 1s}}
    drills: {allow: true}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 200ms, timeout: 150ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready}, period: 100ms, timeout: 100ms, failure_threshold: 1}
  db:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: %[5]d
    stop: {grace: 1s}
    drills: {allow: true}
    probes:
      readiness: {http: {path: /healthz/ready}, period: 100ms, timeout: 100ms, failure_threshold: 1}
  api:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: %[6]d
    depends_on: [db]
    stop: {grace: 1s}
    proxy: {listen: "127.0.0.1:0"}
    drills: {allow: true}
    probes:
      liveness:  {http: {path: /healthz/live}, period: 200ms, timeout: 150ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready, port: %[5]d}, period: 100ms, timeout: 100ms, failure_threshold: 1}
drills:
  scenarios:
    stuck-unready:
      description: an instance unready until someone aborts
      fault: {kind: http, params: {path: /fault/unready, restore_path: /fault/reset}}
      detect: [{kind: instance.unready}]
      recover: [{kind: never.happens}]
      deadline: 2m
`

// runDrill runs `medic drill ... --json` and decodes its one JSON document;
// err is the CLI's exit error (exit 1 for a failed drill).
func (a *agent) runDrill(args ...string) (drill.Result, error) {
	a.t.Helper()
	out, err := a.medic(append([]string{"drill"}, append(args, "--json")...)...)
	var res drill.Result
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil {
		a.t.Fatalf("medic drill %v: not one JSON document (%v): %v\n%s\nmedic stderr:\n%s", args, jerr, err, out, tail(a.stderr.String(), 3000))
	}
	return res, err
}

// services reads the supervisor's part of the status. (It decodes only what
// drills need, so a change in the proxy's figures cannot break these tests.)
func (a *agent) services() map[string]supervise.ServiceStatus {
	a.t.Helper()
	out, err := a.medic("status", "--json")
	if err != nil {
		a.t.Fatal(err)
	}
	var doc struct{ Services []supervise.ServiceStatus }
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		a.t.Fatalf("status --json: %v\n%s", err, out)
	}
	m := map[string]supervise.ServiceStatus{}
	for _, s := range doc.Services {
		m[s.Name] = s
	}
	return m
}

func (a *agent) inst(svc string, i int) supervise.InstanceStatus {
	a.t.Helper()
	s := a.services()[svc]
	if i >= len(s.Instances) {
		a.t.Fatalf("no instance %s/%d", svc, i)
	}
	return s.Instances[i]
}

func secs(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2fs", *v)
}

// TestDrills runs every scenario that needs no remediation engine against
// real demoapp instances, each under open-loop load, and expects each to
// pass its verdict; then abort, safety refusals, history and reports.
func TestDrills(t *testing.T) {
	if testing.Short() {
		t.Skip("drills take about two minutes")
	}
	dir := t.TempDir()
	op, viewer := writeTokens(t, dir)
	a := startAgentIn(t, dir, fixPorts(t, drillConfig))
	a.token = op
	a.eventually(20*time.Second, "web 3 ready, api ready", func() bool {
		s := a.services()
		return s["web"].Ready == 3 && s["api"].Ready == 1 && s["db"].Ready == 1
	})

	var table []string
	for _, c := range []struct{ scenario, service string }{
		{"kill", "web"}, {"hang", "web"}, {"crashloop", "web"}, {"unready", "web"},
		{"latency", "web"}, {"errors", "web"}, {"reset", "web"}, {"dependency-down", "api"},
	} {
		t.Run(c.scenario, func(t *testing.T) {
			args := []string{c.scenario, "--service", c.service, "--load", "100"}
			if c.scenario == "kill" {
				args = append(args, "--report", filepath.Join(dir, "kill-report"))
			}
			res, err := a.runDrill(args...)
			table = append(table, fmt.Sprintf("%-16s %-6s ttd %-7s ttr %-7s full %-7s errors %d/%d  p99 before/during/after %.1f/%.1f/%.1f ms",
				c.scenario, res.Subject.Instance, secs(res.TTD), secs(res.TTR), secs(res.FullCapacity), res.ClientErrors, res.Requests,
				res.Latency.Before.P99*1000, res.Latency.During.P99*1000, res.Latency.After.P99*1000))
			if err != nil || !res.Passed || res.Scenario != c.scenario || res.TTD == nil || res.TTR == nil || res.Report == "" {
				t.Fatalf("drill %s: %v\n%s\nreasons: %q", c.scenario, err, res.Summary, res.Reasons)
			}
			if c.service == "web" && res.Requests < 200 {
				t.Fatalf("only %d requests of load", res.Requests)
			}
		})
	}
	t.Logf("drill figures (demoapp, 3 instances, 100 req/s through the proxy):\n%s", strings.Join(table, "\n"))

	t.Run("report", func(t *testing.T) {
		for _, f := range []string{"report.html", "report.md", "report.json"} {
			b, err := os.ReadFile(filepath.Join(dir, "kill-report", f))
			if err != nil || len(b) < 500 {
				t.Fatalf("%s: %v (%d bytes)", f, err, len(b))
			}
		}
		code, body := getWithToken("http://"+a.addr+"/v1/drills/1/report.html", viewer)
		if code != 200 || !strings.Contains(body, "<svg") || strings.Contains(body, "<script") {
			t.Fatalf("GET report.html: %d\n%.500s", code, body)
		}
	})

	t.Run("abort restores", func(t *testing.T) {
		cmd := exec.Command(medicBin, "drill", "stuck-unready", "--service", "web", "--instance", "1", "--json", "--addr", a.addr, "--token", op)
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		defer func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				<-done
			}
		}()
		port := a.inst("web", 1).Port
		a.eventually(15*time.Second, "web/1 unready under the drill", func() bool {
			code, _ := get(fmt.Sprintf("http://127.0.0.1:%d/healthz/ready", port))
			return code == 503
		})
		// One drill at a time.
		if _, err := a.medic("drill", "kill", "--service", "web"); err == nil || !strings.Contains(err.Error(), "another drill is running") {
			t.Fatalf("second drill: %v", err)
		}
		outAbort, err := a.medic("drill", "abort")
		if err != nil || !strings.Contains(outAbort, "aborted; restored: POST /fault/reset on web/1") {
			t.Fatalf("abort: %v\n%s", err, outAbort)
		}
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("the drill CLI did not end after the abort")
		}
		var res drill.Result
		if jerr := json.Unmarshal(out.Bytes(), &res); jerr != nil || err == nil {
			t.Fatalf("aborted drill: exit %v, %v\n%s", err, jerr, out.String())
		}
		if res.State != drill.StateAborted || res.Reasons[0] != "aborted by api:ops" {
			t.Fatalf("state %s reasons %q", res.State, res.Reasons)
		}
		if code, _ := get(fmt.Sprintf("http://127.0.0.1:%d/healthz/ready", port)); code != 200 {
			t.Fatalf("web/1 readiness after the abort: %d, want 200 (the fault must be removed)", code)
		}
		audit, err := a.medic("audit", "list", "--actor", fmt.Sprintf("drill:%d", res.ID), "--json")
		if err != nil || !strings.Contains(audit, "drill.restored") || !strings.Contains(audit, "drill.verdict") {
			t.Fatalf("audit of the aborted drill: %v\n%s", err, audit)
		}
	})

	t.Run("safety", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"kill", "--service", "api"}, "disruption budget: api has 1 of 1 instances ready"},
			{[]string{"kill", "--service", "nope"}, `unknown service "nope"`},
			{[]string{"no-such", "--service", "web"}, `unknown scenario "no-such"`},
			{[]string{"leak", "--service", "web"}, "needs the remedy component"},
			{[]string{"kill", "--service", "web", "--token", viewer}, "HTTP 403"},
		} {
			_, err := a.medic(append([]string{"drill"}, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("medic drill %v: %v, want %q", c.args, err, c.want)
			}
		}
	})

	t.Run("history", func(t *testing.T) {
		out, err := a.medic("drills")
		if err != nil || !strings.Contains(out, "dependency-down") || !strings.Contains(out, "aborted") {
			t.Fatalf("medic drills: %v\n%s", err, out)
		}
		out, err = a.medic("drills", "--modes")
		for _, mode := range []string{"process crashes", "process hangs", "crash loop", "instance cannot serve", "dependency down"} {
			if err != nil || !strings.Contains(out, mode) {
				t.Fatalf("medic drills --modes lacks %q: %v\n%s", mode, err, out)
			}
		}
	})
}

// fixPorts fills %[5]d and %[6]d (db and api ports) and leaves the standard
// arguments for startAgentIn.
func fixPorts(t *testing.T, cfg string) string {
	t.Helper()
	base := freePort(t, 2)
	r := strings.NewReplacer("%[5]d", fmt.Sprint(base), "%[6]d", fmt.Sprint(base+1))
	return r.Replace(cfg)
}

const brokenConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 3
    port: %[3]d
    min_available: 1
    stop: {grace: 1s}
    restart: {policy: never}
    proxy: {listen: "127.0.0.1:0", try_timeout: 300ms}
    drills: {allow: true}
    probes:
      readiness: {http: {path: /healthz/ready}, period: 100ms, timeout: 100ms, failure_threshold: 1}
  plain:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: %[5]d
`

// TestDrillBrokenRecoveryFails: with the recoveries switched off (restart
// policy never; no liveness probe), the kill and hang drills fail with the
// reason, past their deadline, and the hang drill's SIGSTOP is undone.
func TestDrillBrokenRecoveryFails(t *testing.T) {
	dir := t.TempDir()
	op, _ := writeTokens(t, dir)
	a := startAgentIn(t, dir, fixPorts(t, brokenConfig))
	a.token = op
	a.eventually(15*time.Second, "3 ready", func() bool { return a.services()["web"].Ready == 3 })

	res, err := a.runDrill("kill", "--service", "web", "--instance", "2", "--duration", "3s")
	if err == nil || res.Passed || res.TTD == nil || res.TTR != nil {
		t.Fatalf("kill without restarts: exit %v, %s", err, res.Summary)
	}
	if !strings.Contains(strings.Join(res.Reasons, "\n"), "not recovered within 3s: no instance.started on target") {
		t.Fatalf("reasons %q", res.Reasons)
	}

	hung := a.inst("web", 1)
	res, err = a.runDrill("hang", "--service", "web", "--instance", "1", "--duration", "3s")
	if err == nil || res.Passed || res.Subject.Instance != "web/1" {
		t.Fatalf("hang without liveness: exit %v, %s", err, res.Summary)
	}
	all := strings.Join(res.Reasons, "\n")
	if !strings.Contains(all, "deadline: not recovered within 3s; the drill stopped injecting and restored what it changed") ||
		!strings.Contains(all, "detected after") {
		t.Fatalf("reasons %q", res.Reasons)
	}
	if len(res.Steps) != 2 || res.Steps[1].Detail != fmt.Sprintf("sent SIGCONT to pid %d", hung.PID) {
		t.Fatalf("steps %+v", res.Steps)
	}
	// Restored: the same process serves again.
	a.eventually(10*time.Second, "web/1 serving again after SIGCONT", func() bool {
		code, body := get(fmt.Sprintf("http://127.0.0.1:%d/", hung.Port))
		return code == 200 && strings.Contains(body, fmt.Sprintf(`"pid":%d`, hung.PID))
	})
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", hung.PID)); strings.Contains(string(b), ") T ") {
		t.Fatalf("pid %d is still stopped", hung.PID)
	}

	if _, err := a.medic("drill", "kill", "--service", "plain"); err == nil || !strings.Contains(err.Error(), "does not allow drills") {
		t.Fatalf("drill of a service without drills.allow: %v", err)
	}
}

const scheduledConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 2
    port: %[3]d
    min_available: 1
    stop: {grace: 1s}
    proxy: {listen: "127.0.0.1:0"}
    drills: {allow: true}
    probes:
      readiness: {http: {path: /healthz/ready}, period: 100ms, timeout: 100ms, failure_threshold: 1}
drills:
  schedule:
    - {scenario: kill, service: web, cron: "@every 2s", load_rps: 20}
`

// TestScheduledDrillIsKept: a scheduled drill runs by itself, and its result
// outlives the agent (the next one on the data directory lists it).
func TestScheduledDrillIsKept(t *testing.T) {
	dir := t.TempDir()
	op, viewer := writeTokens(t, dir)
	a := startAgentIn(t, dir, scheduledConfig)
	a.token = viewer
	var first drill.Brief
	a.eventually(30*time.Second, "a scheduled drill passed", func() bool {
		out, err := a.medic("drills", "--json")
		if err != nil {
			return false
		}
		var doc struct{ Drills []drill.Brief }
		json.Unmarshal([]byte(out), &doc)
		for _, b := range doc.Drills {
			if b.State == drill.StatePassed {
				first = b
				return true
			}
		}
		return false
	})
	code, body := getWithToken(fmt.Sprintf("http://%s/v1/drills/%d", a.addr, first.ID), viewer)
	if code != 200 || !strings.Contains(body, `"actor": "schedule:0"`) {
		t.Fatalf("drill %d: %d\n%.300s", first.ID, code, body)
	}
	a.stop()

	b := startAgentIn(t, dir, strings.Replace(scheduledConfig, `cron: "@every 2s"`, `cron: "0 0 1 1 *"`, 1))
	b.token = op
	out, err := b.medic("drills", "--json")
	if err != nil || !strings.Contains(out, fmt.Sprintf(`"id": %d`, first.ID)) {
		t.Fatalf("after a restart: %v\n%s", err, out)
	}
	out, err = b.medic("drills", "--modes")
	if err != nil || !strings.Contains(out, "process crashes") || !strings.Contains(out, "passed") {
		t.Fatalf("modes after a restart: %v\n%s", err, out)
	}
}

const remedyDrillConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 3
    port: %[3]d
    stop: {grace: 1s}
    proxy: {listen: "127.0.0.1:0", try_timeout: 300ms}
    drills: {allow: true}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 200ms, timeout: 150ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready}, period: 100ms, timeout: 100ms, failure_threshold: 1}
conditions:
  disk_full: {signal: host_disk_used_percent, labels: {path: %[4]s/disk}, above: 90}
  memory_leak: {signal: instance_rss_bytes, labels: {service: web}, above: 200MiB, for: 2s}
runbooks:
  tmp_cleanup: {builtin: disk_cleanup, params: {root: %[4]s/disk, glob: "*.fill", older_than: 1h, condition: disk_full}, trust: act}
  leak_restart: {builtin: leak_rolling_restart, params: {condition: memory_leak, ready_timeout: 30s, within: 1m}, trust: act}
drills:
  disk_paths: [%[4]s/disk]
`

// TestRemediationDrills proves the runbooks with drills: a disk filled to
// 97% is cleaned up, a leaking instance is restarted within the disruption
// budget; with automation paused (the recovery switched off) the leak drill
// fails with the reason and the leak is stopped.
func TestRemediationDrills(t *testing.T) {
	if testing.Short() {
		t.Skip("remediation drills take about a minute")
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	// A small file system of its own, so that 97% full is 62 MiB, not the host's disk.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", disk).CombinedOutput(); err != nil {
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("mount a tmpfs for the disk drill: %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs for the disk drill (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", disk).Run() })
	op, _ := writeTokens(t, dir)
	a := startAgentIn(t, dir, remedyDrillConfig)
	a.token = op
	a.eventually(15*time.Second, "3 ready", func() bool { return a.services()["web"].Ready == 3 })

	res, err := a.runDrill("disk-full", "--service", "web")
	if err != nil || !res.Passed {
		t.Fatalf("disk-full: %v %s %q", err, res.Summary, res.Reasons)
	}
	if entries, _ := os.ReadDir(disk); len(entries) != 0 {
		t.Fatalf("the fill file is still there: %v", entries)
	}
	t.Logf("disk-full: ttd %s ttr %s (%s)", secs(res.TTD), secs(res.TTR), res.Recovered.Reason)

	res, err = a.runDrill("leak", "--service", "web", "--duration", "1m")
	if err != nil || !res.Passed {
		t.Fatalf("leak: %v %s %q", err, res.Summary, res.Reasons)
	}
	t.Logf("leak: ttd %s ttr %s, %d of %d requests failed", secs(res.TTD), secs(res.TTR), res.ClientErrors, res.Requests)

	if _, err := a.medic("pause"); err != nil {
		t.Fatal(err)
	}
	res, err = a.runDrill("leak", "--service", "web", "--duration", "15s")
	if err == nil || res.Passed {
		t.Fatalf("leak with automation paused passed: %s", res.Summary)
	}
	if all := strings.Join(res.Reasons, "\n"); !strings.Contains(all, "not recovered within 15s") {
		t.Fatalf("reasons %q", res.Reasons)
	}
	if res.Steps[1].Error != "" || !strings.Contains(res.Steps[1].Detail, "POST /fault/reset") {
		t.Fatalf("the leak was not stopped: %+v", res.Steps[1])
	}
	if _, err := a.medic("resume"); err != nil {
		t.Fatal(err)
	}
}

package e2e_test

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

const twoServices = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 2
    port: %[3]d
    stop: {grace: 1s}
    probes:
      readiness: {http: {path: /healthz/ready}, period: 100ms, timeout: 100ms}
  api:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: %[5]d
    depends_on: [web]
    probes:
      readiness: {http: {path: /healthz/ready}, period: 100ms, timeout: 100ms}
`

// TestReloadLogsMetricsAndTamper covers the operator's day: reload (rejected
// when invalid, applied as a diff when valid), logs, events, metrics, and an
// audit log that detects tampering after the agent stopped.
func TestReloadLogsMetricsAndTamper(t *testing.T) {
	dir := t.TempDir()
	base := freePort(t, 4)
	cfg := strings.ReplaceAll(twoServices, "%[5]d", fmt.Sprint(base+3))
	admin, err := runMedic("token", "add", "root", "--role", "admin", "-f", dir+"/tokens.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a := startAgentIn(t, dir, cfg)
	a.token = strings.TrimSpace(admin)
	a.eventually(15*time.Second, "3 ready", func() bool {
		d := a.status()
		return d.Services[0].Ready+d.Services[1].Ready == 3
	})
	apiPID := a.instance("api", 0).PID
	webPID := a.instance("web", 0).PID

	// An invalid config is rejected on SIGHUP; the running one stays.
	good, _ := os.ReadFile(a.cfg)
	os.WriteFile(a.cfg, []byte(strings.Replace(string(good), "instances: 2", "instances: zero", 1)), 0o644)
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.eventually(5*time.Second, "reload rejected in the audit log", func() bool {
		out, _ := a.medic("audit", "list", "--kind", "config.reload", "--json")
		return strings.Contains(out, "reload rejected")
	})
	if out, err := a.medic("reload"); err == nil || !strings.Contains(err.Error(), "instances") {
		t.Fatalf("medic reload with an invalid file: %v %s, want an error naming the field", err, out)
	}
	if d := a.status(); len(d.Services[1].Instances) != 2 || a.instance("web", 0).PID != webPID {
		t.Fatal("the rejected config changed the running services")
	}

	// A valid change (web: 2 → 3 instances) restarts web only; api keeps running.
	os.WriteFile(a.cfg, []byte(strings.Replace(string(good), "instances: 2", "instances: 3", 1)), 0o644)
	a.cmd.Process.Signal(syscall.SIGHUP)
	a.eventually(15*time.Second, "web scaled to 3 by reload", func() bool {
		for _, s := range a.status().Services {
			if s.Name == "web" {
				return s.Ready == 3
			}
		}
		return false
	})
	if pid := a.instance("api", 0).PID; pid != apiPID {
		t.Fatalf("unchanged service api restarted by reload: pid %d → %d", apiPID, pid)
	}

	// Logs and events through the CLI.
	out, err := a.medic("logs", "web/0")
	if err != nil || !strings.Contains(out, "demoapp") {
		t.Fatalf("medic logs web/0: %v\n%s", err, out)
	}
	out, err = a.medic("events")
	if err != nil || !strings.Contains(out, "instance.ready") || !strings.Contains(out, "config.reload") {
		t.Fatalf("medic events: %v\n%s", err, out)
	}
	out, err = a.medic("status")
	if err != nil || !strings.Contains(out, "web/2") || !strings.Contains(out, "api: 1/1 ready") {
		t.Fatalf("medic status: %v\n%s", err, out)
	}
	code, body := getWithToken("http://"+a.addr+"/metrics", a.token)
	for _, m := range []string{`medic_instance_ready{instance="web/0",service="web"} 1`, "medic_probe_duration_seconds_bucket", "medic_instance_restarts_total", "medic_service_ready_instances"} {
		if code != 200 || !strings.Contains(body, m) {
			t.Fatalf("/metrics lacks %q (HTTP %d)", m, code)
		}
	}

	// Stop the agent, edit one audit record behind its back, and verify offline.
	a.stop()
	data := filepath.Join(dir, "data")
	if out, err := exec.Command(medicBin, "audit", "verify", "--data-dir", data).CombinedOutput(); err != nil {
		t.Fatalf("verify of an untouched log: %v\n%s", err, out)
	}
	db, err := sql.Open("sqlite", filepath.Join(data, "medic.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"DROP TRIGGER audit_no_update", "UPDATE audit SET reason = 'nothing happened' WHERE seq = 5"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	cmd := exec.Command(medicBin, "audit", "verify", "--data-dir", data)
	out2, err := cmd.CombinedOutput()
	if err == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out2), "seq 5") {
		t.Fatalf("verify after tampering: exit %d, %s; want exit 1 naming seq 5", cmd.ProcessState.ExitCode(), out2)
	}
}

func TestValidateReportsEveryError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("services:\n  web:\n    command: []\n    instances: 0\n    restart: {policy: sometimes}\n"), 0o644)
	cmd := exec.Command(medicBin, "validate", "-c", path)
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("validate exit %d, want 1\n%s", cmd.ProcessState.ExitCode(), out)
	}
	for _, want := range []string{"bad.yaml:3:", "bad.yaml:4:", "bad.yaml:5:", "services.web.restart.policy"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	cmd = exec.Command(medicBin, "status", "extra-arg")
	cmd.Run()
	if cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("usage error exit %d, want 2", cmd.ProcessState.ExitCode())
	}
}

package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/supervise"
)

const auditFullConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
conditions:
  ping: {alert: {match: {alertname: Ping}}}
runbooks:
  mark:
    trigger: {condition: ping}
    target: "${labels.instance}"
    steps: [{action: exec, command: [sh, %[4]s/mark.sh, "${labels.instance}"]}]
    trust: act
    rate: {max: 1000, per: 1h}
automation: {rate: {max: 1000, per: 1h}}
services:
  filler:
    command: [sh, %[4]s/filler.sh]
    instances: 8
    env: {FLAG: %[4]s/fill, DATA: %[4]s/data}
    restart: {initial: 20ms, multiplier: 1, max: 20ms, jitter: 0}
`

// The filler crash-loops while the flag exists, each crash writing 64 KiB
// into the data directory; without the flag it idles.
const fillerScript = `while [ ! -e "$FLAG" ]; do sleep 0.05; done
f=$(mktemp -p "$DATA" fill.XXXXXX) && head -c 65536 /dev/zero > "$f"
exit 1
`

// TestAuditFailsClosedOnAFullDisk is the full-disk figure of issue 12, on
// the real binary with data_dir on a 2 MiB tmpfs filled by a crash-looping
// service: status says "audit degraded" within 2 s of the disk filling;
// remediation triggered meanwhile is blocked by the audit guard and runs
// no action (0 actions without a record); supervision keeps restarting;
// once space is freed the log resumes on its own, `medic audit verify`
// passes and the gap record names the lost count. Before, 4 275 appends
// failed silently while events were acted on, and verify answered ok.
func TestAuditFailsClosedOnAFullDisk(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", data).CombinedOutput(); err != nil {
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("mount a 2 MiB tmpfs as data_dir: %v: %s", err, out)
		}
		t.Skipf("cannot mount a 2 MiB tmpfs as data_dir (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", data).Run() })
	for name, body := range map[string]string{"filler.sh": fillerScript, "mark.sh": "echo \"$1\" >> " + dir + "/acted\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	op, _ := writeTokens(t, dir)
	a := startAgentIn(t, dir, auditFullConfig)
	a.token = op
	alert := func(instance string) {
		t.Helper()
		body := fmt.Sprintf(`{"labels": {"alertname": "Ping", "instance": %q}, "status": "firing"}`, instance)
		req, _ := http.NewRequest("POST", "http://"+a.addr+"/v1/alerts", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+a.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("alert %s: HTTP %d", instance, resp.StatusCode)
		}
	}
	acted := func() []string {
		b, _ := os.ReadFile(filepath.Join(dir, "acted"))
		return strings.Fields(string(b))
	}
	// Healthy: remediation acts and is recorded.
	alert("before")
	a.eventually(10*time.Second, "the runbook acted on 'before'", func() bool { return len(acted()) == 1 })

	// Fill: the crash loop writes until the file system is full; the test
	// tops off the last pages so that the next append cannot find room.
	if err := os.WriteFile(filepath.Join(dir, "fill"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	a.eventually(20*time.Second, "the data_dir filled by the crash loop", func() bool { return free(data) < 128<<10 })
	topOff(data)
	full := time.Now()
	var h audit.Health
	a.eventually(2*time.Second, "status says the audit log is degraded within 2 s of the disk filling", func() bool {
		h = a.status().Audit
		return h.Degraded
	})
	t.Logf("degraded %v after the disk filled: %s", time.Since(full).Round(time.Millisecond), h)
	if !strings.Contains(h.Reason, "full") && !strings.Contains(h.Reason, "no space") {
		t.Errorf("degraded reason %q does not say the disk is full", h.Reason)
	}
	if out, err := a.medic("status"); err != nil || !strings.Contains(out, "AUDIT DEGRADED") {
		t.Errorf("medic status does not say the audit log is degraded: %v\n%s", err, out)
	}
	if _, err := a.medic("audit", "verify"); err == nil || !strings.Contains(err.Error(), "audit degraded") {
		t.Errorf("medic audit verify while degraded: %v, want a failure saying audit degraded", err)
	}
	if code, body := getWithToken("http://"+a.addr+"/metrics", a.token); code != 200 || !strings.Contains(body, "medic_audit_degraded 1") {
		t.Errorf("/metrics does not say medic_audit_degraded 1 (HTTP %d)", code)
	}
	// The crash loop goes on (supervision keeps restarting) and overflows the hold buffer.
	restartsBefore := a.services()["filler"].Instances[0].Restarts
	a.eventually(30*time.Second, "records lost from the full hold buffer", func() bool { return a.status().Audit.Lost > 0 })
	if after := a.services()["filler"].Instances[0].Restarts; after <= restartsBefore {
		t.Errorf("supervision stopped restarting while the audit log was degraded: %d → %d restarts", restartsBefore, after)
	}
	// End the crash loop (the disk stays full), so that what follows is
	// held, not pushed out of the buffer by the flood.
	if err := os.Remove(filepath.Join(dir, "fill")); err != nil {
		t.Fatal(err)
	}
	a.eventually(10*time.Second, "the crash loop idles", func() bool {
		before := restarts(a.services()["filler"].Instances)
		time.Sleep(300 * time.Millisecond)
		return restarts(a.services()["filler"].Instances) == before
	})
	// Remediation while degraded: decided, blocked by the audit guard, no action.
	for i := range 5 {
		alert(fmt.Sprintf("during%d", i))
	}
	time.Sleep(time.Second) // time for the engine to decide (and, before the fix, to act)
	if got := acted(); len(got) != 1 {
		t.Fatalf("remediation acted while the audit log was degraded: %v", got)
	}
	if !a.status().Audit.Degraded {
		t.Fatal("the audit log recovered while the disk was still full")
	}
	// An operator's action is refused like automation's: no action without its record.
	pid := a.services()["filler"].Instances[0].PID
	if out, err := a.medic("restart", "filler/0"); err == nil || !strings.Contains(err.Error()+out, "audit degraded") {
		t.Errorf("medic restart filler/0 while the audit log was degraded: %v %s; want a refusal saying audit degraded", err, out)
	}
	if now := a.services()["filler"].Instances[0].PID; now != pid {
		t.Errorf("filler/0 was restarted (pid %d → %d) while the audit log was degraded", pid, now)
	}

	// Free the space: appends resume on their own within the retry period.
	fills, _ := filepath.Glob(filepath.Join(data, "fill.*"))
	for _, f := range fills {
		os.Remove(f)
	}
	os.Remove(filepath.Join(data, "topoff"))
	freed := time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for a.status().Audit.Degraded {
		if time.Now().After(deadline) {
			ls, _ := exec.Command("ls", "-la", data, data+"/logs").CombinedOutput()
			t.Fatalf("still degraded 10 s after space was freed (%d bytes free): %s\n%s", free(data), a.status().Audit, ls)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("healthy %v after space was freed", time.Since(freed).Round(time.Millisecond))
	if out, err := a.medic("audit", "verify"); err != nil {
		t.Fatalf("audit verify after recovery: %v %s", err, out)
	}
	var gaps struct {
		Records []audit.Record `json:"records"`
	}
	out, err := a.medic("audit", "list", "--kind", audit.KindGap, "--json")
	if err != nil || json.Unmarshal([]byte(out), &gaps) != nil || len(gaps.Records) == 0 {
		t.Fatalf("no gap record after recovery: %v\n%s", err, out)
	}
	lost, _ := strconv.Atoi(gaps.Records[0].Fields["lost"])
	if lost < 1 || !strings.Contains(gaps.Records[0].Reason, fmt.Sprintf("%d audit records lost", lost)) {
		t.Fatalf("gap record does not name the lost count: %+v", gaps.Records[0])
	}
	t.Logf("gap record: %s", gaps.Records[0].Reason)
	// Every action has its durable start record; the blocked decisions were held and written.
	var starts, blocked struct {
		Records []audit.Record `json:"records"`
	}
	out, _ = a.medic("audit", "list", "--kind", "remedy.step.start", "--json")
	json.Unmarshal([]byte(out), &starts)
	out, _ = a.medic("audit", "list", "--kind", "remedy.decision", "--json")
	json.Unmarshal([]byte(out), &blocked)
	if n := len(acted()); n > len(starts.Records) {
		t.Fatalf("%d actions, %d durable step start records", n, len(starts.Records))
	}
	guarded := 0
	for _, r := range blocked.Records {
		if r.Fields["guard"] == "audit" {
			guarded++
		}
	}
	if guarded == 0 {
		t.Errorf("no decision blocked by the audit guard in the log after recovery")
	}
	// And remediation works again.
	alert("after")
	a.eventually(10*time.Second, "the runbook acts again after recovery", func() bool { return len(acted()) == 2 })
}

func restarts(ins []supervise.InstanceStatus) int {
	n := 0
	for _, in := range ins {
		n += in.Restarts
	}
	return n
}

// free returns the bytes available on the file system at path.
func free(path string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * st.Bsize
}

// topOff fills what is left of the file system at path (ENOSPC ends it).
func topOff(path string) {
	f, err := os.Create(filepath.Join(path, "topoff"))
	if err != nil {
		return
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			return
		}
	}
}

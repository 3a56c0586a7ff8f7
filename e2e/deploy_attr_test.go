package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/release"
)

// The control and the attribution of bench/deploy.sh (issue 16: the p99
// during a deploy). Both are off in CI: the control doubles the load, the
// attribution only adds log lines.

// deployControl is a second client at the deploy's rate going straight to a
// demoapp outside medic (MEDIC_DEPLOY_CONTROL=1): nothing of the deploy
// touches it, so what it sees in the deploy's window is what the machine
// does to any server while the deploy's processes start on the same cores.
type deployControl struct {
	l      *deployLoad
	cmd    *exec.Cmd
	as     []deployAnswer // after report
	normal time.Duration  // after report
}

// startDeployControl starts the demoapp and its load, or returns nil when
// MEDIC_DEPLOY_CONTROL is not 1. The demoapp is stopped by its pid.
func startDeployControl(t *testing.T, rate int, within time.Duration) *deployControl {
	t.Helper()
	if os.Getenv("MEDIC_DEPLOY_CONTROL") != "1" {
		return nil
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t, 1))
	cmd := exec.Command(medicBin, "demoapp", "--listen", addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "VERSION=control")
	if err := cmd.Start(); err != nil {
		t.Fatalf("control demoapp: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("control demoapp on %s not ready within 10s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := &deployControl{l: startDeployLoad("http://"+addr+"/", rate, within), cmd: cmd}
	t.Cleanup(func() { c.l.finish() }) // before the demoapp's kill (cleanups run last first)
	return c
}

// report stops the control's load and gives its p99 over [from, to) against
// the same estimator over its requests before from.
func (c *deployControl) report(t *testing.T, what string, from, to time.Time) {
	t.Helper()
	if c == nil {
		return
	}
	as := c.l.finish()
	n, f, p99 := summary(as, from, to)
	normal, nw := normalP99(as, as[0].sent, from, n)
	c.as, c.normal = as, normal
	dumpSamples(t, what+"-control", as, as[0].sent, from, to)
	_, fall, _ := summary(as, as[0].sent, time.Now().Add(time.Hour))
	ratio := 0.0
	if normal > 0 {
		ratio = float64(p99) / float64(normal)
	}
	t.Logf("%s control (a demoapp outside medic, the same rate straight to it): p99 %v during vs %v before (%.2f×; median p99 of %d windows of %d requests); %d errors during, %d in all", what, p99, normal, ratio, nw, n, f, fall)
}

// attribute logs, with MEDIC_DEPLOY_ATTRIBUTE=1, each request sent in
// [from, to) that took longer than normal, with its time from from; the
// deploy's phases from the audit (every instance's start, readiness,
// the deploy's records) and the agent's GC cycles (MEDIC_AGENT_GODEBUG=gctrace=1)
// in the same window, so that a slow request can be set beside what medic
// was doing.
func (a *agent) attribute(t *testing.T, what string, as []deployAnswer, from, to time.Time, normal time.Duration, ctl *deployControl) {
	t.Helper()
	if os.Getenv("MEDIC_DEPLOY_ATTRIBUTE") != "1" {
		return
	}
	at := func(x time.Time) string { return fmt.Sprintf("%+.1fms", float64(x.Sub(from))/1e6) }

	type event struct {
		when  time.Time
		what  string
		lasts time.Duration // a GC cycle's mark phase
	}
	var recs []event
	out, err := a.medic("audit", "list", "--json", "--limit", "400", "--since", from.Add(-50*time.Millisecond).UTC().Format(time.RFC3339Nano))
	if err != nil {
		t.Logf("%s attribution: audit list: %v", what, err)
	} else {
		var rs struct {
			Records []audit.Record `json:"records"`
		}
		if err := json.Unmarshal([]byte(out), &rs); err != nil {
			t.Logf("%s attribution: audit list: %v", what, err)
		}
		for _, r := range rs.Records {
			if !r.Time.After(to.Add(500 * time.Millisecond)) {
				recs = append(recs, event{when: r.Time, what: r.Kind + " " + r.Target})
			}
		}
		slices.SortStableFunc(recs, func(x, y event) int { return x.when.Compare(y.when) })
	}
	// gc 12 @3.456s 1%: 0.020+1.2+0.010 ms clock, …
	re := regexp.MustCompile(`(?m)^gc \d+ @([0-9.]+)s \d+%: ([0-9.]+)\+([0-9.]+)\+([0-9.]+) ms clock`)
	var gcs []event
	for _, m := range re.FindAllStringSubmatch(a.stderr.String(), -1) {
		s, _ := strconv.ParseFloat(m[1], 64)
		when := a.started.Add(time.Duration(s * 1e9))
		if when.Before(from.Add(-100*time.Millisecond)) || when.After(to) {
			continue
		}
		var ms [3]float64
		for i := range ms {
			ms[i], _ = strconv.ParseFloat(m[2+i], 64)
		}
		gcs = append(gcs, event{when: when, what: fmt.Sprintf("STW %sms, mark %sms, STW %sms", m[2], m[3], m[4]),
			lasts: time.Duration((ms[0] + ms[1] + ms[2]) * 1e6)})
	}

	// Each slow request with the last audit record before it was sent and
	// "gc" when a GC cycle overlapped it.
	// Which process answered, and how many requests it had answered
	// before (a new instance's first requests run cold code).
	nth := map[int]int{}
	rank := make([]int, len(as))
	for i, x := range as {
		if x.pid != 0 {
			rank[i] = nth[x.pid]
			nth[x.pid]++
		}
	}
	var slow []string
	for i, x := range as {
		if x.sent.Before(from) || !x.sent.Before(to) || x.took <= normal {
			continue
		}
		after := "the deploy's request"
		for _, r := range recs {
			if r.when.After(x.sent) {
				break
			}
			after = r.what
		}
		gc := ""
		for _, g := range gcs {
			if g.when.Before(x.sent.Add(x.took)) && g.when.Add(g.lasts).After(x.sent) {
				gc = ", gc"
			}
		}
		slow = append(slow, fmt.Sprintf("%s took %.2fms by %s pid %d (its request %d) [after %s%s]", at(x.sent), float64(x.took)/1e6, x.instance, x.pid, rank[i]+1, after, gc))
	}
	t.Logf("%s attribution: %d requests over the normal p99 %v: %s", what, len(slow), normal, strings.Join(slow, "; "))
	if ctl != nil {
		var cs []string
		for _, x := range ctl.as {
			if !x.sent.Before(from) && x.sent.Before(to) && x.took > ctl.normal {
				cs = append(cs, fmt.Sprintf("%s took %.2fms", at(x.sent), float64(x.took)/1e6))
			}
		}
		t.Logf("%s attribution: the control's %d requests over its normal p99 %v: %s", what, len(cs), ctl.normal, strings.Join(cs, "; "))
	}
	var tl []string
	for _, r := range recs {
		tl = append(tl, at(r.when)+" "+r.what)
	}
	t.Logf("%s attribution: audit records (their times): %s", what, strings.Join(tl, "; "))
	var gl []string
	for _, g := range gcs {
		gl = append(gl, at(g.when)+" "+g.what)
	}
	if os.Getenv("MEDIC_AGENT_GODEBUG") != "" {
		t.Logf("%s attribution: agent GC cycles (start, from gctrace): %d: %s", what, len(gl), strings.Join(gl, "; "))
	}
}

// dumpTrace has the agent write the last seconds of its runtime trace
// (MEDIC_AGENT_RUNTIME_TRACE=DIR, bench/deploy.sh TRACE=1: the agent runs
// with MEDIC_RUNTIME_TRACE=DIR/agent.trace and writes it on SIGUSR1)
// and waits until the file stops growing; then renames it to
// DIR/NAME-PID-UNIXMILLI.trace, the time of the deploy's start in it.
func (a *agent) dumpTrace(t *testing.T, name string, begin time.Time) {
	t.Helper()
	dir := os.Getenv("MEDIC_AGENT_RUNTIME_TRACE")
	if dir == "" {
		return
	}
	pid := a.cmd.Process.Pid
	path := dir + "/agent.trace"
	os.Remove(path)
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		t.Logf("trace: SIGUSR1 to %d: %v", pid, err)
		return
	}
	last := int64(-1)
	for i := 0; i < 50; i++ { // ≤ 5 s
		time.Sleep(100 * time.Millisecond)
		st, err := os.Stat(path)
		if err == nil && st.Size() > 0 && st.Size() == last {
			to := fmt.Sprintf("%s/%s-%d-%d.trace", dir, name, pid, begin.UnixMilli())
			if err := os.Rename(path, to); err != nil {
				t.Logf("trace: %v", err)
				return
			}
			t.Logf("%s trace: %s (the deploy began at %s)", name, to, begin.Format("15:04:05.000"))
			return
		}
		if err == nil {
			last = st.Size()
		}
	}
	t.Logf("trace: %s not written within 5s", path)
}

// dumpSamples appends, with MEDIC_DEPLOY_SAMPLES=FILE (bench/deploy.sh),
// the latency of every request sent in the normal window [lead, from) and
// in the deploy's [from, to), one line each: "WHAT normal|during NANOS".
// bench/deploy.sh pools them over all runs: the p99 of every request sent
// during the deploys against the p99 of every request sent before them,
// the figure's other estimator beside the per-deploy median (the p99 of a
// deploy's ~250 requests is its third slowest).
func dumpSamples(t *testing.T, what string, as []deployAnswer, lead, from, to time.Time) {
	t.Helper()
	path := os.Getenv("MEDIC_DEPLOY_SAMPLES")
	if path == "" {
		return
	}
	var b strings.Builder
	for _, x := range as {
		switch {
		case x.sent.Before(lead) || !x.sent.Before(to):
		case x.sent.Before(from):
			fmt.Fprintf(&b, "%s normal %d\n", what, x.took)
		default:
			fmt.Fprintf(&b, "%s during %d\n", what, x.took)
		}
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("deploy samples: %v", err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		t.Errorf("deploy samples: %v", err)
	}
}

// deploy runs `medic deploy SERVICE --set K=V … --version V --json` and
// returns its output; with MEDIC_DEPLOY_VIA=api (bench/deploy.sh VIA=api)
// it POSTs the same change to the API from this process instead, as a
// deploy started from another machine (a CI runner) would: the window then
// holds no process start of the CLI's own (a 60 MB Go binary, ≈ 14 ms of
// CPU on these 2 cores).
func (a *agent) deploy(service, version string, set map[string]string) (string, error) {
	if os.Getenv("MEDIC_DEPLOY_VIA") != "api" {
		args := []string{"deploy", service}
		for k, v := range set {
			args = append(args, "--set", k+"="+v)
		}
		return a.medic(append(args, "--version", version, "--json")...)
	}
	body, err := json.Marshal(release.Changes{Version: version, Set: set})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+a.addr+"/v1/services/"+service+"/deploy", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := (&http.Client{Timeout: 3 * time.Minute}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("POST /v1/services/%s/deploy: HTTP %d", service, resp.StatusCode)
	}
	return string(out), err
}

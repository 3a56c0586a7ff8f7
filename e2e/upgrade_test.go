package e2e_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestUpgradeUnderLoad: `medic upgrade` under load through the proxy hands
// the listeners and the 3 instances to a new medic process: 0 client errors,
// the same instance pids, 0 restarts (their sd_notify watchdog keeps
// arriving), the handover audited.
func TestUpgradeUnderLoad(t *testing.T) {
	dir := t.TempDir()
	proxyPort := freePort(t, 1)
	cfg := strings.ReplaceAll(`
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d"}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 3
    port: %[3]d
    probes:
      readiness: {http: {path: /healthz/ready}, period: 100ms, timeout: 100ms}
    notify: {ready: true, watchdog: 1s}
    proxy: {listen: "127.0.0.1:PROXYPORT"}
`, "PROXYPORT", strconv.Itoa(proxyPort))
	a := startAgentIn(t, dir, cfg)
	a.eventually(15*time.Second, "3 instances ready", func() bool {
		doc, ok := statusOf(a.addr)
		return ok && len(doc.Services) == 1 && doc.Services[0].Ready == 3
	})
	before := map[int]int{}
	for i := 0; i < 3; i++ {
		before[i] = a.instance("web", i).PID
	}
	pidFile := filepath.Join(dir, "data", "medic.pid")
	t.Cleanup(func() { // the new medic is not the test's child: stop it by its pid
		if pid, err := readPIDFile(pidFile); err == nil && pid != a.cmd.Process.Pid {
			syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 600 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(50 * time.Millisecond)
			}
		}
	})

	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok, fail int
		errs     []string
		lat      []time.Duration
		ends     []time.Time
		client   = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		url      = fmt.Sprintf("http://127.0.0.1:%d/", proxyPort)
		deadline = time.Now().Add(60 * time.Second)
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 20000 && !stop.Load() && time.Now().Before(deadline); n++ {
				t0 := time.Now()
				resp, err := client.Get(url)
				d := time.Since(t0)
				mu.Lock()
				if err == nil && resp.StatusCode == 200 {
					ok++
					lat = append(lat, d)
					ends = append(ends, t0.Add(d))
				} else {
					fail++
					if err != nil {
						errs = append(errs, err.Error())
					} else {
						errs = append(errs, resp.Status)
					}
				}
				mu.Unlock()
				if err == nil {
					resp.Body.Close()
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	time.Sleep(time.Duration(envInt("MEDIC_UPGRADE_WARMUP_MS", 500)) * time.Millisecond)
	upStart := time.Now()
	out, err := a.medic("upgrade", "-c", a.cfg)
	upEnd := time.Now()
	if err != nil {
		stop.Store(true)
		wg.Wait()
		t.Fatalf("medic upgrade: %v\n%s\nagent stderr:\n%s", err, out, tail(a.stderr.String(), 3000))
	}
	// medic upgrade returned once the old medic exited; a.done waits for the
	// stderr pipe too, which the new medic inherited: it is not waited for.
	if syscall.Kill(a.cmd.Process.Pid, 0) == nil && !isZombie(a.cmd.Process.Pid) {
		t.Fatalf("the old medic (pid %d) still runs after medic upgrade returned", a.cmd.Process.Pid)
	}
	newPID, err := readPIDFile(pidFile)
	if err != nil || newPID == a.cmd.Process.Pid {
		t.Fatalf("pid file after the upgrade: %d %v", newPID, err)
	}
	// The instances' sd_notify watchdog (1s) keeps reaching the new medic:
	// the old one must not remove the sockets the new one listens on.
	time.Sleep(2500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	doc, okStatus := statusOf(a.addr)
	if !okStatus || len(doc.Services) != 1 {
		t.Fatalf("the new medic does not answer on the API address")
	}
	for i, in := range doc.Services[0].Instances {
		if in.PID != before[i] || in.Restarts != 0 {
			t.Fatalf("web/%d after the upgrade: pid %d (was %d), %d restarts; want handed over untouched", i, in.PID, before[i], in.Restarts)
		}
	}
	evs, _ := a.medic("audit", "list")
	if !strings.Contains(evs, "agent.handover") || strings.Count(evs, "instance.adopted") < 3 {
		t.Fatalf("the handover and the 3 adoptions are not audited:\n%s", tail(evs, 3000))
	}
	var normal, during []time.Duration
	for i, d := range lat {
		if ends[i].Before(upStart) {
			normal = append(normal, d)
		} else if ends[i].Before(upEnd.Add(500 * time.Millisecond)) {
			during = append(during, d)
		}
	}
	// The ratio compares the same estimator: the p99 of as many requests as
	// the handover saw, over each run of that many before it (median), as
	// the deploy figures do (docs/deploys.md, "the figure").
	fair, windows := windowedP99(normal, len(during))
	t.Logf("figures: upgrade under load: %d ok, %d failed; p99 before the upgrade %v (%d requests), during the handover %v (%d requests); "+
		"p99 of %d requests before, median of %d windows, %v: during/normal %.2fx; medic upgrade took %v (old pid %d → new pid %d)",
		ok, fail, p99Of(normal), len(normal), p99Of(during), len(during), len(during), windows, fair,
		float64(p99Of(during))/float64(max(fair, 1)), upEnd.Sub(upStart).Round(time.Millisecond), a.cmd.Process.Pid, newPID)
	if fail != 0 {
		t.Fatalf("%d client errors during the upgrade: %v", fail, errs[:min(len(errs), 5)])
	}
}

func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err != nil || strings.Contains(string(b), ") Z")
}

// windowedP99 is the median over the runs of k consecutive durations in ds
// of their p99, and how many runs there were (0 when ds holds fewer than k).
func windowedP99(ds []time.Duration, k int) (time.Duration, int) {
	if k <= 0 || len(ds) < k {
		return 0, 0
	}
	var p99s []time.Duration
	for i := 0; i+k <= len(ds); i += k {
		p99s = append(p99s, p99Of(ds[i:i+k]))
	}
	sort.Slice(p99s, func(i, j int) bool { return p99s[i] < p99s[j] })
	return p99s[(len(p99s)-1)/2], len(p99s)
}

func p99Of(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)*99/100]
}

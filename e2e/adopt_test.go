package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/supervise"
)

// requireCgroups skips with the reason when instances cannot run in their own
// cgroups here (not root, no writable cgroup2), and fails in CI.
func requireCgroups(t *testing.T) {
	t.Helper()
	if err := supervise.CgroupSupport(); err != nil {
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("cgroups are required (MEDIC_REQUIRE_INTEGRATION=1): %v", err)
		}
		t.Skipf("cgroups cannot be used here: %v", err)
	}
}

// marked returns the pids of every live process whose environment holds
// mark (the instances and everything they forked, setsid escapees included).
func marked(mark string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, []byte("\x00"+mark+"\x00")) && !bytes.HasPrefix(env, []byte(mark+"\x00")) {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && strings.Contains(string(st), ") Z") {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// statusOf reads /v1/status directly (no CLI process: the timing counts).
func statusOf(addr string) (api.StatusDoc, bool) {
	var doc api.StatusDoc
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/v1/status")
	if err != nil {
		return doc, false
	}
	defer resp.Body.Close()
	return doc, resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&doc) == nil
}

// TestKilledMedicIsAdoptedNotReplaced: medic is SIGKILLed under load through
// its proxy; its 3 instances (each forking a grandchild and a setsid
// escapee) live on. The next medic on the same data dir adopts them: the same
// pids, 0 restarts, every instance supervised within 1 s of its start, and
// when it stops, no process of any instance is left.
func TestKilledMedicIsAdoptedNotReplaced(t *testing.T) {
	requireCgroups(t)
	dir := t.TempDir()
	mark := "MEDIC_E2E_MARK=" + dir
	cfg := `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d"}
services:
  web:
    command: [sh, -c, 'sleep 600 & setsid sleep 600 & exec %[1]s demoapp --listen 127.0.0.1:${PORT}']
    env: {MEDIC_E2E_MARK: "%[4]s"}
    instances: 3
    port: %[3]d
    probes:
      readiness: {http: {path: /healthz/ready}, period: 100ms, timeout: 100ms}
    proxy: {listen: "127.0.0.1:%[5]d"}
`
	proxyPort := freePort(t, 1)
	cfg = strings.ReplaceAll(cfg, "%[5]d", strconv.Itoa(proxyPort))
	a := startAgentIn(t, dir, cfg)
	a.eventually(15*time.Second, "3 instances ready", func() bool {
		doc, ok := statusOf(a.addr)
		return ok && len(doc.Services) == 1 && doc.Services[0].Ready == 3
	})
	before, startedAt := map[int]int{}, map[int]time.Time{}
	for i := 0; i < 3; i++ {
		st := a.instance("web", i)
		before[i], startedAt[i] = st.PID, st.StartedAt
	}
	procsBefore := marked(mark)
	if len(procsBefore) != 9 {
		t.Fatalf("%d marked processes, want 9 (3 instances × demoapp, grandchild, setsid escapee): %v", len(procsBefore), procsBefore)
	}

	// Load through the proxy at a paced rate, bounded in count and time.
	cycles, rate := envInt("MEDIC_SELFHEAL_CYCLES", 1), envInt("MEDIC_SELFHEAL_RPS", 100)
	ld := startLoad(fmt.Sprintf("http://127.0.0.1:%d/", proxyPort), rate, time.Duration(cycles)*20*time.Second+30*time.Second)
	defer ld.finish()
	time.Sleep(300 * time.Millisecond)

	cur := a
	var worst time.Duration
	for c := 0; c < cycles; c++ {
		if cycles > 1 {
			time.Sleep(time.Duration(100+rand.IntN(900)) * time.Millisecond) // a random moment
		}
		gap0 := ld.maxGap() // since the last cycle settled: the steady state
		ld.resetGap()
		killedAt := time.Now()
		syscall.Kill(cur.cmd.Process.Pid, syscall.SIGKILL)
		<-cur.done
		b := &agent{t: t, dir: dir, addr: a.addr, cfg: a.cfg, stderr: &lockedBuffer{}, done: make(chan error, 1)}
		b.cmd = exec.Command(medicBin, "run", "-c", a.cfg)
		b.cmd.Stderr = b.stderr
		t0 := time.Now()
		if err := b.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { b.done <- b.cmd.Wait() }()
		t.Cleanup(b.stop)
		var supervised time.Duration
		b.eventually(15*time.Second, "the same 3 instances ready under the new medic", func() bool {
			doc, ok := statusOf(b.addr)
			if !ok || len(doc.Services) != 1 || len(doc.Services[0].Instances) != 3 {
				return false
			}
			for i, in := range doc.Services[0].Instances {
				if in.PID != before[i] || !in.Ready {
					return false
				}
			}
			supervised = time.Since(t0)
			return true
		})
		time.Sleep(300 * time.Millisecond)
		for i := 0; i < 3; i++ {
			if st := b.instance("web", i); st.Restarts != 0 || st.PID != before[i] {
				t.Fatalf("cycle %d: web/%d: pid %d (was %d), %d restarts; want adopted", c, i, st.PID, before[i], st.Restarts)
			} else if !st.StartedAt.Equal(startedAt[i]) {
				t.Fatalf("cycle %d: web/%d: started_at %v after the adoption, was %v: the uptime must carry over", c, i, st.StartedAt, startedAt[i])
			}
		}
		if after := marked(mark); fmt.Sprint(after) != fmt.Sprint(procsBefore) {
			t.Fatalf("cycle %d: processes before the kill %v, after the restart %v", c, procsBefore, after)
		}
		if c == 0 {
			out, _ := b.medic("events", "--json")
			if n := strings.Count(out, "instance.adopted"); n < 3 {
				t.Fatalf("%d audited adoptions, want 3", n)
			}
		}
		gap := ld.maxGap()
		t.Logf("figures: cycle %d: agent start to every instance supervised and ready %v; client-visible gap %v (medic down %v before its restart, no handover); longest gap in the quiet time before the kill %v",
			c, supervised.Round(time.Millisecond), gap.Round(time.Millisecond), t0.Sub(killedAt).Round(time.Millisecond), gap0.Round(time.Millisecond))
		if supervised > worst {
			worst = supervised
		}
		ld.resetGap()
		cur = b
	}
	okN, failN := ld.finish()
	t.Logf("figures: %d SIGKILLs of medic at %d req/s: worst time to every instance supervised %v; %d ok, %d failed requests (refused while medic was down)",
		cycles, rate, worst.Round(time.Millisecond), okN, failN)
	if worst > time.Second {
		t.Errorf("every instance supervised after %v, want < 1s", worst)
	}
	b := cur
	b.stop()
	if left := marked(mark); len(left) != 0 {
		t.Fatalf("processes left after medic stopped: %v", left)
	}
}

// load sends GET requests at a paced rate (a fresh connection each) until
// finish or its deadline; it keeps the longest gap between two successes.
type load struct {
	stop     atomic.Bool
	wg       sync.WaitGroup
	mu       sync.Mutex
	ok, fail int
	lastOK   time.Time
	gap      time.Duration
}

func startLoad(url string, rate int, within time.Duration) *load {
	l := &load{}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(within)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	sem := make(chan struct{}, 32) // at most 32 requests in flight
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer tick.Stop()
		for n := 0; n < rate*int(within/time.Second) && !l.stop.Load() && time.Now().Before(deadline); n++ {
			<-tick.C
			sem <- struct{}{}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer func() { <-sem }()
				resp, err := client.Get(url)
				now := time.Now()
				l.mu.Lock()
				defer l.mu.Unlock()
				if err == nil {
					resp.Body.Close()
				}
				if err == nil && resp.StatusCode == 200 {
					l.ok++
					if !l.lastOK.IsZero() && now.Sub(l.lastOK) > l.gap {
						l.gap = now.Sub(l.lastOK)
					}
					l.lastOK = now
				} else {
					l.fail++
				}
			}()
		}
	}()
	return l
}

func (l *load) maxGap() time.Duration { l.mu.Lock(); defer l.mu.Unlock(); return l.gap }
func (l *load) resetGap()             { l.mu.Lock(); l.gap = 0; l.mu.Unlock() }

// finish stops the load, waits for requests in flight and returns the counts.
func (l *load) finish() (ok, fail int) {
	l.stop.Store(true)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, l.fail
}

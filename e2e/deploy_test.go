package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/release"
)

// deployLoad sends rate GET / per second through the proxy (at most 64 in
// flight, bounded by count and time) and keeps each answer: when it was
// sent, how long it took, which instance answered (demoapp's "instance").
type deployLoad struct {
	mu    sync.Mutex
	res   []deployAnswer
	stop  atomic.Bool
	wg    sync.WaitGroup
	start time.Time
}

type deployAnswer struct {
	sent     time.Time
	took     time.Duration
	instance string // "" when the request failed
	pid      int
	status   int
	err      error
}

func startDeployLoad(url string, rate int, within time.Duration) *deployLoad {
	l := &deployLoad{start: time.Now()}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	sem := make(chan struct{}, 64)
	deadline := l.start.Add(within)
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
				a := deployAnswer{sent: time.Now()}
				resp, err := client.Get(url)
				if err == nil {
					var body struct {
						Instance string `json:"instance"`
						PID      int    `json:"pid"`
					}
					b, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					a.status, err = resp.StatusCode, rerr
					if err == nil && resp.StatusCode == 200 {
						err = json.Unmarshal(b, &body)
						a.instance, a.pid = body.Instance, body.PID
					}
				}
				a.took, a.err = time.Since(a.sent), err
				l.mu.Lock()
				l.res = append(l.res, a)
				l.mu.Unlock()
			}()
		}
		client.CloseIdleConnections()
	}()
	return l
}

// mark returns the number of answers so far (a position in the record).
func (l *deployLoad) mark() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.res) }

// finish stops the load and waits for the requests in flight.
func (l *deployLoad) finish() []deployAnswer {
	l.stop.Store(true)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.res)
}

// summary counts failures and the p99 of the answers sent in [from, to).
func summary(as []deployAnswer, from, to time.Time) (n, failed int, p99 time.Duration) {
	var lat []time.Duration
	for _, a := range as {
		if a.sent.Before(from) || !a.sent.Before(to) {
			continue
		}
		n++
		if a.err != nil || a.status != 200 {
			failed++
		}
		lat = append(lat, a.took)
	}
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	return n, failed, lat[min(len(lat)-1, len(lat)*99/100)]
}

// normalP99 is the "normal" p99 to compare a deploy's p99 over k requests
// with: the same estimator (p99 of k requests) over each run of k
// consecutive requests sent in [from, to), and the median of those. A p99
// of 40 requests is their maximum; comparing it with the p99 of 400 would
// measure the estimator, not the deploy (docs/deploys.md, "the figure").
func normalP99(as []deployAnswer, from, to time.Time, k int) (p99 time.Duration, windows int) {
	var in []deployAnswer
	for _, a := range as {
		if !a.sent.Before(from) && a.sent.Before(to) {
			in = append(in, a)
		}
	}
	if k <= 0 || len(in) < k {
		return 0, 0
	}
	slices.SortFunc(in, func(x, y deployAnswer) int { return x.sent.Compare(y.sent) })
	var p99s []time.Duration
	for i := 0; i+k <= len(in); i += k {
		_, _, p := summary(in[i:i+k], in[i].sent, in[i+k-1].sent.Add(1))
		p99s = append(p99s, p)
	}
	slices.Sort(p99s)
	return p99s[(len(p99s)-1)/2], len(p99s)
}

func failures(as []deployAnswer) string {
	var b strings.Builder
	for _, a := range as {
		if a.err != nil || a.status != 200 {
			fmt.Fprintf(&b, "  %s: status %d err %v\n", a.sent.Format("15:04:05.000"), a.status, a.err)
		}
	}
	return b.String()
}

// deployLeadIn is how long the load runs before a deploy: ~1 000 requests at
// 200 req/s, several windows of the deploy's size for the normal p99.
const deployLeadIn = 5 * time.Second

const surgeConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 3
    env: {VERSION: "1"}
    port: %[3]d
    remedy: {max_instances: 5}
    deploy: {strategy: rolling, max_surge: 2, min_ready: 300ms}
    stop: {grace: 2s}
    proxy: {listen: "127.0.0.1:0", try_timeout: 500ms}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 300ms, timeout: 200ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready}, period: 100ms}
`

// withStartNice sets deploy.start_nice in cfg from MEDIC_DEPLOY_START_NICE
// (bench/deploy.sh: START_NICE=0 measures without it); unset: the default.
// MEDIC_DEPLOY_STAGGER sets deploy.stagger the same way (bench/deploy.sh STAGGER=…).
func withStartNice(cfg string) string {
	if n := os.Getenv("MEDIC_DEPLOY_START_NICE"); n != "" {
		cfg = strings.Replace(cfg, "    deploy: {strategy: ", "    deploy: {start_nice: "+n+", strategy: ", 1)
	}
	if d := os.Getenv("MEDIC_DEPLOY_STAGGER"); d != "" {
		cfg = strings.Replace(cfg, "    deploy: {", "    deploy: {stagger: "+d+", ", 1)
	}
	return cfg
}

// runAll reports whether web has n instances, all ready and running
// VERSION version. A process that exits while it looks is "not yet"
// (envOf would fail the test).
func (a *agent) runAll(t *testing.T, n int, version string) bool {
	st := a.status().Services[0]
	if st.Ready != n || st.Rollout != "" || len(st.Instances) != n {
		return false
	}
	for _, in := range st.Instances {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", in.PID))
		if in.PID == 0 || err != nil || !slices.Contains(strings.Split(string(b), "\x00"), "VERSION="+version) {
			return false
		}
	}
	return true
}

// TestRollingSurgeDeployUnderLoad: a rolling deploy of 3 → 3 with max_surge
// 2 on the spare ports up to remedy.max_instances, at 200 req/s through the
// proxy: no client error; the p99 during the deploy is reported beside the
// p99 before it.
func TestRollingSurgeDeployUnderLoad(t *testing.T) {
	dir := t.TempDir()
	op, _ := writeTokens(t, dir)
	a := startAgentIn(t, dir, withStartNice(surgeConfig))
	a.token = op
	a.eventually(20*time.Second, "3 ready on VERSION 1", func() bool { return a.runAll(t, 3, "1") })

	l := startDeployLoad("http://"+a.status().Proxies[0].Listen+"/", 200, 60*time.Second)
	ctl := startDeployControl(t, 200, 60*time.Second)
	time.Sleep(deployLeadIn)
	begin := time.Now()
	out, err := a.deploy("web", "v2", map[string]string{"env.VERSION": "2"})
	end := time.Now()
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	time.Sleep(500 * time.Millisecond)
	a.dumpTrace(t, "rolling", begin)
	as := l.finish()
	var rel release.Release
	if err := json.Unmarshal([]byte(out), &rel); err != nil {
		t.Fatalf("deploy --json: %v\n%s", err, out)
	}
	if rel.Outcome != release.Live || rel.ClientErrors == nil || *rel.ClientErrors != 0 {
		t.Fatalf("deploy recorded %+v", rel)
	}
	_, fb, _ := summary(as, as[0].sent, begin)
	nd, fd, p99d := summary(as, begin, end)
	p99b, nw := normalP99(as, as[0].sent, begin, nd)
	if fb+fd != 0 {
		t.Fatalf("client errors: %d before, %d during the deploy\n%s", fb, fd, failures(as))
	}
	if !a.runAll(t, 3, "2") {
		t.Fatalf("after the deploy: %+v", a.status().Services[0])
	}
	t.Logf("rolling with surge 3→3 in %v: %d requests during, 0 errors; p99 %v during vs %v before (median p99 of %d windows of %d requests)", end.Sub(begin).Round(time.Millisecond), nd, p99d, p99b, nw, nd)
	dumpSamples(t, "rolling", as, as[0].sent, begin, end)
	ctl.report(t, "rolling", begin, end)
	a.attribute(t, "rolling", as, begin, end, p99b, ctl)
}

const blueGreenConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 3
    env: {VERSION: "1"}
    port: %[3]d
    deploy: {strategy: blue-green, keep_previous: 5s}
    stop: {grace: 2s}
    proxy: {listen: "127.0.0.1:0", try_timeout: 500ms}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 300ms, timeout: 200ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready}, period: 100ms}
`

// TestBlueGreenDeployUnderLoad, at 200 req/s through the proxy: a blue-green
// deploy of 3 → 3 switches every request to green with no client error; a
// rollback within keep_previous puts traffic back on the warm blue set
// within 1 s; a second deploy, left alone, ends its window with the
// service's own instances on the new release and green stopped — no client
// error anywhere.
func TestBlueGreenDeployUnderLoad(t *testing.T) {
	dir := t.TempDir()
	op, _ := writeTokens(t, dir)
	a := startAgentIn(t, dir, withStartNice(blueGreenConfig))
	a.token = op
	a.eventually(20*time.Second, "3 ready on VERSION 1", func() bool { return a.runAll(t, 3, "1") })
	blue := map[int]bool{}
	for _, in := range a.status().Services[0].Instances {
		blue[in.PID] = true
	}
	// green: an answer from another process than blue's (demoapp answers its pid).
	green := func(x deployAnswer) bool { return x.err == nil && !blue[x.pid] }

	l := startDeployLoad("http://"+a.status().Proxies[0].Listen+"/", 200, 90*time.Second)
	ctl := startDeployControl(t, 200, 90*time.Second)
	time.Sleep(deployLeadIn)
	begin := time.Now()
	out, err := a.deploy("web", "v2", map[string]string{"env.VERSION": "2"})
	switched := time.Now()
	if err != nil {
		l.finish()
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	var rel release.Release
	if err := json.Unmarshal([]byte(out), &rel); err != nil || rel.Outcome != release.Live || rel.ClientErrors == nil || *rel.ClientErrors != 0 {
		l.finish()
		t.Fatalf("deploy recorded %+v (%v)", rel, err)
	}
	time.Sleep(1 * time.Second)
	// Within the window: roll back to the warm blue set.
	back := time.Now()
	out, err = a.medic("rollback", "web", "--json")
	backDone := time.Now()
	if err != nil {
		l.finish()
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	time.Sleep(1 * time.Second)
	a.dumpTrace(t, "blue-green", begin) // after the window: writing the trace takes the agent's CPU
	// A second deploy, left to end its window (5s) and promote.
	again := time.Now()
	if out, err = a.medic("deploy", "web", "--set", "env.VERSION=3", "--version", "v3", "--json"); err != nil {
		l.finish()
		t.Fatalf("deploy v3: %v\n%s", err, out)
	}
	a.eventually(40*time.Second, "the window's end: the service's instances on VERSION 3, green stopped", func() bool {
		if !a.runAll(t, 3, "3") {
			return false
		}
		for _, p := range a.status().Proxies {
			for _, in := range p.Instances {
				if in.Group == "green" {
					return false
				}
			}
		}
		return true
	})
	time.Sleep(time.Second)
	promoted := time.Now()
	as := l.finish()

	if _, f, _ := summary(as, as[0].sent, promoted.Add(time.Hour)); f != 0 {
		t.Fatalf("%d client errors\n%s", f, failures(as))
	}
	var lastGreen, firstGreen time.Time
	for _, x := range as {
		if x.sent.Before(again) && green(x) {
			if firstGreen.IsZero() || x.sent.Before(firstGreen) {
				firstGreen = x.sent
			}
			if x.sent.After(lastGreen) {
				lastGreen = x.sent
			}
		}
		if x.sent.After(switched.Add(100*time.Millisecond)) && x.sent.Before(back) && !green(x) {
			t.Errorf("after the switch, blue's %s (pid %d) answered a request sent at %s", x.instance, x.pid, x.sent.Format("15:04:05.000"))
			break
		}
	}
	if firstGreen.IsZero() {
		audit, _ := a.medic("audit", "list")
		t.Fatalf("green never answered\n%s", audit)
	}
	trafficBack := lastGreen.Sub(back)
	if trafficBack > time.Second {
		t.Errorf("traffic back on blue %v after the rollback began, want ≤ 1s", trafficBack)
	}
	// "During" is the deploy's start to the switch and the second after it
	// (the first requests to green while blue drains), up to the rollback.
	nd, _, p99during := summary(as, begin, back)
	p99before, nw := normalP99(as, as[0].sent, begin, nd)
	_, _, p99promo := summary(as, again, promoted)
	// Where the slow requests of the window fall: while green starts
	// (blue serving), in the first 200 ms on green (cold connections), or after.
	n1, _, s1 := summary(as, begin, switched)
	n2, _, s2 := summary(as, switched, switched.Add(200*time.Millisecond))
	n3, _, s3 := summary(as, switched.Add(200*time.Millisecond), back)
	t.Logf("the blue-green window in parts: p99 %v of %d up to the switch, %v of %d in the first 200ms on green, %v of %d after", s1, n1, s2, n2, s3, n3)
	t.Logf("blue-green 3→3: switched %v after the deploy began (%d requests up to 1s after it, 0 errors, p99 %v vs %v before: median p99 of %d windows of %d requests); rollback to warm blue: the call took %v, the last request sent to green left %v after it began; second deploy through its window and promotion: p99 %v, 0 errors",
		switched.Sub(begin).Round(time.Millisecond), nd, p99during, p99before, nw, nd, backDone.Sub(back).Round(time.Millisecond), trafficBack.Round(time.Millisecond), p99promo)
	dumpSamples(t, "blue-green", as, as[0].sent, begin, back)
	ctl.report(t, "blue-green", begin, back)
	a.attribute(t, "blue-green", as, begin, back, p99before, ctl)
}

package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/egress"
	"github.com/medic-dev/medic/internal/ui/scorecard"
)

// Ports: %[3]d pay (the dependency), +1 shop (calls pay through medic), +2
// direct (calls pay directly), +3 medic's listener for shop's dependency.
const dependencyConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d"}
services:
  pay:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: %[3]d
    stop: {grace: 1s}
  shop:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: {{shop}}
    stop: {grace: 1s}
    env: {DEMOAPP_WORKERS: "20"}
    dependencies:
      pay:
        url: http://127.0.0.1:%[3]d
        listen: 127.0.0.1:{{dep}}
        timeout: 500ms
        retries: {max: 0}
        breaker: {failures: 5, window: 10s, open_for: 2s, half_open_trials: 1}
        bulkhead: {max_concurrent: 20, max_queue: 0}
  direct:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: {{direct}}
    stop: {grace: 1s}
    env: {DEMOAPP_WORKERS: "20", DEP_PAY_URL: "http://127.0.0.1:%[3]d"}
`

// sample is one timed request.
type sample struct {
	at   time.Time
	took time.Duration
	ok   bool
}

type samples struct {
	mu sync.Mutex
	s  []sample
}

func (x *samples) add(s sample) { x.mu.Lock(); x.s = append(x.s, s); x.mu.Unlock() }

// between returns the p99 latency and the failure ratio of requests started in [from, to).
func (x *samples) between(from, to time.Time) (p99 time.Duration, failed float64, n int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	var lat []time.Duration
	bad := 0
	for _, s := range x.s {
		if s.at.Before(from) || !s.at.Before(to) {
			continue
		}
		lat = append(lat, s.took)
		if !s.ok {
			bad++
		}
	}
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	return lat[min(len(lat)-1, len(lat)*99/100)], float64(bad) / float64(len(lat)), len(lat)
}

// openLoop sends GET url every period until ctx ends (at most max requests),
// each on its own goroutine with a 3 s timeout, and records it.
func openLoop(ctx context.Context, wg *sync.WaitGroup, url string, period time.Duration, max int, into *samples) {
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(period)
		defer tick.Stop()
		for n := 0; n < max; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				resp, err := client.Get(url)
				ok := err == nil
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					ok = resp.StatusCode == 200
				}
				into.add(sample{at: start, took: time.Since(start), ok: ok})
			}()
		}
	}()
}

func depStats(t *testing.T, a *agent) egress.Stats {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+a.addr+"/v1/status", nil)
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc api.StatusDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Dependencies) != 1 {
		t.Fatalf("dependencies in status: %+v", doc.Dependencies)
	}
	return doc.Dependencies[0]
}

// TestHangingDependency is the figure: a service with a 20-worker
// pool calls a dependency at 100 req/s and the dependency starts hanging.
// Called directly, the service freezes (its other endpoint times out);
// through medic's dependency listener the breaker opens within the
// configured failures, the other endpoint keeps its normal latency (p99 ≤ 2×),
// and the breaker closes within one open_for after the dependency recovers.
func TestHangingDependency(t *testing.T) {
	base := freePort(t, 4)
	cfg := strings.NewReplacer("{{shop}}", fmt.Sprint(base+1), "{{direct}}", fmt.Sprint(base+2), "{{dep}}", fmt.Sprint(base+3)).Replace(dependencyConfig)
	cfg = strings.ReplaceAll(cfg, "%[3]d", fmt.Sprint(base))
	a := startAgent(t, cfg)
	pay, shop, direct := fmt.Sprintf("http://127.0.0.1:%d", base), fmt.Sprintf("http://127.0.0.1:%d", base+1), fmt.Sprintf("http://127.0.0.1:%d", base+2)
	a.eventually(15*time.Second, "the three services answer", func() bool {
		c1, _ := get(pay + "/")
		c2, _ := get(shop + "/dep/pay")
		c3, _ := get(direct + "/dep/pay")
		return c1 == 200 && c2 == 200 && c3 == 200
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var shopDep, directDep, shopOther, directOther samples
	openLoop(ctx, &wg, shop+"/dep/pay", 10*time.Millisecond, 2000, &shopDep)     // 100 req/s
	openLoop(ctx, &wg, direct+"/dep/pay", 10*time.Millisecond, 2000, &directDep) // 100 req/s
	openLoop(ctx, &wg, shop+"/", 20*time.Millisecond, 1000, &shopOther)          // 50 req/s
	openLoop(ctx, &wg, direct+"/", 20*time.Millisecond, 1000, &directOther)

	t0 := time.Now()
	time.Sleep(2 * time.Second) // normal
	tHang := time.Now()
	if c, b := post(pay + "/fault/slow?ms=600000"); c != 200 {
		t.Fatalf("slow pay: %d %s", c, b)
	}
	var tOpen time.Time
	a.eventually(5*time.Second, "the breaker opens", func() bool {
		if depStats(t, a).State == "open" {
			tOpen = time.Now()
			return true
		}
		return false
	})
	st := depStats(t, a)
	time.Sleep(4 * time.Second) // hanging, breaker open
	tRecover := time.Now()
	if c, b := post(pay + "/fault/reset"); c != 200 {
		t.Fatalf("reset pay: %d %s", c, b)
	}
	var tClosed time.Time
	a.eventually(5*time.Second, "the breaker closes", func() bool {
		if depStats(t, a).State == "closed" {
			tClosed = time.Now()
			return true
		}
		return false
	})
	cancel()
	wg.Wait()

	normal, _, n0 := shopOther.between(t0.Add(500*time.Millisecond), tHang)
	during, failedDuring, n1 := shopOther.between(tOpen.Add(500*time.Millisecond), tRecover)
	directNormal, _, _ := directOther.between(t0.Add(500*time.Millisecond), tHang)
	directDuring, directFailed, n2 := directOther.between(tOpen.Add(500*time.Millisecond), tRecover)
	_, depFailed, _ := shopDep.between(tOpen.Add(500*time.Millisecond), tRecover)
	t.Logf("shop GET / p99: normal %v (n=%d), dependency hanging behind medic %v (n=%d, failed %.1f%%)", normal, n0, during, n1, 100*failedDuring)
	t.Logf("direct GET / p99: normal %v, dependency hanging %v (n=%d, failed %.1f%%)", directNormal, directDuring, n2, 100*directFailed)
	t.Logf("breaker open %v after the hang began (%d timeouts counted at that instant); closed %v after recovery (open_for 2s); shop's /dep calls failed fast %.1f%%",
		tOpen.Sub(tHang).Round(time.Millisecond), st.Calls[egress.OutcomeTimeout], tClosed.Sub(tRecover).Round(time.Millisecond), 100*depFailed)

	if failedDuring > 0 {
		t.Errorf("through medic, %.1f%% of GET / failed while the dependency hung", 100*failedDuring)
	}
	// The bound is 2× normal; on a shared 2-core CI machine a p99 of a
	// few ms moves by tens of ms with the neighbours' load, so the test holds it
	// to max(2× normal, 100ms): far from the 500ms timeout and the seconds of the freeze.
	if limit := max(2*normal, 100*time.Millisecond); during > limit {
		t.Errorf("through medic, GET / p99 %v while the dependency hung, want ≤ max(2× normal %v, 100ms)", during, normal)
	}
	if directFailed < 0.5 && directDuring < time.Second {
		t.Errorf("calling directly, GET / p99 %v and %.1f%% failed: the demo does not show the freeze", directDuring, 100*directFailed)
	}
	// 5 failures open it; the tries in flight then (at most the 20-connection pool) time out as well.
	if tOpen.Sub(tHang) > 2*time.Second {
		t.Errorf("breaker opened %v after the hang began, want within about one 500ms timeout", tOpen.Sub(tHang))
	}
	if got := tClosed.Sub(tRecover); got > 2*time.Second+time.Second {
		t.Errorf("breaker closed %v after recovery, want within one open_for (2s) plus the polling", got)
	}
	// Scorecard question 4 is answered from the calls seen: shop yes, with its figures;
	// pay and direct declare nothing, so medic cannot tell (unknown, never yes).
	out, err := a.medic("scorecard", "--json")
	if err != nil && !strings.Contains(out, "{") {
		t.Fatalf("scorecard: %v", err)
	}
	var card scorecard.Card
	if err := json.Unmarshal([]byte(out), &card); err != nil {
		t.Fatalf("scorecard --json: %v\n%s", err, out)
	}
	for _, it := range card.Items {
		if it.ID != scorecard.Timeouts {
			continue
		}
		for _, s := range it.Subjects {
			t.Logf("scorecard timeouts: %s %s %q", s.Name, s.Answer, s.Evidence)
			want := scorecard.Unknown
			if s.Name == "shop" {
				want = scorecard.Yes
			}
			// direct calls pay at its port itself: its kept-alive pool connections are seen as bypasses.
			if s.Name == "direct" && !strings.Contains(strings.Join(s.Evidence, " "), fmt.Sprintf("bypass medic, seen from the instances' sockets: 127.0.0.1:%d", base)) {
				t.Errorf("scorecard timeouts for direct does not list its connections to pay (127.0.0.1:%d): %q", base, s.Evidence)
			}
			if s.Answer != want || s.Name == "shop" && !strings.Contains(strings.Join(s.Evidence, " "), "calls seen through 127.0.0.1:") {
				t.Errorf("scorecard timeouts for %s: %s %q, want %s", s.Name, s.Answer, s.Evidence, want)
			}
		}
	}
	// Every transition is in the audit log, with its reason.
	for _, want := range []string{"shop/pay breaker open: 5 failures within 10s", "breaker half-open", "breaker closed"} {
		a.eventually(5*time.Second, "the audit log holds "+want, func() bool {
			code, body := get("http://" + a.addr + "/v1/audit?kind=dependency.breaker")
			return code == 200 && strings.Contains(body, want)
		})
	}
}

func post(url string) (int, string) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Post(url, "text/plain", nil)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// dependencyDrillConfig: shop (behind a proxy) calls pay through medic's
// listener; pay is not supervised here, its port is %[3]d.
const dependencyDrillConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
conditions:
  pay_open: {signal: dependency_breaker_state, labels: {service: shop, dependency: pay}, above: 1.5, for: 1s}
runbooks:
  degrade:
    trigger: {condition: pay_open}
    target: shop
    steps: [{action: set_flag, flag: payments, value: false}]
    trust: act
services:
  pay:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: %[3]d
    stop: {grace: 1s}
  shop:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    port: {{shop}}
    stop: {grace: 1s}
    proxy: {listen: "127.0.0.1:0"}
    drills: {allow: true}
    flags: {payments: true}
    dependencies:
      pay:
        url: http://127.0.0.1:%[3]d
        listen: 127.0.0.1:{{dep}}
        timeout: 300ms
        retries: {max: 0}
        breaker: {failures: 3, window: 10s, open_for: 1s}
        fallback: {status: 200, body: '{"pay":"later"}'}
`

// TestDependencyDrills: dependency-slow and dependency-down (run at medic's
// listener for a declared dependency) pass with the breaker's opening as the
// detection, and the report tells what the application's calls felt. The
// open breaker is a signal: a runbook turns the payments flag off, audited.
func TestDependencyDrills(t *testing.T) {
	dir := t.TempDir()
	op, _ := writeTokens(t, dir)
	base := freePort(t, 2)
	cfg := strings.NewReplacer("{{shop}}", fmt.Sprint(base), "{{dep}}", fmt.Sprint(base+1)).Replace(dependencyDrillConfig)
	a := startAgentIn(t, dir, cfg)
	a.token = op
	a.eventually(15*time.Second, "shop calls pay through medic", func() bool {
		c, _ := get(fmt.Sprintf("http://127.0.0.1:%d/dep/pay", base))
		return c == 200
	})
	if code, body := getWithToken("http://"+a.addr+"/v1/flags/shop", op); code != 200 || !strings.Contains(body, `"payments": true`) {
		t.Fatalf("flags before the drills: %d %s", code, body)
	}
	for _, scenario := range []string{"dependency-slow", "dependency-down"} {
		res, err := a.runDrill(scenario, "--service", "shop", "--path", "/dep/pay", "--load", "50")
		t.Logf("%s: %s; errors %d/%d, p99 before/during/after %.1f/%.1f/%.1f ms", scenario, res.Summary,
			res.ClientErrors, res.Requests, res.Latency.Before.P99*1000, res.Latency.During.P99*1000, res.Latency.After.P99*1000)
		if err != nil || !res.Passed || res.TTD == nil {
			t.Fatalf("drill %s: %v\n%s\nreasons: %q", scenario, err, res.Summary, res.Reasons)
		}
		var felt string
		for _, s := range res.Steps {
			if s.Action == "restore" {
				felt = s.Detail
			}
		}
		t.Logf("%s: %s", scenario, felt)
		if !strings.Contains(felt, "the application's calls to shop/pay during the fault") || !strings.Contains(felt, "answered by the fallback") {
			t.Errorf("drill %s report does not tell what the application felt: %q", scenario, felt)
		}
		// The fallback answered: the application's callers saw no error.
		if res.ClientErrors > 0 {
			t.Errorf("drill %s: %d client errors despite the fallback", scenario, res.ClientErrors)
		}
		// The next drill starts from a closed breaker: open_for is 1s and the load's next call is the trial.
		a.eventually(5*time.Second, "the breaker closes after the drill", func() bool {
			get(fmt.Sprintf("http://127.0.0.1:%d/dep/pay", base))
			return depStats(t, a).State == "closed"
		})
	}
	// The runbook saw the breaker open (a signal) and turned the flag off, audited.
	a.eventually(10*time.Second, "the runbook turns the payments flag off", func() bool {
		code, body := getWithToken("http://"+a.addr+"/v1/flags/shop", op)
		return code == 200 && strings.Contains(body, `"payments": false`)
	})
	code, body := getWithToken("http://"+a.addr+"/v1/audit?kind=flag.set", op)
	if code != 200 || !strings.Contains(body, "flag shop/payments set to false (was true)") || !strings.Contains(body, "runbook:degrade") {
		t.Errorf("audit of the flag: %d %s", code, tail(body, 1500))
	}
}

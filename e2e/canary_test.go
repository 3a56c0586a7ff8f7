package e2e_test

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/canary"
	"github.com/medic-dev/medic/internal/release"
)

// canaryConfig: web runs 2 instances of the demo service answering in about
// 20 ms (log-normal, σ 0.3), behind its proxy, deployed as a canary in steps
// of 25 %, 50 %, 100 %. The proxy retries a 500 on another instance: a
// canary's failed try goes to a stable instance (the retry group), so its
// clients are spared while the verdict still counts the failure.
//
// The tail test runs at its default slack (25 %; MEDIC_CANARY_TAIL_TOLERANCE
// sets another): since it bounds the baseline's p99 at a confidence level
// and counts runs of slow requests, 20 of 20 good canaries were promoted on
// the loaded machine (docs/benchmarks.md), where the point p99 of ~200
// requests had falsely rolled back 2 of 20 and CI had run with 100 % slack.
const canaryConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}", --latency, 20ms, --latency-spread, "0.3"]
    instances: 2
    port: %[3]d
    stop: {grace: 2s}
    restart: {initial: 200ms, max: 1s}
    proxy: {listen: "127.0.0.1:0", try_timeout: 2s, retries: {on_status: [500, 502, 503, 504]}}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 300ms, timeout: 200ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready}, period: 100ms}
    deploy:
      strategy: canary
      steps: [25, 50, 100]
      ready_timeout: 20s
      step_max_duration: 2m
      verdict: {tail_tolerance: TAIL_TOLERANCE}
`

// canaryConfigFor is canaryConfig with the tail test's slack.
func canaryConfigFor() string {
	tol := os.Getenv("MEDIC_CANARY_TAIL_TOLERANCE")
	if tol == "" {
		tol = "0.25"
	}
	return strings.Replace(canaryConfig, "TAIL_TOLERANCE", tol, 1)
}

// canaryCommand is the demo service's command with extra flags, as a JSON
// array for --set command=.
func canaryCommand(extra ...string) string {
	argv := append([]string{medicBin, "demoapp", "--listen", "127.0.0.1:${PORT}", "--latency", "20ms", "--latency-spread", "0.3"}, extra...)
	b, _ := json.Marshal(argv)
	return string(b)
}

type canaryDoc struct {
	canary.Report
	Text                  string  `json:"text"`
	TimeToVerdictSeconds  float64 `json:"time_to_verdict_seconds"`
	TimeToRollbackSeconds float64 `json:"time_to_rollback_seconds"`
}

// deployCanary deploys web with the canary's extra flags under 100 req/s
// through the proxy and returns the release, the canary's report and what
// the clients saw.
func deployCanary(t *testing.T, a *agent, version string, extra ...string) (release.Release, canaryDoc, int, int) {
	t.Helper()
	load := startLoad("http://"+a.status().Proxies[0].Listen+"/", 100, 170*time.Second)
	time.Sleep(time.Second)
	out, err := a.medic("deploy", "web", "--set", "command="+canaryCommand(extra...), "--version", version, "--json")
	time.Sleep(time.Second)
	ok, failed := load.finish()
	var rel release.Release
	if jerr := json.Unmarshal([]byte(out), &rel); jerr != nil {
		t.Fatalf("deploy %s: %v (%v)\n%s\nmedic stderr:\n%s", version, jerr, err, out, tail(a.stderr.String(), 3000))
	}
	out, err = a.medic("deploy", "status", "web", "--json")
	if err != nil {
		t.Fatalf("deploy status: %v\n%s", err, out)
	}
	var doc canaryDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("deploy status --json: %v\n%s", err, out)
	}
	t.Logf("%s: release %s (%s); clients %d ok, %d failed\n%s", version, rel.Outcome, rel.Detail, ok, failed, doc.Text)
	// The dashboard's one document of every canary holds the same report.
	code, body := getWithToken("http://"+a.addr+"/v1/canaries", a.token)
	var all struct{ Canaries []canaryDoc }
	if err := json.Unmarshal([]byte(body), &all); code != 200 || err != nil {
		t.Fatalf("GET /v1/canaries: HTTP %d, %v\n%s", code, err, body)
	}
	if len(all.Canaries) != 1 || all.Canaries[0].Service != "web" || all.Canaries[0].To != doc.To || all.Canaries[0].Text != doc.Text {
		t.Errorf("GET /v1/canaries does not hold web's canary %s:\n%s", doc.To, body)
	}
	return rel, doc, ok, failed
}

// versionsOf returns the command line of each of web's own instances.
func (a *agent) webCommands(t *testing.T) []string {
	var out []string
	for _, in := range a.status().Services[0].Instances {
		if in.PID == 0 {
			return nil
		}
		b, _ := readCmdline(in.PID)
		out = append(out, b)
	}
	return out
}

// TestCanary: the real binary under 100 req/s through its proxy.
//   - A canary answering 5 % 500s is rolled back ≤ 15 s after it gets
//     traffic, with ≤ 0.5 % of all requests failed; the stable instances
//     were never touched.
//   - A crash-looping canary is rolled back before it gets any traffic.
//   - A canary 20 % slower (than the clients' median through the proxy:
//     slowCanaryLatency) is rolled back (on the latency median) ≤ 60 s.
//   - The same binary as a canary is promoted: every instance runs it.
//
// bench/canary.sh repeats each kind (MEDIC_CANARY_{BAD,SLOW,GOOD}_RUNS,
// default 1) and prints the medians: 20 good canaries give the false
// rollback count.
func TestCanary(t *testing.T) {
	dir := t.TempDir()
	op, _ := writeTokens(t, dir)
	a := startAgentIn(t, dir, canaryConfigFor())
	a.token = op
	a.eventually(15*time.Second, "2 ready", func() bool { return a.status().Services[0].Ready == 2 })
	var summary []string
	defer func() { t.Logf("summary:\n%s", strings.Join(summary, "\n")) }()
	stat := func(kind string, xs []float64, failed, total int, extra string) {
		sort.Float64s(xs)
		line := fmt.Sprintf("%-5s %d runs", kind, len(xs))
		if len(xs) > 0 {
			line += fmt.Sprintf(", seconds from the canary's first traffic: median %.2f, max %.2f", xs[len(xs)/2], xs[len(xs)-1])
		}
		summary = append(summary, line+fmt.Sprintf("; clients %d failed of %d (%.3f%%)%s", failed, total, 100*float64(failed)/float64(max(total, 1)), extra))
	}

	t.Run("bad", func(t *testing.T) {
		var took []float64
		var failedAll, totalAll int
		defer func() { stat("bad", took, failedAll, totalAll, "") }()
		for i := range envInt("MEDIC_CANARY_BAD_RUNS", 1) {
			stablePIDs := fmt.Sprint(a.pids("web"))
			rel, doc, ok, failed := deployCanary(t, a, fmt.Sprintf("v2-bad-%d", i), "--error-rate", "0.05")
			failedAll, totalAll = failedAll+failed, totalAll+ok+failed
			if rel.Outcome != release.Failed || !strings.Contains(rel.Detail, "rolled-back") || !strings.Contains(rel.Detail, "errors 5xx") {
				t.Fatalf("release %s: %s", rel.Outcome, rel.Detail)
			}
			took = append(took, doc.TimeToRollbackSeconds)
			if doc.Outcome != "rolled-back" || doc.TimeToRollbackSeconds <= 0 || doc.TimeToRollbackSeconds > 15 {
				t.Fatalf("rolled back %.2fs after the canary's first traffic, want ≤ 15s", doc.TimeToRollbackSeconds)
			}
			if total := ok + failed; float64(failed) > 0.005*float64(total) {
				t.Fatalf("%d of %d requests failed, more than 0.5 %%", failed, total)
			}
			if got := fmt.Sprint(a.pids("web")); got != stablePIDs {
				t.Fatalf("the stable instances changed: %s → %s", stablePIDs, got)
			}
			if !strings.Contains(doc.Text, "errors 5xx         fail") {
				t.Fatalf("the report does not explain the verdict:\n%s", doc.Text)
			}
		}
	})

	t.Run("crash", func(t *testing.T) {
		stablePIDs := fmt.Sprint(a.pids("web"))
		rel, doc, ok, failed := deployCanary(t, a, "v2-crash", "--listen-nowhere")
		defer func() {
			stat("crash", []float64{doc.TimeToRollbackSeconds}, failed, ok+failed, " (from the canary's start: it never served)")
		}()
		if rel.Outcome != release.Failed || doc.Outcome != "rolled-back" || !strings.Contains(doc.State.Reason, "crash-loops") {
			t.Fatalf("release %s (%s), canary %s: %s", rel.Outcome, rel.Detail, doc.Outcome, doc.State.Reason)
		}
		if failed != 0 {
			t.Fatalf("%d requests failed while the canary crash-looped (it never got traffic)", failed)
		}
		if got := fmt.Sprint(a.pids("web")); got != stablePIDs {
			t.Fatalf("the stable instances changed: %s → %s", stablePIDs, got)
		}
	})

	t.Run("slow", func(t *testing.T) {
		var took []float64
		var failedAll, totalAll int
		defer func() { stat("slow", took, failedAll, totalAll, "") }()
		for i := range envInt("MEDIC_CANARY_SLOW_RUNS", 1) {
			lat, seen := slowCanaryLatency(t, a)
			t.Logf("the clients see a median of %v through the proxy: the canary answers after %v (+20 %% of what they see)", seen, lat)
			rel, doc, ok, failed := deployCanary(t, a, fmt.Sprintf("v2-slow-%d", i), "--latency", lat.String())
			failedAll, totalAll = failedAll+failed, totalAll+ok+failed
			if rel.Outcome != release.Failed || doc.Outcome != "rolled-back" || !strings.Contains(doc.State.Reason, "latency") {
				t.Fatalf("release %s (%s), canary %s: %s", rel.Outcome, rel.Detail, doc.Outcome, doc.State.Reason)
			}
			took = append(took, doc.TimeToRollbackSeconds)
			if doc.TimeToRollbackSeconds > 60 {
				t.Fatalf("rolled back %.2fs after the canary's first traffic, want ≤ 60s", doc.TimeToRollbackSeconds)
			}
		}
	})

	t.Run("good", func(t *testing.T) {
		var took []float64
		var failedAll, totalAll, falseRollbacks int
		defer func() {
			stat("good", took, failedAll, totalAll, fmt.Sprintf("; false rollbacks %d", falseRollbacks))
		}()
		for i := range envInt("MEDIC_CANARY_GOOD_RUNS", 1) {
			id := fmt.Sprintf("good-%d", i)
			rel, doc, ok, failed := deployCanary(t, a, id, "--id", id)
			failedAll, totalAll = failedAll+failed, totalAll+ok+failed
			if doc.Outcome == "rolled-back" {
				// Counted, and the next run goes on: bench/canary.sh
				// wants the false rollbacks out of all its runs.
				falseRollbacks++
				t.Errorf("false rollback of %s: %s", id, doc.State.Reason)
				continue
			}
			if rel.Outcome != release.Live || doc.Outcome != "promoted" {
				t.Fatalf("release %s (%s), canary %s: %s", rel.Outcome, rel.Detail, doc.Outcome, doc.State.Reason)
			}
			took = append(took, doc.TimeToVerdictSeconds)
			// The proxy answered every request; the load's client gives up
			// after 1 s, which a loaded machine (load 20 on 2 cores) makes
			// a few requests in a thousand wait for.
			if doc.ClientErrors == nil || *doc.ClientErrors != 0 || ok < 100 || float64(failed) > 0.005*float64(ok+failed) {
				t.Fatalf("%d failed (the proxy counted %v), %d answered during a good canary", failed, doc.ClientErrors, ok)
			}
			a.eventually(10*time.Second, "every instance runs "+id, func() bool {
				cmds := a.webCommands(t)
				return len(cmds) == 2 && strings.HasSuffix(cmds[0], "--id "+id) && strings.HasSuffix(cmds[1], "--id "+id)
			})
		}
	})
}

// slowCanaryLatency is the --latency of a canary 20 % slower than what
// web's clients see through the proxy now, and that median. The issue's
// bound (rollback ≤ 60 s) is for a canary with +20 % latency as its clients
// see it. demoapp's --latency is its own time only; the proxy's and the
// scheduler's share comes on top, the same on both sides: at load 20 on 2
// cores the baseline's median was 27.4 ms for a 20 ms service, so a canary
// run with --latency 24ms was +15 % as the verdict sees it. The verdict
// fails the median once the shift's 99 % lower bound clears the 10 %
// tolerance, and the requests that takes grow as 1/(shift − tolerance)²:
// about 4 × those of a +20 % canary, 1 126 canary requests and 61 s in a CI
// run (docs/deploys.md, "Time to a latency verdict"). So the canary adds 20
// % of the median seen here: 20 ms × 1.2 + 0.2 × (median − 20 ms). The
// clients' median includes their own side of the loopback too, a little
// more than the proxy records: the canary is at least +20 % as the verdict
// sees it.
func slowCanaryLatency(t *testing.T, a *agent) (lat, median time.Duration) {
	t.Helper()
	const base = 20 * time.Millisecond // canaryConfig's --latency
	l := startDeployLoad("http://"+a.status().Proxies[0].Listen+"/", 100, 2*time.Second)
	l.wg.Wait() // the load ends by itself after 2 s
	var took []time.Duration
	for _, x := range l.finish() {
		if x.err == nil && x.status == 200 {
			took = append(took, x.took)
		}
	}
	if len(took) < 100 {
		t.Fatalf("%d of 200 requests answered through the proxy before the slow canary", len(took))
	}
	slices.Sort(took)
	median = took[len(took)/2]
	lat = base * 6 / 5
	if median > base {
		lat += (median - base) / 5
	}
	return lat.Round(100 * time.Microsecond), median.Round(100 * time.Microsecond)
}

// pids returns the pid of each of the service's own instances.
func (a *agent) pids(service string) []int {
	var out []int
	for _, s := range a.status().Services {
		if s.Name == service {
			for _, in := range s.Instances {
				out = append(out, in.PID)
			}
		}
	}
	return out
}

// readCmdline returns a process's command line, words joined by spaces.
func readCmdline(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " "), err
}

// TestCanaryDrills runs the deploy drills against the real binary under
// 100 req/s: each deploys a bad release as a canary, and passes when the
// canary is judged and rolled back within the drill's deadline with the
// clients' errors under its bound; the drill's report gives the time to
// verdict (detected) and to rollback (recovered).
func TestCanaryDrills(t *testing.T) {
	dir := t.TempDir()
	op, _ := writeTokens(t, dir)
	a := startAgentIn(t, dir, strings.Replace(canaryConfigFor(), "    deploy:\n", "    drills: {allow: true}\n    deploy:\n", 1))
	a.token = op
	a.eventually(15*time.Second, "2 ready", func() bool { return a.status().Services[0].Ready == 2 })
	var table []string
	defer func() { t.Logf("deploy drills (web: 2 demoapp instances, 100 req/s):\n%s", strings.Join(table, "\n")) }()
	for _, sc := range []string{"deploy-bad-canary", "deploy-crash", "deploy-slow-canary"} {
		t.Run(sc, func(t *testing.T) {
			stablePIDs := fmt.Sprint(a.pids("web"))
			res, err := a.runDrill(sc, "--service", "web", "--load", "100")
			if out, err := a.medic("deploy", "status", "web"); err == nil {
				t.Logf("the drill's canary:\n%s", out)
			}
			table = append(table, fmt.Sprintf("%-18s verdict %-7s rollback %-7s errors %d/%d", sc, secs(res.TTD), secs(res.TTR), res.ClientErrors, res.Requests))
			if err != nil || !res.Passed || res.TTD == nil || res.TTR == nil {
				t.Fatalf("drill %s: %v\n%s\nreasons: %q", sc, err, res.Summary, res.Reasons)
			}
			if got := fmt.Sprint(a.pids("web")); got != stablePIDs {
				t.Fatalf("the stable instances changed: %s → %s", stablePIDs, got)
			}
		})
	}
}

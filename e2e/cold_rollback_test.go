package e2e_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/release"
)

// coldRollbackConfig: 2 instances with room to surge both at once (max_surge
// 2 on the spare ports up to remedy.max_instances 4), so that a rollback
// starts the whole old release beside the new one.
const coldRollbackConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 2
    env: {VERSION: "1"}
    port: %[3]d
    remedy: {max_instances: 4}
    deploy: {strategy: rolling, max_surge: 2}
    stop: {grace: 2s}
    proxy: {listen: "127.0.0.1:0", try_timeout: 500ms}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 300ms, timeout: 200ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready}, period: 100ms}
`

// TestColdRollbackFromHistory: after a deploy and a restart of medic (the
// previous release only in the persisted history, no process of it
// running), `medic rollback` under 200 req/s: no client error, and the
// traffic leaves the new release (the last request answered by one of its
// processes was sent) at most 1 s after the old release's first answer —
// the time for its fresh processes to start and pass readiness. Both figures
// are logged (bench/deploy.sh's note).
func TestColdRollbackFromHistory(t *testing.T) {
	dir := t.TempDir()
	op, _ := writeTokens(t, dir)
	a := startAgentIn(t, dir, coldRollbackConfig)
	a.token = op
	a.eventually(20*time.Second, "2 ready on VERSION 1", func() bool { return a.runAll(t, 2, "1") })
	if out, err := a.medic("deploy", "web", "--set", "env.VERSION=2", "--version", "v2", "--json"); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	a.eventually(20*time.Second, "2 ready on VERSION 2", func() bool { return a.runAll(t, 2, "2") })
	a = a.restart()
	a.eventually(20*time.Second, "2 ready on VERSION 2 after the restart", func() bool { return a.runAll(t, 2, "2") })
	v2 := map[int]bool{}
	for _, in := range a.status().Services[0].Instances {
		v2[in.PID] = true
	}

	l := startDeployLoad("http://"+a.status().Proxies[0].Listen+"/", 200, 60*time.Second)
	time.Sleep(2 * time.Second)
	begin := time.Now()
	out, err := a.medic("rollback", "web", "--json")
	end := time.Now()
	time.Sleep(500 * time.Millisecond)
	as := l.finish()
	if err != nil {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	var rel release.Release
	if err := json.Unmarshal([]byte(out), &rel); err != nil {
		t.Fatalf("rollback --json: %v\n%s", err, out)
	}
	if rel.Outcome != release.Live || rel.Source != release.SourceRollback || rel.ClientErrors == nil || *rel.ClientErrors != 0 {
		t.Fatalf("rollback recorded %+v", rel)
	}
	if _, failed, _ := summary(as, as[0].sent, end.Add(time.Second)); failed != 0 {
		t.Fatalf("%d client errors around the rollback\n%s", failed, failures(as))
	}
	if !a.runAll(t, 2, "1") {
		t.Fatalf("after the rollback: %+v", a.status().Services[0])
	}
	var firstOld, lastNew time.Time
	for _, x := range as {
		if x.err != nil || x.pid == 0 || x.sent.Before(begin) {
			continue
		}
		if v2[x.pid] {
			if x.sent.After(lastNew) {
				lastNew = x.sent
			}
		} else if firstOld.IsZero() || x.sent.Before(firstOld) {
			firstOld = x.sent
		}
	}
	if firstOld.IsZero() {
		t.Fatal("no request was answered by the old release during the rollback")
	}
	up, back := firstOld.Sub(begin), lastNew.Sub(begin)
	t.Logf("cold rollback from history: the old release's first answer %v after the rollback began (start + readiness), the new release's last %v after; rollout done in %v",
		up.Round(time.Millisecond), back.Round(time.Millisecond), end.Sub(begin).Round(time.Millisecond))
	if back > up+time.Second {
		t.Fatalf("traffic left the new release %v after the rollback began, more than 1 s after the old release could answer (%v)", back, up)
	}
}

package e2e_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/release"
	"github.com/medic-dev/medic/internal/ui/scorecard"
)

const releaseConfig = `
data_dir: %[4]s/data
api: {listen: "127.0.0.1:%[2]d", tokens_file: tokens.yaml}
services:
  web:
    command: [%[1]q, demoapp, --listen, "127.0.0.1:${PORT}"]
    instances: 2
    env: {VERSION: "1"}
    port: %[3]d
    stop: {grace: 2s}
    proxy: {listen: "127.0.0.1:0", try_timeout: 500ms}
    probes:
      liveness:  {http: {path: /healthz/live},  period: 300ms, timeout: 200ms, failure_threshold: 2}
      readiness: {http: {path: /healthz/ready}, period: 100ms}
`

// envOf reads an instance's environment variable from /proc.
func envOf(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatalf("read the environment of pid %d: %v", pid, err)
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// versions returns the VERSION each instance of web runs, once all run one.
func (a *agent) versions(t *testing.T) []string {
	var out []string
	for _, in := range a.status().Services[0].Instances {
		if in.PID == 0 {
			return nil
		}
		out = append(out, envOf(t, in.PID, "VERSION"))
	}
	return out
}

func (a *agent) allRun(t *testing.T, version string) bool {
	st := a.status().Services[0]
	if st.Ready != 2 || st.Rollout != "" {
		return false
	}
	v := a.versions(t)
	return len(v) == 2 && v[0] == version && v[1] == version
}

// TestDeployRestartRollback: `medic deploy` rolls a new release out under
// load with no client error and records it with the client figures; the
// release outlives a restart of medic (the config file did not change);
// `medic rollback` after the restart returns to the release before, from the
// persisted history, again with no client error; `medic releases` lists it all.
func TestDeployRestartRollback(t *testing.T) {
	dir := t.TempDir()
	op, _ := writeTokens(t, dir)
	a := startAgentIn(t, dir, releaseConfig)
	a.token = op
	a.eventually(15*time.Second, "2 ready on VERSION 1", func() bool { return a.allRun(t, "1") })

	load := startLoad("http://"+a.status().Proxies[0].Listen+"/", 100, 60*time.Second)
	time.Sleep(500 * time.Millisecond)
	out, err := a.medic("deploy", "web", "--set", "env.VERSION=2", "--version", "v2", "--json")
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	time.Sleep(500 * time.Millisecond)
	ok, failed := load.finish()
	var rel release.Release
	if err := json.Unmarshal([]byte(out), &rel); err != nil {
		t.Fatalf("deploy --json: %v\n%s", err, out)
	}
	if rel.Outcome != release.Live || rel.Version != "v2" || rel.Source != release.SourceDeploy || rel.Requests == nil || *rel.Requests == 0 || *rel.ClientErrors != 0 {
		t.Fatalf("deploy recorded %+v", rel)
	}
	if failed != 0 || ok < 50 {
		t.Fatalf("deploy under load: %d failed, %d answered", failed, ok)
	}
	if !a.allRun(t, "2") {
		t.Fatalf("after the deploy the instances run %v", a.versions(t))
	}
	t.Logf("deploy v2: %d requests through the proxy, 0 errors; the release counted %d", ok, *rel.Requests)

	// medic restarts on the same file: v2 keeps running, the history is kept.
	a = a.restart()
	a.eventually(15*time.Second, "2 ready on VERSION 2 after the restart", func() bool { return a.allRun(t, "2") })

	load = startLoad("http://"+a.status().Proxies[0].Listen+"/", 100, 60*time.Second)
	time.Sleep(500 * time.Millisecond)
	out, err = a.medic("rollback", "web", "--json")
	if err != nil {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	time.Sleep(500 * time.Millisecond)
	ok, failed = load.finish()
	if err := json.Unmarshal([]byte(out), &rel); err != nil {
		t.Fatalf("rollback --json: %v\n%s", err, out)
	}
	if rel.Outcome != release.Live || rel.Source != release.SourceRollback || rel.Version != "r1" {
		t.Fatalf("rollback recorded %+v", rel)
	}
	if failed != 0 || ok < 50 {
		t.Fatalf("rollback under load: %d failed, %d answered", failed, ok)
	}
	if !a.allRun(t, "1") {
		t.Fatalf("after the rollback the instances run %v", a.versions(t))
	}
	// The cold rollback's time (from the persisted history, new processes):
	// the figure of bench/deploy.sh's note; the instances are replaced one
	// at a time (max_surge 1), each new one waiting for its readiness.
	if rel.DurationSeconds == nil || *rel.DurationSeconds <= 0 || *rel.DurationSeconds > 30 {
		t.Fatalf("rollback recorded no duration, or over 30 s: %v", rel.DurationSeconds)
	}
	t.Logf("cold rollback from history after a restart: %.2fs for 2 instances (max_surge 1), %d requests, 0 errors", *rel.DurationSeconds, ok)

	var list []release.Release
	out, err = a.medic("releases", "web", "--json")
	if err != nil {
		t.Fatalf("releases: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("releases --json: %v\n%s", err, out)
	}
	var got []string
	for _, r := range list {
		got = append(got, r.Source+":"+r.Version+":"+r.Outcome)
	}
	if want := "rollback:r1:live deploy:v2:live config:r1:live"; strings.Join(got, " ") != want {
		t.Fatalf("history %q, want %q", strings.Join(got, " "), want)
	}
	if _, err := a.medic("rollback", "web", "--to", "v9"); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Fatalf("rollback to an unknown version: %v, want HTTP 404", err)
	}

	// The scorecard answers the deploy questions from these measured rollouts.
	out, _ = a.medic("scorecard", "--json") // exit 1 when a required item answers no
	var card scorecard.Card
	if err := json.Unmarshal([]byte(out), &card); err != nil {
		t.Fatalf("scorecard --json: %v\n%s", err, out)
	}
	for _, it := range card.Items {
		if (it.ID == scorecard.ZeroDowntime || it.ID == scorecard.Rollback) && it.Answer != scorecard.Yes {
			t.Errorf("scorecard %s answers %s after a measured deploy and rollback: %+v", it.ID, it.Answer, it.Subjects)
		}
	}
}

package e2e_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/release"
)

// TestBlueGreenReloadInWindow: `medic reload` while a blue-green window
// keeps blue warm, at 200 req/s through the proxy. A reload that does not
// change web keeps the window (green serves, the audit says it is kept); a
// reload that changes web (the file's VERSION) makes the file win without
// stopping green while it serves: web's own instances take the file's spec
// while the proxy sends them nothing, then one switch moves the traffic to
// them, then green is drained and stopped. No client error; blue's fate is
// in the audit; the reload's release ends live.
func TestBlueGreenReloadInWindow(t *testing.T) {
	dir := t.TempDir()
	op, _ := writeTokens(t, dir)
	a := startAgentIn(t, dir, strings.Replace(blueGreenConfig, "keep_previous: 5s", "keep_previous: 10m", 1))
	a.token = op
	a.eventually(20*time.Second, "3 ready on VERSION 1", func() bool { return a.runAll(t, 3, "1") })
	greenWeight := func() (int, bool) {
		for _, p := range a.status().Proxies {
			for _, g := range p.Groups {
				if g.Group == "green" && (g.Instances > 0 || g.Weight > 0) { // a group's counters outlive its instances
					return g.Weight, true
				}
			}
		}
		return 0, false
	}

	l := startDeployLoad("http://"+a.status().Proxies[0].Listen+"/", 200, 60*time.Second)
	time.Sleep(2 * time.Second)
	if out, err := a.medic("deploy", "web", "--set", "env.VERSION=2", "--version", "v2", "--json"); err != nil {
		l.finish()
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if w, ok := greenWeight(); !ok || w != 100 {
		l.finish()
		t.Fatalf("after the deploy green has weight %d (group present: %v), want 100", w, ok)
	}

	// A reload that leaves web as it is: the window goes on.
	if out, err := a.medicLocal("reload"); err != nil {
		l.finish()
		t.Fatalf("reload (unchanged): %v\n%s", err, out)
	}
	a.eventually(5*time.Second, "the unchanged reload audited with the window kept", func() bool {
		for _, r := range a.auditRecords("config.reload") {
			if strings.Contains(r["reason"].(string), "blue-green window of web kept") {
				return true
			}
		}
		return false
	})
	if w, ok := greenWeight(); !ok || w != 100 {
		l.finish()
		t.Fatalf("after an unchanged reload green has weight %d (present: %v), want 100: the window must go on", w, ok)
	}

	// A reload that changes web: the file's spec wins.
	b, err := os.ReadFile(a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.cfg, []byte(strings.Replace(string(b), `VERSION: "1"`, `VERSION: "3"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	reloaded := time.Now()
	if out, err := a.medicLocal("reload"); err != nil {
		l.finish()
		t.Fatalf("reload (changed): %v\n%s", err, out)
	}
	a.eventually(40*time.Second, "web's own instances on VERSION 3, green gone, no weights", func() bool {
		if !a.runAll(t, 3, "3") {
			return false
		}
		_, ok := greenWeight()
		return !ok
	})
	settled := time.Now()
	time.Sleep(time.Second)
	as := l.finish()
	n, f, _ := summary(as, as[0].sent, settled.Add(time.Hour))
	t.Logf("%d requests, %d failed; the changed reload settled %v after it was asked", n, f, settled.Sub(reloaded).Round(time.Millisecond))
	if f != 0 {
		t.Fatalf("%d client errors\n%s", f, failures(as))
	}

	var steps []string
	for _, r := range a.auditRecords("deploy.bluegreen.superseded") {
		steps = append(steps, r["reason"].(string))
	}
	if len(steps) != 2 || !strings.Contains(steps[1], "green drained and stopped") || !strings.Contains(steps[1], "no longer kept warm") {
		t.Errorf("the audit does not state green's and blue's fate: %q", steps)
	}
	out, err := a.medic("releases", "web", "--json")
	var list []release.Release
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) == 0 {
		t.Fatalf("releases: %v\n%s", err, out)
	}
	if r := list[0]; r.Source != release.SourceConfig || r.Outcome != release.Live || r.Spec.Env["VERSION"] != "3" {
		t.Errorf("the newest release is %s %s from %s (VERSION %s), want the reload's, live, VERSION 3", r.Version, r.Outcome, r.Source, r.Spec.Env["VERSION"])
	}
	// The window is closed: a rollback is the cold one from the history
	// (a rollout), not a proxy switch; and a new deploy is not refused.
	if _, ok := greenWeight(); ok {
		t.Error("a green group is left")
	}
}

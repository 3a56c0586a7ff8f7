package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/fleet"
)

// TestDiagnoseFleetParts: the fleet demo's diagnosis lists a host's view,
// its fleet.* / service.scaled / instance.* events (bounded, those left out
// counted by kind) and its log's warnings grouped by message (medic's text
// lines and etcd's JSON lines).
func TestDiagnoseFleetParts(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 20, 52, 0, 0, time.UTC)
	rel := func(at time.Time) string { return fmt.Sprintf("%+.2fs", at.Sub(t0).Seconds()) }

	v := describeView(fleet.Status{Self: "h2", Joined: true, Lease: 0x1f, SafeUntil: t0.Add(91 * time.Second), Watching: true,
		Hosts: []fleet.Member{
			{Info: fleet.Info{Host: "h2", Started: t0.Add(3 * time.Second)}, State: fleet.Up, Since: t0.Add(3 * time.Second), Lease: 0x2f},
			{Info: fleet.Info{Host: "h1"}, State: fleet.Suspect, Since: t0.Add(80 * time.Second), GoneAt: t0.Add(80 * time.Second)},
		}}, rel)
	for _, want := range []string{"joined true, lease 1f, safe until +91.00s, watching true, storm brake false, coordinates true", "  h1 suspect since +80.00s", ", gone at +80.00s\n", "  h2 up since +3.00s, lease 2f"} {
		if !strings.Contains(v, want) {
			t.Errorf("view lacks %q:\n%s", want, v)
		}
	}
	if strings.Index(v, "  h1 ") > strings.Index(v, "  h2 ") {
		t.Errorf("hosts not by name:\n%s", v)
	}

	var recs []audit.Record
	for i := range diagEvents + 10 {
		kind := "instance.ready"
		if i%2 == 1 {
			kind = "instance.unready"
		}
		recs = append(recs, audit.Record{Time: t0.Add(time.Duration(i) * time.Second), Kind: kind, Target: "web/0", Reason: fmt.Sprint("r", i)})
		recs = append(recs, audit.Record{Time: t0, Kind: "probe.changed", Target: "web/0"})
	}
	recs = append(recs, audit.Record{Time: t0.Add(200 * time.Second), Kind: "fleet.placement", Target: "web", Reason: "rebalance",
		Fields: map[string]string{"to": "h1=2", "from": "h1=3"}})
	e := describeEvents(recs, rel)
	lines := strings.Split(strings.TrimSpace(e), "\n")
	if len(lines) != diagEvents+2 || !strings.HasPrefix(lines[0], fmt.Sprintf("events (fleet.*, service.scaled, instance.*): %d", diagEvents+11)) {
		t.Errorf("%d lines, want %d; first %q", len(lines), diagEvents+2, lines[0])
	}
	if strings.Contains(e, "probe.changed") || !strings.Contains(e, "  … 11 left out: instance.ready 6, instance.unready 5\n") ||
		!strings.HasSuffix(e, "+200.00s fleet.placement        web        rebalance from=h1=3 to=h1=2\n") || !strings.Contains(e, " r0\n") {
		t.Errorf("events:\n%s", e)
	}

	log := filepath.Join(t.TempDir(), "medic.log")
	os.WriteFile(log, []byte(strings.Join([]string{
		`time=2026-12-07T20:52:05.000Z level=WARN msg="fleet: cannot renew this host's lease" fleet=demo err="context deadline exceeded"`,
		`time=2026-12-07T20:52:04.000Z level=INFO msg=ready kind=instance.ready target=web/1 actor=supervisor`,
		`time=2026-12-07T20:52:09.500Z level=WARN msg="fleet: cannot renew this host's lease" fleet=demo err="etcdserver: no leader"`,
		`time=2026-12-07T20:52:10.000Z level=ERROR msg=boom err=x`,
		`{"level":"warn","ts":"2026-12-07T20:52:07.000Z","caller":"etcdserver/util.go:166","msg":"apply request took too long","took":"1.2s"}`,
		`{"level":"info","ts":"2026-12-07T20:52:07.000Z","msg":"fine"}`,
	}, "\n")), 0o644)
	w := describeWarnings(log, "log", t0)
	for _, want := range []string{
		"log: 3 distinct warnings or errors\n",
		"  ×2 +5.00s..+9.50s fleet: cannot renew this host's lease\n      last: time=2026-12-07T20:52:09.500Z level=WARN",
		"  ×1 +7.00s..+7.00s apply request took too long\n",
		"  ×1 +10.00s..+10.00s boom\n",
	} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	if strings.Contains(w, "fine") || strings.Contains(w, "instance.ready") {
		t.Errorf("warnings list info lines:\n%s", w)
	}
	if got := describeWarnings(filepath.Join(t.TempDir(), "none"), "log", t0); !strings.Contains(got, "no such file") {
		t.Errorf("a missing log: %q", got)
	}
}

// TestEventsFromLog: without the audit API, the diagnosis reads the events
// from medic's text log.
func TestEventsFromLog(t *testing.T) {
	log := filepath.Join(t.TempDir(), "medic.log")
	os.WriteFile(log, []byte(strings.Join([]string{
		`time=2026-12-07T20:53:34.472Z level=INFO msg="scaled from 2 to 3 instances" kind=service.scaled target=web actor=fleet`,
		`time=2026-12-07T20:53:34.989Z level=INFO msg="proxy not ready" proxy=web service=web instance=web/2 reason="readiness probe failed; out of rotation"`,
		`time=2026-12-07T20:53:35.000Z level=INFO msg=ready kind=instance.ready target=web/1 actor=supervisor`,
	}, "\n")), 0o644)
	got := eventsFromLog(log)
	if len(got) != 2 || got[0].Kind != "service.scaled" || got[0].Target != "web" || got[0].Reason != "scaled from 2 to 3 instances" ||
		!got[0].Time.Equal(time.Date(2026, 12, 7, 20, 53, 34, 472e6, time.UTC)) || got[1].Kind != "instance.ready" || got[1].Reason != "ready" {
		t.Fatalf("%+v", got)
	}
}

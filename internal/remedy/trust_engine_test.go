package remedy_test

import (
	"context"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/remedy"
	"github.com/medic-dev/medic/internal/sqlite"
)

// Promotion after N verified successes and demotion on a failed
// verification, persisted across a restart in the SQLite store.
func TestTrustPersisted(t *testing.T) {
	dir := t.TempDir()
	db, err := sqlite.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfgFor := func() *config.Config {
		cfg := restartStuck("act")
		cfg.Automation.PromoteAfter = 3
		cfg.Automation.Flap = config.AutomationFlap{Changes: 1000, Within: config.Duration(time.Minute)}
		cfg.Runbooks["restart_stuck"].Cooldown = config.Duration(time.Second)
		return cfg
	}
	sup := newFakeSup(map[string][2]int{"web": {3, 1}})
	h := start(t, cfgFor(), sup, func(o *remedy.Options) { o.Store = remedy.NewSQLStore(db) })
	incident := func(verified bool) {
		t.Helper()
		h.chk.set("stuck", verified)
		before := h.count(remedy.EventRunEnd)
		h.fire("stuck", "instance", "web/1", "service", "web")
		h.clk.Advance(time.Second) // the fault lasted a second before it was fixed
		want := "verified"
		if !verified {
			want = "failed"
		}
		for h.count(remedy.EventRunEnd) == before {
			h.clk.Advance(5 * time.Second) // verification polls on the fake clock
			time.Sleep(time.Millisecond)
		}
		if ev := h.rec.all(); !hasRunEnd(ev[before:], want) {
			h.dump()
			t.Fatalf("run did not end %s", want)
		}
		h.resolve("stuck", "instance", "web/1", "service", "web")
		h.clk.Advance(time.Minute) // past the cooldown
	}
	for range 3 {
		incident(true)
	}
	h.wait(remedy.EventTrust, "from", "act", "to", "silent")
	if rb := h.eng.Runbooks()[0]; rb.Level != remedy.LevelSilent || rb.Consecutive != 0 || rb.Runs != 3 {
		t.Fatalf("after 3 verified: %+v", rb)
	}
	incident(false)
	h.wait(remedy.EventTrust, "from", "silent", "to", "propose")
	h.stop()

	// Reopen: same store, new engine.
	h2 := start(t, cfgFor(), sup, func(o *remedy.Options) { o.Store = remedy.NewSQLStore(db) })
	rb := h2.eng.Runbooks()[0]
	if rb.Level != remedy.LevelPropose || rb.Runs != 4 || rb.Successes != 3 || rb.Failures != 1 || rb.MedianTTRSeconds == 0 {
		t.Fatalf("after reopen: %+v", rb)
	}
	if incs := h2.eng.Incidents(); len(incs) != 4 {
		t.Fatalf("after reopen: %d incidents, want 4", len(incs))
	}
	h2.stop()

	// A config with another starting level starts the record over at it.
	cfg := cfgFor()
	cfg.Runbooks["restart_stuck"].Trust = "observe"
	h3 := start(t, cfg, sup, func(o *remedy.Options) { o.Store = remedy.NewSQLStore(db) })
	if rb := h3.eng.Runbooks()[0]; rb.Level != remedy.LevelObserve || rb.Runs != 4 {
		t.Fatalf("new configured level: %+v", rb)
	}
	h3.stop()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func hasRunEnd(evs []medic.Event, result string) bool {
	for _, ev := range evs {
		if ev.Kind == remedy.EventRunEnd && ev.Fields["result"] == result {
			return true
		}
	}
	return false
}

// The pause switch survives a restart.
func TestPausePersisted(t *testing.T) {
	db, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h := start(t, restartStuck("act"), newFakeSup(nil), func(o *remedy.Options) { o.Store = remedy.NewSQLStore(db) })
	h.eng.Pause(context.Background(), "alice")
	if ev := h.wait(remedy.EventSwitch, "paused", "true"); ev.Actor != "api:alice" {
		t.Fatalf("pause event %+v", ev)
	}
	h.stop()
	h2 := start(t, restartStuck("act"), newFakeSup(nil), func(o *remedy.Options) { o.Store = remedy.NewSQLStore(db) })
	if !h2.eng.Paused() {
		t.Fatal("pause lost across restart")
	}
	h2.stop()
}

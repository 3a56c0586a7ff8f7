package probe_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/probe"
)

// Delays, periods, timeouts and timestamps come from Set.Clock.
func TestSetRunsOnTheInjectedClock(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fc := clocktest.New(t0)
	rp := every(time.Second)
	rp.InitialDelay = config.Duration(5 * time.Second)
	ready := &script{results: []medic.Health{S}}
	s, rec := newSet(t, map[*config.Probe]probe.Checker{rp: ready})
	s.Clock, s.Readiness = fc, rp
	stop := start(t, s)

	eventually(t, 5*time.Second, "initial-delay timer armed", func() bool { return fc.Pending() == 1 })
	fc.Advance(5*time.Second - time.Millisecond)
	if n := ready.count(); n != 0 || fc.Pending() != 1 {
		t.Fatalf("probed %d times before the initial delay was over", n)
	}
	fc.Advance(time.Millisecond)
	eventually(t, 5*time.Second, "first readiness edge", func() bool { return len(rec.list()) == 2 })
	wantEdges(t, rec, t0, "startup success @0s", "readiness success @5s")

	// The step stopped its timeout timer before reporting; what remains is the period.
	eventually(t, 5*time.Second, "period timer armed", func() bool { return fc.Pending() == 1 })
	if n := ready.count(); n != 1 {
		t.Fatalf("probed %d times before the period passed", n)
	}
	fc.Advance(time.Second)
	eventually(t, 5*time.Second, "second probe", func() bool { return ready.count() == 2 })
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// End to end on the wall clock: real checkers against a real server.
func TestSetProbesARealServer(t *testing.T) {
	var code atomic.Int32
	code.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz/ready" {
			w.WriteHeader(int(code.Load()))
		}
	}))
	defer srv.Close()
	fast := func(p *config.Probe) *config.Probe {
		p.Period, p.Timeout, p.FailureThreshold = config.Duration(20*time.Millisecond), config.Duration(time.Second), 2
		return p
	}
	rec := &recorder{t: t}
	s := &probe.Set{
		Liveness:  fast(&config.Probe{TCP: &config.TCPProbe{}}),
		Readiness: fast(&config.Probe{HTTP: &config.HTTPProbe{Path: "/healthz/ready"}}),
		Target:    probe.Target{Port: portOf(t, srv.Listener.Addr())},
		OnUpdate:  rec.onUpdate,
	}
	stop := start(t, s)
	summary := func() []string {
		var out []string
		for _, u := range rec.list() {
			out = append(out, string(u.Kind)+" "+u.Health.String()+" "+u.Detail)
		}
		return out
	}
	waitFor := func(want ...string) {
		t.Helper()
		eventually(t, 5*time.Second, "updates "+strconv.Quote(want[len(want)-1]), func() bool { return slices.Equal(summary(), want) })
	}
	waitFor("startup success no startup probe", "readiness success HTTP 200")
	code.Store(http.StatusServiceUnavailable)
	waitFor("startup success no startup probe", "readiness success HTTP 200", "readiness failure HTTP 503")
	code.Store(http.StatusOK)
	waitFor("startup success no startup probe", "readiness success HTTP 200", "readiness failure HTTP 503", "readiness success HTTP 200")
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if got := summary(); len(got) != 4 {
		t.Fatalf("updates after the flaps: %q (liveness must never have failed)", got)
	}
}

// Cancelling the Set kills an exec probe in flight and waits for it.
func TestSetCancelKillsAnExecProbeInFlight(t *testing.T) {
	dir := t.TempDir()
	lp := &config.Probe{
		Exec:   &config.ExecProbe{Command: []string{"sh", "-c", "echo $$ > probe.pid; sleep 30"}},
		Period: config.Duration(time.Hour), Timeout: config.Duration(time.Hour),
	}
	rec := &recorder{t: t}
	s := &probe.Set{Liveness: lp, Target: probe.Target{Dir: dir}, OnUpdate: rec.onUpdate}
	stop := start(t, s)
	pidFile := filepath.Join(dir, "probe.pid")
	eventually(t, 5*time.Second, "probe running", func() bool {
		b, err := os.ReadFile(pidFile)
		return err == nil && len(b) > 0 && b[len(b)-1] == '\n'
	})
	pid := readPID(t, pidFile)
	begin := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if took := time.Since(begin); took > 3*time.Second {
		t.Fatalf("Serve took %v to stop", took)
	}
	if !gone(pid) {
		t.Fatalf("probe process %d still running after Serve returned", pid)
	}
	if got := rec.list(); len(got) != 1 || got[0].Kind != medic.ProbeStartup {
		t.Fatalf("updates %v: a probe cut by the stop must not report a failure", got)
	}
}

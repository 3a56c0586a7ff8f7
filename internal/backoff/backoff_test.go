package backoff_test

import (
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/backoff"
)

func crash(code int) medic.Exit { return medic.Exit{Code: code, Reason: "exit status 1"} }

var policy = backoff.Policy{
	Mode: backoff.Always, Initial: time.Second, Multiplier: 2, Max: 5 * time.Minute,
	ResetAfter: 10 * time.Minute, CrashLoopRestarts: 4, CrashLoopWindow: 10 * time.Second,
}

// TestTimeline drives one tracker through crashes at given offsets, each after
// a start at the previous restart time, and checks every decision.
func TestTimeline(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		start, exit time.Duration
		want        backoff.Action
		delay       time.Duration
		loop        bool
	}{
		{0, 100 * time.Millisecond, backoff.Restart, 0, false},                                                  // first crash: at once
		{100 * time.Millisecond, 1 * time.Second, backoff.Restart, 1 * time.Second, false},                      // second: initial
		{2 * time.Second, 3 * time.Second, backoff.Restart, 2 * time.Second, false},                             // doubling
		{5 * time.Second, 6 * time.Second, backoff.Restart, 4 * time.Second, true},                              // 4 within 10s: crash loop, still backing off
		{10 * time.Second, 30 * time.Second, backoff.Restart, 8 * time.Second, false},                           // window slid: no longer a loop
		{38 * time.Second, 40 * time.Second, backoff.Restart, 16 * time.Second, false},                          // still doubling
		{56 * time.Second, 56*time.Second + 11*time.Minute, backoff.Restart, 0, false},                          // ran 11m: stable, reset to at once
		{56*time.Second + 11*time.Minute, 57*time.Second + 11*time.Minute, backoff.Restart, time.Second, false}, // and builds up again
	}
	tr := backoff.New(policy)
	for i, s := range steps {
		var d backoff.Decision
		tr = tr.Started(t0.Add(s.start))
		tr, d = tr.Exited(crash(1), "", t0.Add(s.exit), 0)
		if d.Action != s.want || d.Delay != s.delay || d.CrashLoop != s.loop {
			t.Fatalf("step %d (+%v): got %v/%v loop=%v (%s), want %v/%v loop=%v", i, s.exit, d.Action, d.Delay, d.CrashLoop, d.Reason, s.want, s.delay, s.loop)
		}
		if d.Reason == "" {
			t.Fatalf("step %d: empty reason", i)
		}
	}
}

func TestMaxCapAndJitter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := policy
	p.Jitter = 0.5
	p.CrashLoopRestarts = 0
	tr := backoff.New(p)
	var d backoff.Decision
	now := t0
	for i := 0; i < 20; i++ {
		tr = tr.Started(now)
		now = now.Add(time.Second)
		tr, d = tr.Exited(crash(1), "", now, 0.999)
		if d.Delay > p.Max {
			t.Fatalf("attempt %d: delay %v over max %v", d.Attempt, d.Delay, p.Max)
		}
		now = now.Add(d.Delay)
	}
	if d.Delay != p.Max {
		t.Fatalf("after 20 crashes delay = %v, want the cap %v", d.Delay, p.Max)
	}
	// Jitter adds up to Jitter × delay: attempt 3 has base 2s, u=0.5 → 2.5s.
	tr = backoff.New(p)
	for i := 0; i < 3; i++ {
		tr, d = tr.Started(t0).Exited(crash(1), "", t0.Add(time.Second), 0.5)
	}
	if d.Delay != 2500*time.Millisecond {
		t.Fatalf("jittered delay = %v, want 2.5s", d.Delay)
	}
}

func TestPolicies(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ok := medic.Exit{Code: 0, Reason: "exit status 0"}
	cases := []struct {
		mode  backoff.Mode
		exit  medic.Exit
		cause string
		want  backoff.Action
	}{
		{backoff.Always, ok, "", backoff.Restart},
		{backoff.Always, crash(2), "", backoff.Restart},
		{backoff.OnFailure, ok, "", backoff.GiveUp},
		{backoff.OnFailure, crash(2), "", backoff.Restart},
		{backoff.OnFailure, ok, "liveness probe failed: HTTP 500", backoff.Restart}, // a forced kill is a failure even if the exit was clean
		{backoff.Never, crash(2), "", backoff.GiveUp},
	}
	for _, c := range cases {
		p := policy
		p.Mode = c.mode
		_, d := backoff.New(p).Started(now).Exited(c.exit, c.cause, now.Add(time.Second), 0)
		if d.Action != c.want {
			t.Errorf("%s/%v/%q: got %v (%s), want %v", c.mode, c.exit.Code, c.cause, d.Action, d.Reason, c.want)
		}
		if c.cause != "" && !strings.Contains(d.Reason, c.cause) {
			t.Errorf("reason %q does not name the cause %q", d.Reason, c.cause)
		}
	}
}

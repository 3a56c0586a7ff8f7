package probe

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/clock/clocktest"
	"github.com/medic-dev/medic/internal/config"
)

// TestStep drives the worker's step function directly (kubelet's doProbe
// tests): each row is a probe kind, its thresholds, and a sequence of results
// with the verdict and update each must produce.
func TestStep(t *testing.T) {
	const (
		S = medic.HealthSuccess
		F = medic.HealthFailure
	)
	type probeStep struct {
		result  medic.Health
		verdict verdict
		update  medic.Health // HealthUnknown = no update
	}
	tests := []struct {
		name    string
		kind    medic.ProbeKind
		success int
		failure int
		steps   []probeStep
	}{
		{"startup passes on the first success", medic.ProbeStartup, 3, 3, []probeStep{
			{F, keepProbing, 0}, {F, keepProbing, 0}, {S, isStarted, S},
		}},
		{"startup fails after failure_threshold and holds", medic.ProbeStartup, 1, 3, []probeStep{
			{F, keepProbing, 0}, {F, keepProbing, 0}, {F, onHold, F},
		}},
		{"liveness starts success and sends nothing for it", medic.ProbeLiveness, 1, 2, []probeStep{
			{S, keepProbing, 0}, {S, keepProbing, 0}, {F, keepProbing, 0}, {S, keepProbing, 0},
			{F, keepProbing, 0}, {F, onHold, F},
		}},
		{"liveness ignores success_threshold", medic.ProbeLiveness, 5, 1, []probeStep{
			{F, onHold, F},
		}},
		{"readiness starts failure and flaps on edges", medic.ProbeReadiness, 2, 2, []probeStep{
			{F, keepProbing, 0}, {F, keepProbing, 0}, {S, keepProbing, 0}, {S, keepProbing, S},
			{S, keepProbing, 0}, {F, keepProbing, 0}, {F, keepProbing, F}, {F, keepProbing, 0},
			{S, keepProbing, 0}, {S, keepProbing, S},
		}},
		{"readiness with defaults: one success, three failures", medic.ProbeReadiness, 0, 0, []probeStep{
			{S, keepProbing, S}, {F, keepProbing, 0}, {F, keepProbing, 0}, {F, keepProbing, F},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var next medic.Health
			chk := CheckerFunc(func(context.Context) Outcome { return Outcome{Health: next, Detail: next.String()} })
			p := &config.Probe{SuccessThreshold: tt.success, FailureThreshold: tt.failure}
			w := newWorker(tt.kind, p, chk, clocktest.New(time.Unix(0, 0)))
			var got []Update
			w.emit = func(u Update) { got = append(got, u) }
			for i, s := range tt.steps {
				next = s.result
				got = got[:0]
				v := w.step(context.Background())
				if v != s.verdict {
					t.Fatalf("step %d (%v): verdict %d, want %d", i, s.result, v, s.verdict)
				}
				switch {
				case s.update == 0 && len(got) != 0:
					t.Fatalf("step %d (%v): unexpected update %v", i, s.result, got)
				case s.update != 0 && (len(got) != 1 || got[0].Health != s.update || got[0].Kind != tt.kind):
					t.Fatalf("step %d (%v): updates %v, want one %s %v", i, s.result, got, tt.kind, s.update)
				}
			}
		})
	}
}

func TestStepCutsAtTimeout(t *testing.T) {
	// A checker that ignores its deadline and then claims success still fails:
	// a probe past its timeout is a failed probe.
	chk := CheckerFunc(func(ctx context.Context) Outcome {
		<-ctx.Done()
		return Pass("late")
	})
	p := &config.Probe{Timeout: config.Duration(20 * time.Millisecond), FailureThreshold: 1}
	w := newWorker(medic.ProbeLiveness, p, chk, clock.Real{})
	var got []Update
	w.emit = func(u Update) { got = append(got, u) }
	if v := w.step(context.Background()); v != onHold {
		t.Fatalf("verdict %d, want onHold", v)
	}
	if len(got) != 1 || got[0].Health != medic.HealthFailure || got[0].Detail != "timeout after 20ms" {
		t.Fatalf("updates %v, want one liveness failure: timeout after 20ms", got)
	}
}

func TestStepDropsResultAfterCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	chk := CheckerFunc(func(context.Context) Outcome {
		cancel() // the Set stops while the probe runs
		return Fail("connection refused")
	})
	w := newWorker(medic.ProbeLiveness, &config.Probe{FailureThreshold: 1}, chk, clock.Real{})
	w.emit = func(u Update) { t.Errorf("update after cancel: %v", u) }
	w.observe = func(k medic.ProbeKind, o Outcome, _ time.Duration) { t.Errorf("observed after cancel: %v", o) }
	if v := w.step(ctx); v != stopping {
		t.Fatalf("verdict %d, want stopping", v)
	}
}

func TestNextTick(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := time.Second
	tests := []struct {
		now        time.Duration // when the probe that started at t0 ended
		wantNext   time.Duration
		wantMissed int
	}{
		{0, 1 * s, 0},
		{300 * time.Millisecond, 1 * s, 0},
		{1 * s, 1 * s, 0},                    // ended on the tick: probe at once
		{1500 * time.Millisecond, 2 * s, 1},  // ran past the tick at 1s
		{2 * s, 2 * s, 1},                    // tick at 1s missed, the one at 2s is now
		{2500 * time.Millisecond, 3 * s, 2},  // ticks at 1s and 2s missed
		{10*s + time.Nanosecond, 11 * s, 10}, // no burst of ten catch-up probes
	}
	for _, tt := range tests {
		next, missed := nextTick(t0, t0.Add(tt.now), s)
		if next.Sub(t0) != tt.wantNext || missed != tt.wantMissed {
			t.Errorf("ended +%v: next +%v missed %d, want +%v missed %d", tt.now, next.Sub(t0), missed, tt.wantNext, tt.wantMissed)
		}
	}
}

func TestTailBufferKeepsTheLastBytes(t *testing.T) {
	b := &tailBuffer{max: 8}
	for _, w := range []string{"abc", "defg", "hij", "k"} {
		if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", w, n, err)
		}
	}
	if got := b.String(); got != "defghijk" || b.total != 11 {
		t.Fatalf("kept %q of %d bytes, want %q of 11", got, b.total, "defghijk")
	}
	b.Write([]byte(strings.Repeat("x", 20) + "12345678"))
	if got := b.String(); got != "12345678" || len(b.buf) > b.max {
		t.Fatalf("kept %q, want the last 8 bytes", got)
	}
}

func TestClipKeepsUTF8Whole(t *testing.T) {
	s := strings.Repeat("é", 150) // 300 bytes
	got := clip(s, 201)
	if !strings.HasSuffix(got, "…") || len(got) > 201+len("…") || !utf8.ValidString(got) {
		t.Fatalf("clip split a rune or overran: %q (%d bytes)", got, len(got))
	}
}

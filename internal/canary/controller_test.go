package canary_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/canary"
	"github.com/medic-dev/medic/internal/verdict"
)

var t0 = time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)

// traffic makes request outcomes: log-normal latencies around 20 ms, errRate
// of them 500s, slow times slower.
type traffic struct {
	rng     *rand.Rand
	errRate float64
	slow    float64
}

func newTraffic(seed uint64) *traffic {
	return &traffic{rng: rand.New(rand.NewPCG(seed, 7)), slow: 1}
}

func (t *traffic) next() verdict.Outcome {
	lat := time.Duration(20e6 * math.Exp(0.3*t.rng.NormFloat64()) * t.slow)
	if t.rng.Float64() < t.errRate {
		return verdict.Outcome{Status: 500, Latency: lat / 2}
	}
	return verdict.Outcome{Status: 200, Latency: lat}
}

func ready(n int) canary.GroupStatus { return canary.GroupStatus{Want: n, Ready: n} }

// sim drives the controller like the runner: every tick, each group gets its
// share of rps requests, then Next is called.
type sim struct {
	cfg              canary.Config
	s                canary.State
	o                canary.Observation
	now              time.Time
	c, b             *traffic
	rps              int
	weights          canary.Weights
	actions          []canary.Action
	approveAfterTick int // 0: never
	ticks            int
}

func newSim(cfg canary.Config, seed uint64) *sim {
	m := &sim{cfg: cfg, s: canary.Begin(t0), now: t0, c: newTraffic(seed), b: newTraffic(seed + 1000), rps: 100}
	m.o.Canary, m.o.Baseline = ready(1), ready(1)
	return m
}

// run ticks every 250 ms until a final action or max.
func (m *sim) run(max time.Duration) canary.Action {
	tick := 250 * time.Millisecond
	var last canary.Action
	for m.now.Sub(t0) < max {
		m.now = m.now.Add(tick)
		m.ticks++
		n := m.rps * int(tick/time.Millisecond) / 1000
		for range n * m.weights.Canary / 100 {
			m.o.CanarySample.Outcomes = append(m.o.CanarySample.Outcomes, m.c.next())
		}
		for range n * m.weights.Baseline / 100 {
			m.o.BaselineSample.Outcomes = append(m.o.BaselineSample.Outcomes, m.b.next())
		}
		if m.s.Phase == canary.Awaiting && m.approveAfterTick > 0 && m.ticks >= m.approveAfterTick {
			m.o.Approved = true
		}
		var a canary.Action
		m.s, a = canary.Next(m.cfg, m.s, m.o, m.now)
		m.o.Approved = false
		if a.Kind != canary.Hold {
			m.actions = append(m.actions, a)
			last = a
		}
		switch a.Kind {
		case canary.SetStep:
			m.weights = a.Weights
			if m.o.CanarySample.Start.IsZero() {
				m.o.CanarySample.Start, m.o.BaselineSample.Start = m.now, m.now
			}
		case canary.Promote, canary.Rollback:
			return a
		case canary.Ask:
			if m.approveAfterTick == 0 {
				return a
			}
		}
	}
	return last
}

func kinds(as []canary.Action) string {
	var out []string
	for _, a := range as {
		s := a.Kind.String()
		if a.Kind == canary.SetStep {
			s += "(" + a.Weights.String() + ")"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestWeightsAt(t *testing.T) {
	for _, c := range []struct {
		pct  int
		want canary.Weights
	}{
		{0, canary.Weights{Stable: 100}},
		{5, canary.Weights{Stable: 90, Canary: 5, Baseline: 5}},
		{25, canary.Weights{Stable: 50, Canary: 25, Baseline: 25}},
		{50, canary.Weights{Stable: 0, Canary: 50, Baseline: 50}},
		{75, canary.Weights{Stable: 0, Canary: 75, Baseline: 25}},
		{100, canary.Weights{Canary: 100}},
		{-3, canary.Weights{Stable: 100}},
	} {
		if got := canary.WeightsAt(c.pct); got != c.want {
			t.Errorf("WeightsAt(%d) = %v, want %v", c.pct, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  canary.Config
		want string // "" valid
	}{
		{canary.Config{}, ""},
		{canary.Config{Steps: []int{10, 100}}, ""},
		{canary.Config{Steps: []int{10, 5, 100}}, "steps[1]: 5"},
		{canary.Config{Steps: []int{10, 50}}, "the last step must be 100"},
		{canary.Config{Steps: []int{0, 100}}, "steps[0]: 0"},
		{canary.Config{Steps: []int{50, 150}}, "steps[1]: 150"},
		{canary.Config{StepMaxDuration: time.Millisecond}, "step_max_duration"},
		{canary.Config{ReadyTimeout: time.Millisecond}, "ready_timeout"},
		{canary.Config{Instances: 1000}, "canary_instances"},
		{canary.Config{MaxRestarts: -1}, "max_restarts"},
		{canary.Config{Verdict: verdict.Config{Alpha: 2}}, "verdict: "},
	} {
		err := c.cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", c.cfg, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: error %v, want one containing %q", c.cfg, err, c.want)
		}
	}
}

// The start: nothing before every canary and baseline instance is ready,
// then the first step's weights; a readiness that never arrives or a crash
// loop rolls back.
func TestStartTimeline(t *testing.T) {
	cfg := canary.Config{ReadyTimeout: 10 * time.Second, MaxRestarts: 2}
	type tick struct {
		at       time.Duration
		c, b     canary.GroupStatus
		kind     canary.Kind
		phase    canary.Phase
		contains string
	}
	for _, c := range []struct {
		name  string
		ticks []tick
	}{
		{"ready", []tick{
			{1 * time.Second, canary.GroupStatus{Want: 1}, canary.GroupStatus{Want: 1}, canary.Hold, canary.Starting, "0 of 1 canary"},
			{2 * time.Second, ready(1), canary.GroupStatus{Want: 1}, canary.Hold, canary.Starting, "1 of 1 canary and 0 of 1 baseline"},
			{3 * time.Second, ready(1), ready(1), canary.SetStep, canary.Stepping, "stable 90%, canary 5%, baseline 5%"},
		}},
		{"never ready", []tick{
			{9 * time.Second, ready(1), canary.GroupStatus{Want: 1}, canary.Hold, canary.Starting, "waiting"},
			{10 * time.Second, ready(1), canary.GroupStatus{Want: 1}, canary.Rollback, canary.RollingBack, "readiness never arrived: 1 of 1 canary and 0 of 1 baseline instances ready after 10s"},
		}},
		{"crash loop while starting", []tick{
			{1 * time.Second, canary.GroupStatus{Want: 1, Restarts: 2}, ready(1), canary.Hold, canary.Starting, "waiting"},
			{2 * time.Second, canary.GroupStatus{Want: 1, Restarts: 3}, ready(1), canary.Rollback, canary.RollingBack, "the canary crash-loops: 3 restarts (max_restarts 2)"},
		}},
		{"baseline crash loop", []tick{
			{1 * time.Second, ready(1), canary.GroupStatus{Want: 1, Restarts: 3}, canary.Rollback, canary.RollingBack, "the baseline (old release) crash-loops"},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := canary.Begin(t0)
			for _, k := range c.ticks {
				var a canary.Action
				s, a = canary.Next(cfg, s, canary.Observation{Canary: k.c, Baseline: k.b}, t0.Add(k.at))
				if a.Kind != k.kind || s.Phase != k.phase || !strings.Contains(a.Reason, k.contains) {
					t.Fatalf("at %s: %s/%s %q, want %s/%s containing %q", k.at, a.Kind, s.Phase, a.Reason, k.kind, k.phase, k.contains)
				}
				if a.Kind == canary.Rollback && a.Weights != (canary.Weights{Stable: 100}) {
					t.Fatalf("a rollback must put all traffic on stable first, got %v", a.Weights)
				}
			}
		})
	}
}

// A canary answering 5 % 500s at 100 req/s is rolled back within seconds of
// its first step; the weights go back to stable and the reason names the
// failed metric.
func TestBadCanaryRollsBack(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		m := newSim(canary.Config{}, seed)
		m.c.errRate = 0.05
		a := m.run(10 * time.Minute)
		if a.Kind != canary.Rollback || !strings.Contains(a.Reason, "errors 5xx") {
			t.Fatalf("seed %d: last action %s %q, want a rollback on errors 5xx (actions %s)", seed, a.Kind, a.Reason, kinds(m.actions))
		}
		if m.s.Phase != canary.RollingBack || m.s.DecidedAt.IsZero() {
			t.Fatalf("seed %d: state %s decided %v", seed, m.s.Phase, m.s.DecidedAt)
		}
		if took := m.s.DecidedAt.Sub(m.s.TrafficStart); took > 2*time.Minute {
			t.Errorf("seed %d: verdict %s after the first traffic", seed, took)
		}
	}
}

// A slower canary (+20 % latency) is rolled back on the latency median.
func TestSlowCanaryRollsBack(t *testing.T) {
	m := newSim(canary.Config{}, 5)
	m.c.slow = 1.2
	a := m.run(10 * time.Minute)
	t.Logf("%s after %s: %s", a.Kind, m.s.DecidedAt.Sub(m.s.TrafficStart), a.Reason)
	if a.Kind != canary.Rollback || !strings.Contains(a.Reason, "latency") {
		t.Fatalf("last action %s %q, want a rollback on latency (actions %s)", a.Kind, a.Reason, kinds(m.actions))
	}
}

// The same release on both sides goes through every step to the promotion,
// each step after at least its minimum of requests.
func TestGoodCanaryPromoted(t *testing.T) {
	cfg := canary.Config{StepMinRequests: 60}
	for seed := uint64(1); seed <= 8; seed++ {
		m := newSim(cfg, seed)
		a := m.run(30 * time.Minute)
		if a.Kind != canary.Promote {
			t.Fatalf("seed %d: last action %s %q, want promote (actions %s)", seed, a.Kind, a.Reason, kinds(m.actions))
		}
		if got := kinds(m.actions); got != "step(stable 90%, canary 5%, baseline 5%) step(stable 50%, canary 25%, baseline 25%) step(stable 0%, canary 50%, baseline 50%) promote" {
			t.Fatalf("seed %d: actions %s", seed, got)
		}
		if m.s.Phase != canary.Promoting || m.s.Verdict.Decision != verdict.Pass {
			t.Fatalf("seed %d: %s with verdict %s", seed, m.s.Phase, m.s.Verdict.Decision)
		}
	}
}

// Under trust level propose the passed step waits for an approval; the
// verdict keeps judging meanwhile, and a refusal rolls back.
func TestApproval(t *testing.T) {
	m := newSim(canary.Config{Approve: true}, 3)
	a := m.run(5 * time.Minute)
	if a.Kind != canary.Ask || m.s.Phase != canary.Awaiting || !strings.Contains(a.Reason, "trust level propose") {
		t.Fatalf("got %s in %s (%q), want ask-approval while awaiting", a.Kind, m.s.Phase, a.Reason)
	}
	if got := kinds(m.actions); got != "step(stable 90%, canary 5%, baseline 5%) ask-approval" {
		t.Fatalf("actions %s: nothing may be promoted before an approval", got)
	}
	// Approved: the next step.
	m.o.Approved = true
	s, next := canary.Next(m.cfg, m.s, m.o, m.now.Add(time.Second))
	if next.Kind != canary.SetStep || next.Weights.Canary != 25 || s.Phase != canary.Stepping {
		t.Fatalf("after the approval: %s %v in %s", next.Kind, next.Weights, s.Phase)
	}
	// Refused: a rollback.
	m.o.Approved, m.o.Denied = false, true
	s, next = canary.Next(m.cfg, m.s, m.o, m.now.Add(time.Second))
	if next.Kind != canary.Rollback || s.Phase != canary.RollingBack || !strings.Contains(next.Reason, "refused") {
		t.Fatalf("after the refusal: %s in %s (%q)", next.Kind, s.Phase, next.Reason)
	}
	// A canary that starts failing while it waits is rolled back anyway.
	m.o.Denied = false
	bad := newTraffic(99)
	bad.errRate = 0.5
	for range 200 {
		m.o.CanarySample.Outcomes = append(m.o.CanarySample.Outcomes, bad.next())
	}
	s, next = canary.Next(m.cfg, m.s, m.o, m.now.Add(time.Second))
	if next.Kind != canary.Rollback || !strings.Contains(next.Reason, "verdict failed") {
		t.Fatalf("a failing canary awaiting approval: %s in %s (%q)", next.Kind, s.Phase, next.Reason)
	}
}

// Too little traffic: the step stays undecided, then rolls back at
// step_max_duration — never a promotion without proof.
func TestUndecidedStepRollsBack(t *testing.T) {
	m := newSim(canary.Config{StepMaxDuration: time.Minute}, 4)
	m.rps = 20 // 1 req/s for the canary at 5 %
	a := m.run(10 * time.Minute)
	if a.Kind != canary.Rollback || !strings.Contains(a.Reason, "undecided at 5% after 1m0s") {
		t.Fatalf("got %s %q, want a rollback for an undecided step", a.Kind, a.Reason)
	}
	if d := m.s.DecidedAt.Sub(m.s.StepStart); d != time.Minute {
		t.Fatalf("rolled back %s after the step began, want exactly step_max_duration", d)
	}
}

// Readiness lost during a step: held for ready_timeout, then rolled back; a
// short blip is forgiven.
func TestReadinessLost(t *testing.T) {
	cfg := canary.Config{ReadyTimeout: 5 * time.Second}
	s := canary.Begin(t0)
	o := canary.Observation{Canary: ready(1), Baseline: ready(1)}
	s, a := canary.Next(cfg, s, o, t0.Add(time.Second))
	if a.Kind != canary.SetStep {
		t.Fatalf("want the first step, got %s", a.Kind)
	}
	o.Canary.Ready = 0
	for _, c := range []struct {
		at    time.Duration
		ready int
		kind  canary.Kind
	}{
		{2 * time.Second, 0, canary.Hold},
		{6 * time.Second, 0, canary.Hold},         // unready for 4s
		{6500 * time.Millisecond, 1, canary.Hold}, // back: forgiven
		{7 * time.Second, 0, canary.Hold},
		{11 * time.Second, 0, canary.Hold},
		{12 * time.Second, 0, canary.Rollback}, // 5s since 7s
	} {
		o.Canary.Ready = c.ready
		s, a = canary.Next(cfg, s, o, t0.Add(c.at))
		if a.Kind != c.kind {
			t.Fatalf("at %s: %s (%q), want %s", c.at, a.Kind, a.Reason, c.kind)
		}
	}
	if !strings.Contains(a.Reason, "readiness lost") {
		t.Fatalf("reason %q", a.Reason)
	}
}

// A final state holds: no action after a rollback or a promotion.
func TestFinalStatesHold(t *testing.T) {
	for _, p := range []canary.Phase{canary.Promoting, canary.Promoted, canary.RollingBack, canary.RolledBack} {
		s := canary.State{Phase: p, Reason: "x"}
		if _, a := canary.Next(canary.Config{}, s, canary.Observation{Canary: canary.GroupStatus{Restarts: 99}}, t0); a.Kind != canary.Hold {
			t.Errorf("%s: %s", p, a.Kind)
		}
	}
}

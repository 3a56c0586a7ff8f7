package canary

import (
	"context"
	"sync"
	"time"

	"github.com/medic-dev/medic/internal/verdict"
)

// Synthetic is a canary's synthetic load: GET requests of Path sent by
// medic itself to the canary and the baseline, the same number to each,
// while a step is undecided and its real traffic is too low (docs/deploys.md,
// "Synthetic load"). The zero value (no Path) is off.
type Synthetic struct {
	// Path of the GET requests; it must be safe to repeat.
	Path string
	// Rate is the requests per second per group, real ones included:
	// synthetic requests only fill the gap. Default 20 when Path is set.
	Rate float64
}

// DefaultSyntheticRate is Synthetic.Rate when unset.
const DefaultSyntheticRate = 20

// maxSyntheticInFlight bounds the synthetic requests under way per canary;
// a top-up that finds them all busy is skipped (the service is slow, and
// medic must not pile up requests on it).
const maxSyntheticInFlight = 32

// Prober sends synthetic requests: one GET of path to one of the group's
// ready instances, returning its outcome as the proxy would record it
// (status 0 for no response).
type Prober interface {
	Get(ctx context.Context, service, group, path string) verdict.Outcome
}

// SyntheticWanted reports whether the canary wants synthetic load now: at a
// traffic step (not waiting for an approval) whose verdict is not yet a pass
// or whose step minimum of requests is not met.
func SyntheticWanted(cfg Config, s State, o Observation) bool {
	cfg = cfg.WithDefaults()
	if cfg.Synthetic.Path == "" || s.Phase != Stepping {
		return false
	}
	return s.Verdict.Decision != verdict.Pass || len(o.CanarySample.Outcomes)-s.StepBase < cfg.StepMinRequests
}

// TopUp returns how many synthetic requests a group gets for a tick in
// which it received real requests: enough to bring it to rate per second,
// the fraction carried to the next tick.
func TopUp(rate float64, tick time.Duration, real int, carry float64) (n int, next float64) {
	want := rate*tick.Seconds() - float64(real) + carry
	if want <= 0 {
		return 0, 0 // real traffic covers the rate: nothing owed
	}
	n = int(want)
	return n, want - float64(n)
}

// synth runs one canary's synthetic requests and keeps their outcomes until
// the runner's loop takes them.
type synth struct {
	p       Prober
	service string
	path    string
	ctx     context.Context
	wg      sync.WaitGroup
	slots   chan struct{}

	mu      sync.Mutex
	pending map[string][]verdict.Outcome
	sent    int
	skipped int
}

func newSynth(ctx context.Context, p Prober, service, path string) *synth {
	return &synth{p: p, service: service, path: path, ctx: ctx, slots: make(chan struct{}, maxSyntheticInFlight), pending: map[string][]verdict.Outcome{}}
}

// send starts n requests to group, each in its own goroutine while a slot
// is free.
func (s *synth) send(group string, n int) {
	for range n {
		select {
		case s.slots <- struct{}{}:
		default:
			s.mu.Lock()
			s.skipped++
			s.mu.Unlock()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.slots }()
			o := s.p.Get(s.ctx, s.service, group, s.path)
			if s.ctx.Err() != nil {
				return // cut short by the canary's end: not the service's outcome
			}
			s.mu.Lock()
			s.pending[group] = append(s.pending[group], o)
			s.sent++
			s.mu.Unlock()
		}()
	}
}

// take returns the outcomes of group's finished requests since the last take.
func (s *synth) take(group string) []verdict.Outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.pending[group]
	delete(s.pending, group)
	return out
}

func (s *synth) counts() (sent, skipped int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.skipped
}

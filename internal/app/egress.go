package app

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/egress"
)

// startEgress opens every dependency listener of the config (before the
// instances start: they get the addresses in their environment). Breaker
// transitions become audited events, so runbooks and the dashboard see them.
// It returns nil when no service declares dependencies.
func (m *Main) startEgress() (*egress.Set, error) {
	set, err := egress.New(egress.Options{Config: m.cfg, Clock: m.Clock, Logger: m.Logger.With("component", "egress"),
		Registerer: m.mets.Registry, Listen: m.handover.listen, FDs: m.fds, OnTransition: func(t egress.Transition) {
			m.Record(context.Background(), medic.Event{Time: t.At, Kind: medic.EventBreaker,
				Target: t.Service + "/" + t.Dependency, Actor: "egress", Reason: t.Reason,
				Fields: map[string]string{"service": t.Service, "dependency": t.Dependency, "from": t.From.String(), "to": t.To.String()}})
		}})
	if err != nil {
		return nil, fmt.Errorf("open dependency listeners: %w", err)
	}
	if set.Len() == 0 {
		set.Close()
		return nil, nil
	}
	return set, nil
}

// keepDependencies gives next the dependencies the running listeners serve:
// the listeners are opened once, at start, so a reload that changed them
// would hand restarted instances addresses nobody listens on (or settings
// nobody enforces). It returns the services whose dependencies differed.
func keepDependencies(cur, next *config.Config) []string {
	var kept []string
	for name, svc := range next.Services {
		var running map[string]*config.Dependency
		if old := cur.Services[name]; old != nil {
			running = old.Dependencies
		}
		if !reflect.DeepEqual(svc.Dependencies, running) {
			kept = append(kept, name)
			svc.Dependencies = running
		}
	}
	sort.Strings(kept)
	return kept
}

// Dependencies returns the dependency listeners' figures (nil without any).
func (m *Main) Dependencies() []egress.Stats {
	if m.egress == nil {
		return nil
	}
	return m.egress.Stats()
}

// injectDependency is the drills' "egress" fault: latency (a duration, or
// auto = twice the dependency's timeout), error_rate or down at the listener
// of the drilled service's dependency. Its restore notes what the
// application's calls felt while the fault was in place.
func (m *Main) injectDependency(_ context.Context, t *drill.Target) (drill.Restore, error) {
	if m.egress == nil {
		return nil, errors.New("fault egress: no service declares dependencies")
	}
	svc := t.Config.Services[t.Service]
	if svc == nil || svc.Dependencies[t.Dependency] == nil {
		return nil, fmt.Errorf("fault egress: service %s declares no dependency %q", t.Service, t.Dependency)
	}
	dep := svc.Dependencies[t.Dependency]
	var f egress.Fault
	if v := t.Params["latency"]; v == "auto" {
		f.Latency = max(2*dep.Timeout.D(), 100*time.Millisecond)
	} else if v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("fault egress: latency %q: %w", v, err)
		}
		f.Latency = d
	}
	if v := t.Params["error_rate"]; v != "" {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("fault egress: error_rate %q: want a fraction", v)
		}
		f.ErrorRate = x
	}
	f.Down = t.Params["down"] == "true"
	if f.IsZero() {
		return nil, errors.New("fault egress: set latency, error_rate or down")
	}
	before := m.depStats(t.Service, t.Dependency)
	old, err := m.egress.Inject(t.Service, t.Dependency, f)
	if err != nil {
		return nil, fmt.Errorf("fault egress: %w", err)
	}
	t.Note("fault at the listener of %s/%s (%s, timeout %v): latency %v, error rate %v, down %v",
		t.Service, t.Dependency, dep.Listen, dep.Timeout, f.Latency, f.ErrorRate, f.Down)
	return func(context.Context) error {
		if _, err := m.egress.Inject(t.Service, t.Dependency, old); err != nil {
			return err
		}
		after := m.depStats(t.Service, t.Dependency)
		t.Note("the application's calls to %s/%s during the fault: %s; breaker %s at restore; p99 %.3fs",
			t.Service, t.Dependency, callsDelta(before, after), after.State, after.LatencyP99)
		return nil
	}, nil
}

func (m *Main) depStats(svc, dep string) egress.Stats {
	for _, s := range m.egress.Stats() {
		if s.Service == svc && s.Dependency == dep {
			return s
		}
	}
	return egress.Stats{}
}

// callsDelta renders the calls between two stats by outcome: "5 timeout, 120 open, 30 fallbacks".
func callsDelta(a, b egress.Stats) string {
	var parts []string
	for _, o := range []string{egress.OutcomeOK, egress.OutcomeError, egress.OutcomeTimeout, egress.OutcomeOpen, egress.OutcomeShed, egress.OutcomeCanceled} {
		if n := b.Calls[o] - a.Calls[o]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, o))
		}
	}
	if n := b.Fallbacks - a.Fallbacks; n > 0 {
		parts = append(parts, fmt.Sprintf("%d answered by the fallback", n))
	}
	if len(parts) == 0 {
		return "no calls"
	}
	return strings.Join(parts, ", ")
}

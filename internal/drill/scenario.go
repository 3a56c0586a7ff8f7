// Package drill proves medic's recoveries with numbers. A drill injects one
// fault into a service that allows drills, drives open-loop load through the
// service's proxy, watches the agent's own event stream react, removes the
// fault, and ends with one verdict: detected after how long, recovered after
// how long, how many requests clients saw fail, latency before, during and
// after, and which actions the agent took (with their audit sequence numbers).
//
// Scenarios are data (Scenario): a fault (an injector kind and its
// parameters), what detection and recovery look like as event matches, what
// must not happen, and the time allowed. Injectors are registered by kind, so
// components (remediation, databases) add their own faults without changing
// this package. The judgement is a pure function of the recorded timeline
// (Assess), tested with synthetic event sequences.
package drill

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// Sentinel errors; the API maps them to status codes.
var (
	ErrUnknownScenario = errors.New("drill: unknown scenario")
	ErrRefused         = errors.New("drill: refused")
	ErrBusy            = errors.New("drill: another drill is running")
	ErrNotFound        = errors.New("drill: not found")
	ErrClosed          = errors.New("drill: stopped")
)

// Scope says what a scenario's fault is aimed at.
type Scope string

// Scopes.
const (
	ScopeInstance   Scope = "instance"   // one instance; the disruption budget applies
	ScopeService    Scope = "service"    // the service as a whole
	ScopeDependency Scope = "dependency" // a service the drilled one depends on
	ScopeHost       Scope = "host"       // the machine, such as a disk
	// ScopeFleet: one host of the fleet as the others see it (host-kill,
	// host-partition); the drill runs on another host, which measures.
	ScopeFleet Scope = "fleet"
)

// Fault is what to inject: an injector kind and its parameters.
type Fault struct {
	Kind   string            `json:"kind"`
	Params map[string]string `json:"params,omitempty"`
}

// Match selects events of the agent's stream. Kind is exact, a prefix
// followed by "*", or alternatives separated by "|". On is "target" (the instance under fault, the default),
// "service" (the service or any of its instances), "dependency", "host"
// (the fleet host a fleet drill is aimed at: target fleet/<fleet>/<host>) or "any".
// Fields must all be equal; Actor is a prefix.
type Match struct {
	Kind   string            `json:"kind"`
	On     string            `json:"on,omitempty"`
	Fields map[string]string `json:"fields,omitempty"`
	Actor  string            `json:"actor,omitempty"`
}

// String renders the match for verdict reasons: "instance.ready on web/1".
func (m Match) String() string {
	s := m.Kind
	if m.On != "any" {
		s += " on " + onOr(m.On)
	}
	keys := make([]string, 0, len(m.Fields))
	for k := range m.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s += fmt.Sprintf(" %s=%s", k, m.Fields[k])
	}
	if m.Actor != "" {
		s += " by " + m.Actor + "…"
	}
	return s
}

func onOr(on string) string {
	if on == "" {
		return "target"
	}
	return on
}

// Scenario is one drill as data.
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// FailureMode is the row of the failure table this proves ("process crashes").
	FailureMode string `json:"failure_mode"`
	Scope       Scope  `json:"scope"`
	Fault       Fault  `json:"fault"`
	// Detect: the first event after the injection matching any of these.
	Detect []Match `json:"detect"`
	// Recover: events matching these in order after the detection; empty
	// means recovered when detected (containment is the recovery).
	Recover []Match `json:"recover,omitempty"`
	// Forbid: none of these may happen while the fault is injected.
	Forbid []Match `json:"forbid,omitempty"`
	// MaxErrorRate is the share of requests allowed to fail client-side.
	MaxErrorRate float64 `json:"max_error_rate"`
	// MaxLatencyRatio, when set, bounds the load's p99 while the fault is
	// injected to this multiple of its normal p99: the worse of the p99
	// before and after the fault (agent-retry-storm: 1.5).
	MaxLatencyRatio float64 `json:"max_latency_ratio,omitempty"`
	// Warmup is the baseline load before the injection.
	Warmup config.Duration `json:"warmup"`
	// Deadline is the time allowed from injection to recovery.
	Deadline config.Duration `json:"deadline"`
	// Hold keeps the fault injected at least this long.
	Hold config.Duration `json:"hold,omitempty"`
	// Settle is the time allowed after the fault is removed to be back at full capacity.
	Settle config.Duration `json:"settle"`
	// Cooldown is the load kept afterwards for the after-phase latency.
	Cooldown config.Duration `json:"cooldown"`
	// Requires names components the expected recovery needs (remedy, database).
	Requires []string `json:"requires,omitempty"`
}

// withDefaults fills unset timings with the documented defaults.
func (s Scenario) withDefaults() Scenario {
	def := func(d *config.Duration, v time.Duration) {
		if *d == 0 {
			*d = config.Duration(v)
		}
	}
	def(&s.Warmup, 2*time.Second)
	def(&s.Deadline, 30*time.Second)
	def(&s.Settle, 30*time.Second)
	def(&s.Cooldown, 2*time.Second)
	if s.Scope == "" {
		s.Scope = ScopeInstance
	}
	if s.FailureMode == "" {
		s.FailureMode = s.Name
	}
	return s
}

// Validate reports a scenario that cannot run.
func (s Scenario) Validate() error {
	var errs []string
	if s.Name == "" {
		errs = append(errs, "no name")
	}
	if s.Fault.Kind == "" {
		errs = append(errs, "no fault kind")
	}
	if len(s.Detect) == 0 {
		errs = append(errs, "no detect match")
	}
	switch s.Scope {
	case ScopeInstance, ScopeService, ScopeDependency, ScopeHost, ScopeFleet, "":
	default:
		errs = append(errs, fmt.Sprintf("scope %q", s.Scope))
	}
	if s.MaxErrorRate < 0 || s.MaxErrorRate > 1 {
		errs = append(errs, fmt.Sprintf("max_error_rate %v", s.MaxErrorRate))
	}
	if len(errs) > 0 {
		return fmt.Errorf("drill: scenario %q: %s", s.Name, strings.Join(errs, "; "))
	}
	return nil
}

// FromConfig converts a custom scenario of medic.yaml.
func FromConfig(name string, c *config.DrillScenario) Scenario {
	conv := func(ms []config.DrillMatch) []Match {
		out := make([]Match, len(ms))
		for i, m := range ms {
			out[i] = Match{Kind: m.Kind, On: m.On, Fields: m.Fields, Actor: m.Actor}
		}
		return out
	}
	s := Scenario{
		Name: name, Description: c.Description, FailureMode: c.FailureMode, Scope: Scope(c.Scope),
		Fault:  Fault{Kind: c.Fault.Kind, Params: c.Fault.Params},
		Detect: conv(c.Detect), Recover: conv(c.Recover), Forbid: conv(c.Forbid),
		MaxErrorRate: 0.01, Warmup: c.Warmup, Deadline: c.Deadline, Hold: c.Hold, Settle: c.Settle,
		Cooldown: c.Cooldown, Requires: c.Requires,
	}
	if c.MaxErrorRate != nil {
		s.MaxErrorRate = *c.MaxErrorRate
	}
	return s.withDefaults()
}

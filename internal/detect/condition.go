// Package detect turns signals, events and pushed alerts into conditions
// whose alerts go pending → firing → resolved (prometheus rules/alerting.go
// style). A Condition is a value evaluated at a time given to it: it never
// reads the clock, so tests step it through time. The Engine holds all
// conditions, keeps their state across config reloads, and runs the
// evaluation loop.
package detect

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/signal"
)

const (
	// MaxAlerts bounds the alerts (label sets) one condition tracks; readings
	// for more are dropped and counted. It bounds what pushed alerts with
	// unbounded labels can cost.
	MaxAlerts = 1000
	// resolvedRetention is how long a resolved alert stays visible in Alerts
	// (prometheus keeps resolved alerts 15m to resend them; medic keeps them
	// for the status page).
	resolvedRetention = 15 * time.Minute
)

// SeriesSource is where conditions read signals; *signal.Store is one.
type SeriesSource interface {
	Range(name string, match signal.Labels, from, to time.Time) []signal.Series
	Latest(name string, match signal.Labels) []signal.Sample
}

var _ SeriesSource = (*signal.Store)(nil)

// kind observes the inputs of one kind of condition.
type kind interface {
	// read returns the readings at now, one per label set the kind knows.
	// firing reports whether the alert of a labels key is firing, for
	// hysteresis. Label sets without a reading are treated as not holding.
	read(now time.Time, src SeriesSource, firing func(key string) bool) []reading
}

// change is an input that happened at its own time (an event, a push),
// applied in time order before the evaluation at now.
type change struct {
	at time.Time
	r  reading
}

// Condition is one configured condition and the alerts it holds, one per
// label set. It is not safe for concurrent use; the Engine serialises it.
type Condition struct {
	name    string
	spec    config.Condition
	kind    string
	k       kind
	hold    time.Duration
	keep    time.Duration
	alerts  map[string]*alert
	changes []change
	last    time.Time // last evaluation
	dropped uint64
}

// NewCondition builds the condition name from its config, applying defaults
// to a copy. An invalid config is an error listing every issue.
func NewCondition(name string, cfg *config.Condition) (*Condition, error) {
	if cfg == nil {
		return nil, fmt.Errorf("condition %s: no config", name)
	}
	spec := cloneSpec(cfg)
	spec.SetDefaults()
	if is := spec.Validate(); len(is) > 0 {
		msgs := make([]string, len(is))
		for i, x := range is {
			msgs[i] = strings.TrimPrefix(x.Field+": "+x.Message, ": ")
		}
		return nil, fmt.Errorf("condition %s: %s", name, strings.Join(msgs, "; "))
	}
	c := &Condition{name: name, spec: *spec, kind: spec.Kind(), hold: spec.For.D(), keep: spec.KeepFiringFor.D(),
		alerts: map[string]*alert{}}
	switch c.kind {
	case config.KindThreshold:
		c.k = newThreshold(spec)
	case config.KindTrend:
		c.k = newTrend(spec)
	case config.KindAnomaly:
		c.k = newAnomaly(spec)
	case config.KindEvent:
		c.k = newEventKind(spec)
	case config.KindAlert:
		c.k = newExternal(spec)
	}
	return c, nil
}

// cloneSpec copies a config deeply enough that later edits of the caller's
// value do not reach the condition.
func cloneSpec(c *config.Condition) *config.Condition {
	s := *c
	s.Labels = maps.Clone(c.Labels)
	s.By = slices.Clone(c.By)
	s.ResolveOn = slices.Clone(c.ResolveOn)
	if c.Trend != nil {
		t := *c.Trend
		s.Trend = &t
	}
	if c.Anomaly != nil {
		a := *c.Anomaly
		s.Anomaly = &a
	}
	if c.Alert != nil {
		s.Alert = &config.ConditionAlert{Match: maps.Clone(c.Alert.Match)}
	}
	return &s
}

// Name returns the condition's name.
func (c *Condition) Name() string { return c.name }

// Kind returns threshold, trend, anomaly, event or alert.
func (c *Condition) Kind() string { return c.kind }

// Signal returns the signal the condition reads ("" for event and alert conditions).
func (c *Condition) Signal() string { return c.spec.Signal }

// History is how far back before the newest point the condition reads its
// signal: a threshold the newest point only (0), a trend its window, an
// anomaly all the store keeps (config.SignalRetention: a new detector learns
// its baseline from it). Event and alert conditions read no signal (0).
func (c *Condition) History() time.Duration {
	switch c.kind {
	case config.KindTrend:
		return c.spec.Trend.Window.D()
	case config.KindAnomaly:
		return config.SignalRetention
	}
	return 0
}

// Dropped returns how many readings were dropped because MaxAlerts label
// sets were already tracked.
func (c *Condition) Dropped() uint64 { return c.dropped }

// Eval applies the inputs queued by Push and Observe in time order, then
// evaluates the condition at now, and returns the transitions in order.
// now must not go backwards between calls; an input stamped before the
// previous evaluation counts as happening at it.
func (c *Condition) Eval(now time.Time, src SeriesSource) []Transition {
	var out []Transition
	slices.SortStableFunc(c.changes, func(a, b change) int { return a.at.Compare(b.at) })
	for _, ch := range c.changes {
		at := ch.at
		if at.Before(c.last) {
			at = c.last
		}
		if at.After(now) {
			at = now
		}
		out = c.apply(out, at, ch.r)
	}
	c.changes = c.changes[:0]

	firing := func(key string) bool { a := c.alerts[key]; return a != nil && a.state == StateFiring }
	seen := map[string]bool{}
	for _, r := range c.k.read(now, src, firing) {
		seen[r.labels.Key()] = true
		out = c.apply(out, now, r)
	}
	for key, a := range c.alerts {
		if !seen[key] && a.state != StateInactive {
			out = c.apply(out, now, reading{labels: a.labels, value: a.value, reason: "no data: the series is gone or stale"})
		}
	}
	for key, a := range c.alerts {
		if a.state == StateInactive && (a.resolvedAt.IsZero() || now.Sub(a.resolvedAt) >= resolvedRetention) {
			delete(c.alerts, key)
		}
	}
	c.last = now
	slices.SortStableFunc(out, func(a, b Transition) int {
		if d := a.At.Compare(b.At); d != 0 {
			return d
		}
		return strings.Compare(a.Labels.Key(), b.Labels.Key())
	})
	return out
}

// apply steps the alert of r's label set at at.
func (c *Condition) apply(out []Transition, at time.Time, r reading) []Transition {
	key := r.labels.Key()
	a := c.alerts[key]
	if a == nil {
		if !r.active {
			return out
		}
		if len(c.alerts) >= MaxAlerts {
			c.dropped++
			return out
		}
		a = &alert{labels: r.labels.Clone(), state: StateInactive}
		c.alerts[key] = a
	}
	if tr, ok := a.step(at, r, c.hold, c.keep); ok {
		tr.Condition, tr.Kind = c.name, c.kind
		out = append(out, tr)
	}
	return out
}

// Push offers a pushed alert, received at now, to an alert condition. It
// reports whether the condition's match selected it; the change is applied
// at the next Eval.
func (c *Condition) Push(a ExternalAlert, now time.Time) bool {
	x, ok := c.k.(*external)
	if !ok {
		return false
	}
	r, matched := x.push(a, now)
	if matched && r != nil {
		c.changes = append(c.changes, change{at: now, r: *r})
	}
	return matched
}

// Observe offers a supervisor event to an event condition. It reports
// whether the event concerned the condition; the change is applied at the
// next Eval, at the event's time.
func (c *Condition) Observe(ev medic.Event) bool {
	x, ok := c.k.(*eventKind)
	if !ok {
		return false
	}
	r, matched := x.observe(ev)
	if matched && r != nil {
		c.changes = append(c.changes, change{at: ev.Time, r: *r})
	}
	return matched
}

// Alerts returns the condition's pending and firing alerts, and those
// resolved within the last 15 minutes, sorted by labels.
func (c *Condition) Alerts() []Alert {
	out := make([]Alert, 0, len(c.alerts))
	for _, a := range c.alerts {
		out = append(out, a.snapshot(c.name))
	}
	slices.SortFunc(out, func(a, b Alert) int { return strings.Compare(a.Labels.Key(), b.Labels.Key()) })
	return out
}

// Equal reports whether o was built from the same config.
func (c *Condition) Equal(o *Condition) bool { return reflect.DeepEqual(c.spec, o.spec) }

// CopyState carries the alerts (with their `for` timers) and the kind's
// learnt state of old into c, when old is the same kind of condition on the
// same signal: a reload that changes a threshold does not restart its
// pending timers or relearn a baseline (prometheus Manager.Update). It
// reports whether it did; when not, old's alerts should be resolved.
func (c *Condition) CopyState(old *Condition) bool {
	if old == nil || old.kind != c.kind || old.spec.Signal != c.spec.Signal {
		return false
	}
	for k, a := range old.alerts {
		cp := *a
		c.alerts[k] = &cp
	}
	c.changes = append(c.changes, old.changes...)
	c.last = old.last
	if s, ok := c.k.(interface{ copyFrom(kind) }); ok {
		s.copyFrom(old.k)
	}
	return true
}

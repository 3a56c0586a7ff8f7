package detect

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/signal"
)

// AlertStatus is the status of a pushed alert.
type AlertStatus string

const (
	AlertFiring   AlertStatus = "firing"
	AlertResolved AlertStatus = "resolved"
)

// ExternalAlert is an alert pushed to medic by Alertmanager or the generic
// webhook (see package alerts). Its identity is its label set.
type ExternalAlert struct {
	Source       string            `json:"source"` // "alertmanager" or "webhook"
	Status       AlertStatus       `json:"status"`
	Labels       signal.Labels     `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"starts_at,omitzero"`
	EndsAt       time.Time         `json:"ends_at,omitzero"` // zero: until resolved
	GeneratorURL string            `json:"generator_url,omitempty"`
	Fingerprint  string            `json:"fingerprint,omitempty"`
}

// pushed is the last word on one pushed label set.
type pushed struct {
	labels      signal.Labels
	firing      bool
	endsAt      time.Time
	at          time.Time // when it was received
	source      string
	annotations map[string]string
}

// external follows pushed alerts that carry the condition's match.
type external struct {
	match        signal.Labels
	resolveAfter time.Duration
	alerts       map[string]*pushed
}

func newExternal(c *config.Condition) *external {
	return &external{match: c.Alert.Match, resolveAfter: c.ResolveAfter.D(), alerts: map[string]*pushed{}}
}

func (x *external) copyFrom(old kind) {
	if o, ok := old.(*external); ok {
		for k, p := range o.alerts {
			if p.labels.Matches(x.match) {
				x.alerts[k] = p
			}
		}
	}
}

// push records a, received at now, and returns the reading it makes (nil
// for a resolution of an alert never seen firing); matched reports whether
// the match selected it.
func (x *external) push(a ExternalAlert, now time.Time) (_ *reading, matched bool) {
	if !a.Labels.Matches(x.match) {
		return nil, false
	}
	key := a.Labels.Key()
	p := x.alerts[key]
	firing := a.Status == AlertFiring
	if p == nil {
		if !firing || len(x.alerts) >= MaxAlerts {
			return nil, true
		}
		p = &pushed{labels: a.Labels.Clone()}
		x.alerts[key] = p
	}
	p.firing, p.endsAt, p.at, p.source, p.annotations = firing, a.EndsAt, now, a.Source, a.Annotations
	r := x.reading(p, now)
	return &r, true
}

func (x *external) reading(p *pushed, now time.Time) reading {
	name := p.labels["alertname"]
	if name == "" {
		name = p.labels.String()
	}
	r := reading{labels: p.labels, annotations: p.annotations}
	switch {
	case !p.firing:
		r.reason = fmt.Sprintf("alert %s resolved by %s", name, p.source)
	case !p.endsAt.IsZero() && !now.Before(p.endsAt):
		r.reason = fmt.Sprintf("alert %s passed its ends_at %s", name, p.endsAt.UTC().Format(time.RFC3339))
	case x.resolveAfter > 0 && now.Sub(p.at) >= x.resolveAfter:
		r.reason = fmt.Sprintf("alert %s not confirmed for %v (resolve_after)", name, now.Sub(p.at).Round(time.Second))
	default:
		r.active, r.confidence = true, 1
		r.reason = fmt.Sprintf("alert %s firing, pushed by %s", name, p.source)
		if s := p.annotations["summary"]; s != "" {
			r.reason += ": " + s
		}
	}
	return r
}

func (x *external) read(now time.Time, _ SeriesSource, _ func(string) bool) []reading {
	out := make([]reading, 0, len(x.alerts))
	for key, p := range x.alerts {
		r := x.reading(p, now)
		if !r.active {
			delete(x.alerts, key)
		}
		out = append(out, r)
	}
	return out
}

// eventKind follows supervisor events: the condition's event makes the
// target's alert active, a resolving event ends it.
type eventKind struct {
	event        string
	resolveOn    []string
	match        signal.Labels
	resolveAfter time.Duration
	targets      map[string]*pushed
}

func newEventKind(c *config.Condition) *eventKind {
	return &eventKind{event: c.Event, resolveOn: c.ResolveOn, match: c.Labels, resolveAfter: c.ResolveAfter.D(),
		targets: map[string]*pushed{}}
}

func (e *eventKind) copyFrom(old kind) {
	if o, ok := old.(*eventKind); ok && o.event == e.event {
		for k, p := range o.targets {
			if p.labels.Matches(e.match) {
				e.targets[k] = p
			}
		}
	}
}

// TargetLabels are the labels of an event's target: service and instance
// for "web/0", service for "web", target for anything else.
func TargetLabels(target string) signal.Labels {
	if id, err := medic.ParseInstanceID(target); err == nil {
		return signal.Labels{signal.LabelService: id.Service, signal.LabelInstance: target}
	}
	if target == "" || strings.ContainsAny(target, "/ ") || target == "config" {
		return signal.Labels{"target": target}
	}
	return signal.Labels{signal.LabelService: target}
}

func (e *eventKind) observe(ev medic.Event) (_ *reading, matched bool) {
	fires := string(ev.Kind) == e.event
	if !fires && !slices.Contains(e.resolveOn, string(ev.Kind)) {
		return nil, false
	}
	l := TargetLabels(ev.Target)
	if !l.Matches(e.match) {
		return nil, false
	}
	key := l.Key()
	p := e.targets[key]
	if p == nil {
		if !fires || len(e.targets) >= MaxAlerts {
			return nil, true
		}
		p = &pushed{labels: l}
		e.targets[key] = p
	}
	p.firing, p.at, p.source = fires, ev.Time, string(ev.Kind)
	r := e.reading(p, ev.Time)
	if ev.Reason != "" {
		r.reason += ": " + ev.Reason
	}
	return &r, true
}

func (e *eventKind) reading(p *pushed, now time.Time) reading {
	r := reading{labels: p.labels}
	target := p.labels[signal.LabelInstance]
	if target == "" {
		target = p.labels[signal.LabelService] + p.labels["target"]
	}
	switch {
	case !p.firing:
		r.reason = fmt.Sprintf("%s on %s", p.source, target)
	case e.resolveAfter > 0 && now.Sub(p.at) >= e.resolveAfter:
		r.reason = fmt.Sprintf("no %s on %s for %v (resolve_after)", strings.Join(e.resolveOn, " or "), target, now.Sub(p.at).Round(time.Second))
	default:
		r.active, r.confidence = true, 1
		r.reason = fmt.Sprintf("%s on %s", p.source, target)
	}
	return r
}

func (e *eventKind) read(now time.Time, _ SeriesSource, _ func(string) bool) []reading {
	out := make([]reading, 0, len(e.targets))
	for key, p := range e.targets {
		r := e.reading(p, now)
		if !r.active {
			delete(e.targets, key)
		}
		out = append(out, r)
	}
	return out
}

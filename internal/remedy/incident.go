package remedy

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"time"
)

// Incident groups the triggers, decisions and actions about one subject
// (an instance, a service, or a condition with its labels) from the first
// firing condition until every condition resolved or a remediation was
// verified.
type Incident struct {
	ID          string    `json:"id"`
	Target      string    `json:"target"`
	State       string    `json:"state"`             // open | closed
	Outcome     string    `json:"outcome,omitempty"` // recovered | failed | escalated | resolved (by itself)
	Conditions  []string  `json:"conditions"`        // every condition seen, with labels
	Active      []string  `json:"active,omitempty"`  // conditions firing now
	Runbooks    []string  `json:"runbooks,omitempty"`
	Escalations []string  `json:"escalations,omitempty"` // guards or reasons escalated, each once
	Receivers   []string  `json:"receivers,omitempty"`   // receivers told, to resolve on close
	Opened      time.Time `json:"opened"`                // the fault's start: the first trigger's Since (or At)
	Detected    time.Time `json:"detected"`              // the first trigger's At
	Decided     time.Time `json:"decided,omitzero"`
	Acted       time.Time `json:"acted,omitzero"`
	Verified    time.Time `json:"verified,omitzero"`
	Failed      time.Time `json:"failed,omitzero"`
	Closed      time.Time `json:"closed,omitzero"`
	Timeline    []Entry   `json:"timeline"`
	// TTDSeconds is Detected − Opened; TTRSeconds is Verified (or Closed when
	// it resolved by itself) − Opened. Filled by Incidents.
	TTDSeconds float64 `json:"ttd_seconds"`
	TTRSeconds float64 `json:"ttr_seconds,omitempty"`

	running int // runs in progress or waiting for approval; not persisted
}

// Entry is one line of an incident's timeline.
type Entry struct {
	At    time.Time `json:"at"`
	Kind  string    `json:"kind"` // firing, resolved, decision, step, verify, approval, escalation, closed …
	Actor string    `json:"actor,omitempty"`
	Text  string    `json:"text"`
}

// maxTimeline bounds an incident's timeline (the audit log keeps everything).
const maxTimeline = 200

func newIncident(subject string, t Trigger) *Incident {
	return &Incident{ID: newID("inc-", 5), Target: subject, State: "open", Opened: t.start(), Detected: t.At}
}

func (in *Incident) add(at time.Time, kind, actor, text string) {
	if len(in.Timeline) >= maxTimeline {
		in.Timeline = append(in.Timeline[:maxTimeline-1], Entry{At: at, Kind: "truncated", Text: "timeline truncated; see the audit log"})
		return
	}
	in.Timeline = append(in.Timeline, Entry{At: at, Kind: kind, Actor: actor, Text: text})
}

func (in *Incident) fire(key string) {
	if !slices.Contains(in.Conditions, key) {
		in.Conditions = append(in.Conditions, key)
	}
	if !slices.Contains(in.Active, key) {
		in.Active = append(in.Active, key)
	}
}

func (in *Incident) resolve(key string) {
	in.Active = slices.DeleteFunc(in.Active, func(s string) bool { return s == key })
}

func (in *Incident) noteRunbook(name string) {
	if !slices.Contains(in.Runbooks, name) {
		in.Runbooks = append(in.Runbooks, name)
	}
}

// escalateOnce reports whether reason was not escalated yet, and marks it.
func (in *Incident) escalateOnce(reason string) bool {
	if slices.Contains(in.Escalations, reason) {
		return false
	}
	in.Escalations = append(in.Escalations, reason)
	return true
}

func (in *Incident) close(at time.Time, outcome string) {
	in.State, in.Closed = "closed", at
	if in.Outcome == "" || outcome == "recovered" {
		in.Outcome = outcome
	}
	in.add(at, "closed", "", "incident closed: "+in.Outcome)
}

// snapshot returns a copy with the durations filled, safe to hand out.
func (in *Incident) snapshot() Incident {
	c := *in
	c.Conditions = slices.Clone(in.Conditions)
	c.Active = slices.Clone(in.Active)
	c.Runbooks = slices.Clone(in.Runbooks)
	c.Escalations = slices.Clone(in.Escalations)
	c.Receivers = slices.Clone(in.Receivers)
	c.Timeline = slices.Clone(in.Timeline)
	c.TTDSeconds = in.Detected.Sub(in.Opened).Seconds()
	switch {
	case !in.Verified.IsZero():
		c.TTRSeconds = in.Verified.Sub(in.Opened).Seconds()
	case !in.Closed.IsZero() && in.Outcome == "resolved":
		c.TTRSeconds = in.Closed.Sub(in.Opened).Seconds()
	}
	return c
}

// newID returns prefix and n random bytes in hex.
func newID(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return prefix + hex.EncodeToString(b)
}

package canary

import (
	"fmt"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/verdict"
)

// Explain writes a verdict metric by metric, one line each: name, decision
// and the reason (samples, effect, p-value or likelihood ratio, why).
func Explain(v verdict.Verdict) []string {
	out := make([]string, 0, len(v.Metrics)+1)
	for _, m := range v.Metrics {
		out = append(out, fmt.Sprintf("%-18s %-8s %s", m.Name, m.Decision, m.Reason))
	}
	if v.Reason != "" {
		out = append(out, v.Reason)
	}
	return out
}

// Fields are a verdict's explanation as audit fields: the decision and one
// field per metric ("metric.errors 5xx" = "fail: 4 of 30 …").
func Fields(v verdict.Verdict) map[string]string {
	f := map[string]string{"verdict": v.Decision.String()}
	for _, m := range v.Metrics {
		f["metric."+m.Name] = m.Decision.String() + ": " + m.Reason
	}
	return f
}

// Event is one entry of a canary's timeline.
type Event struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"`
	Reason string    `json:"reason"`
}

// Report is a canary deploy as it goes and once it ended: what the CLI, the
// API and the dashboard show, and what a deploy drill measures.
type Report struct {
	Service string `json:"service"`
	// From and To are the versions of the old and the new release.
	From string `json:"from"`
	To   string `json:"to"`
	// Actor started the canary.
	Actor    string   `json:"actor"`
	Steps    []int    `json:"steps"`
	State    State    `json:"state"`
	Weights  Weights  `json:"weights"`
	Timeline []Event  `json:"timeline"`
	Explain  []string `json:"explain,omitempty"` // the newest verdict, metric by metric
	// Counts of the requests each group received, and their errors (5xx or
	// no response).
	CanaryRequests   int `json:"canary_requests"`
	CanaryErrors     int `json:"canary_errors"`
	BaselineRequests int `json:"baseline_requests"`
	BaselineErrors   int `json:"baseline_errors"`
	// SyntheticRequests of those (both groups) were medic's own synthetic
	// load; SyntheticSkipped were not sent because too many were in flight.
	SyntheticRequests int `json:"synthetic_requests,omitempty"`
	SyntheticSkipped  int `json:"synthetic_skipped,omitempty"`
	// Requests and ClientErrors are what the service's proxy answered, all
	// groups together, from the canary's start to its end (nil: no figure).
	Requests     *int64 `json:"requests,omitempty"`
	ClientErrors *int64 `json:"client_errors,omitempty"`
	// TrafficBack is when the proxy's weights were back on the stable
	// instances after a rollback; Ended when the canary and baseline groups
	// were stopped (and, for a promotion, the stable instances run the new
	// release).
	TrafficBack time.Time `json:"traffic_back,omitzero"`
	Ended       time.Time `json:"ended,omitzero"`
	// Outcome is "promoted", "rolled-back", "failed" (the promotion's rollout
	// failed), or "" while it runs.
	Outcome string `json:"outcome,omitempty"`
	Error   string `json:"error,omitempty"`
}

// TimeToVerdict is from the canary's first traffic to its verdict (the fail
// or the promotion to the last step); 0 when not decided or never served.
func (r Report) TimeToVerdict() time.Duration {
	if r.State.TrafficStart.IsZero() || r.State.DecidedAt.IsZero() {
		return 0
	}
	return r.State.DecidedAt.Sub(r.State.TrafficStart)
}

// TimeToRollback is from the canary's first traffic (or its start, when it
// never served) to the traffic back on the stable instances; 0 without a
// rollback.
func (r Report) TimeToRollback() time.Duration {
	if r.TrafficBack.IsZero() {
		return 0
	}
	from := r.State.TrafficStart
	if from.IsZero() {
		from = r.State.Started
	}
	return r.TrafficBack.Sub(from)
}

// Text renders the report for the CLI and the drill reports.
func (r Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "canary of %s: %s → %s, by %s\n", r.Service, r.From, r.To, r.Actor)
	out := r.Outcome
	if out == "" {
		out = "running"
	}
	fmt.Fprintf(&b, "phase: %s (%s)\n", r.State.Phase, out)
	fmt.Fprintf(&b, "steps: %s; weights now: %s\n", stepsText(r.Steps), r.Weights)
	fmt.Fprintf(&b, "canary: %d requests, %d errors; baseline: %d requests, %d errors\n", r.CanaryRequests, r.CanaryErrors, r.BaselineRequests, r.BaselineErrors)
	if r.SyntheticRequests > 0 || r.SyntheticSkipped > 0 {
		fmt.Fprintf(&b, "synthetic load: %d of those requests sent by medic (%d skipped: too many in flight)\n", r.SyntheticRequests, r.SyntheticSkipped)
	}
	if r.Requests != nil && r.ClientErrors != nil {
		fmt.Fprintf(&b, "clients: %d requests through the proxy, %d failed (%s)\n", *r.Requests, *r.ClientErrors, pct(*r.ClientErrors, *r.Requests))
	}
	if d := r.TimeToVerdict(); d > 0 {
		fmt.Fprintf(&b, "time to verdict: %s after the canary's first traffic\n", d.Round(time.Millisecond))
	}
	if d := r.TimeToRollback(); d > 0 {
		fmt.Fprintf(&b, "time to rollback: %s (traffic back on the stable instances)\n", d.Round(time.Millisecond))
	}
	if r.Error != "" {
		fmt.Fprintf(&b, "error: %s\n", r.Error)
	}
	fmt.Fprintf(&b, "reason: %s\n", r.State.Reason)
	if len(r.Explain) > 0 {
		b.WriteString("verdict:\n")
		for _, l := range r.Explain {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	if len(r.Timeline) > 0 {
		b.WriteString("timeline:\n")
		start := r.State.Started
		for _, e := range r.Timeline {
			fmt.Fprintf(&b, "  +%-9s %-16s %s\n", e.At.Sub(start).Round(time.Millisecond), e.Kind, e.Reason)
		}
	}
	return b.String()
}

func stepsText(steps []int) string {
	s := make([]string, len(steps))
	for i, v := range steps {
		s[i] = fmt.Sprintf("%d%%", v)
	}
	return strings.Join(s, " → ")
}

func pct(k, n int64) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", 100*float64(k)/float64(n))
}

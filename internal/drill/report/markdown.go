// Package report renders a drill's result for people: a self-contained HTML
// page (the timeline of fault, detection, actions and recovery drawn over
// the latency and error-rate chart, as inline SVG, with no script and no
// outside resource) and a Markdown summary. The JSON report is the
// drill.Result itself.
package report

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/drill/load"
)

// Files are the names Write gives the three reports in a directory.
const (
	JSONFile     = "report.json"
	HTMLFile     = "report.html"
	MarkdownFile = "report.md"
)

// Secs formats an optional duration in seconds: "0.45s", or "-" when nil.
func Secs(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2fs", *v)
}

// ms formats seconds as milliseconds with sensible precision.
func ms(s float64) string {
	switch v := s * 1000; {
	case v == 0:
		return "0"
	case v < 10:
		return fmt.Sprintf("%.2fms", v)
	case v < 1000:
		return fmt.Sprintf("%.0fms", v)
	default:
		return fmt.Sprintf("%.2fs", s)
	}
}

func target(r *drill.Result) string {
	if r.Subject.Host != "" {
		return r.Subject.Host
	}
	if r.Subject.Instance != "" {
		return r.Subject.Instance
	}
	return r.Service
}

func ref(o *drill.Observation, inject time.Time) string {
	if o == nil {
		return ""
	}
	s := fmt.Sprintf("%s on %s", o.Kind, o.Target)
	if o.Seq > 0 {
		s += fmt.Sprintf(", audit #%d", o.Seq)
	}
	return " (" + s + ")"
}

func plus(t, from time.Time) string {
	if t.IsZero() || from.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%+.2fs", t.Sub(from).Seconds())
}

func loadText(l drill.LoadSpec) string {
	switch {
	case l.URL == "":
		return l.Note
	case l.RPS > 0:
		return fmt.Sprintf("%.0f requests/s, open loop, through %s", l.RPS, l.URL)
	}
	return fmt.Sprintf("%d closed-loop connections through %s", l.Connections, l.URL)
}

// Markdown writes the summary of r.
func Markdown(w io.Writer, r *drill.Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Drill %d: %s on %s — %s\n\n", r.ID, r.Scenario, target(r), strings.ToUpper(r.State))
	fmt.Fprintf(&b, "%s\n\n", r.Definition.Description)
	fmt.Fprintf(&b, "| | |\n|---|---|\n")
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, strings.ReplaceAll(v, "|", "\\|")) }
	row("failure mode", r.FailureMode)
	row("started", r.Marks.Start.UTC().Format(time.RFC3339)+" by "+r.Actor)
	row("fault", r.Definition.Fault.Kind+params(r.Definition.Fault.Params))
	row("detected after", Secs(r.TTD)+ref(r.Detected, r.Marks.Inject))
	row("recovered after", Secs(r.TTR)+ref(r.Recovered, r.Marks.Inject))
	row("back at full capacity after", Secs(r.FullCapacity))
	row("client impact", Secs(r.ClientImpact)+fmt.Sprintf(" (requests failed or slower than %s)", ms(r.SLO)))
	row("client-visible errors", fmt.Sprintf("%d of %d requests", r.ClientErrors, r.Requests))
	if w := r.Writes; w != nil {
		row("acknowledged writes", fmt.Sprintf("%d, %d lost (sync mode: %v)", w.Acked, w.Lost, w.Lossless))
		row("write outage (RTO)", Secs(w.RTO))
	}
	names := make([]string, 0, len(r.Figures))
	for k := range r.Figures {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		row(k, strconv.FormatFloat(r.Figures[k], 'f', -1, 64))
	}
	row("load", loadText(r.Load))
	row("deadline", r.Definition.Deadline.String())
	if len(r.Reasons) > 0 {
		fmt.Fprintf(&b, "\n## Why it %s\n\n", map[bool]string{true: "passed", false: "failed"}[r.Passed])
		for _, why := range r.Reasons {
			fmt.Fprintf(&b, "- %s\n", why)
		}
	}
	fmt.Fprintf(&b, "\n## Latency\n\n| phase | requests | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|\n")
	for _, p := range []struct {
		name string
		s    load.Summary
	}{{"before", r.Latency.Before}, {"during", r.Latency.During}, {"after", r.Latency.After}} {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s |\n", p.name, p.s.Count, ms(p.s.P50), ms(p.s.P90), ms(p.s.P99), ms(p.s.P999), ms(p.s.Max))
	}
	fmt.Fprintf(&b, "\n## What the drill did\n\n")
	for _, s := range r.Steps {
		fmt.Fprintf(&b, "- %s %s%s: %s%s\n", plus(s.Time, r.Marks.Inject), s.Action, seq(s.Seq), s.Detail, errText(s.Error))
	}
	fmt.Fprintf(&b, "\n## What medic did\n\n")
	if len(r.Actions) == 0 {
		fmt.Fprintf(&b, "- nothing\n")
	}
	for _, a := range r.Actions {
		fmt.Fprintf(&b, "- %s%s %s %s (%s): %s\n", plus(a.Time, r.Marks.Inject), seq(a.Seq), a.Kind, a.Target, actor(a.Actor), a.Reason)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func params(p map[string]string) string {
	if len(p) == 0 {
		return ""
	}
	var kv []string
	for k, v := range p {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return " (" + strings.Join(kv, ", ") + ")"
}

func seq(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" #%d", n)
}

func actor(a string) string {
	if a == "" {
		return "observed by the drill"
	}
	return a
}

func errText(e string) string {
	if e == "" {
		return ""
	}
	return " — error: " + e
}

package drill

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/drill/load"
)

// Phases are the latency figures before the injection, while the fault is
// injected, and after it was removed.
type Phases struct {
	Before load.Summary `json:"before"`
	During load.Summary `json:"during"`
	After  load.Summary `json:"after"`
}

// Bucket is one slice of the load over time, for charts.
type Bucket struct {
	T        float64 `json:"t"` // seconds since the drill started
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	P50      float64 `json:"p50"`
	P99      float64 `json:"p99"`
	Max      float64 `json:"max"`
}

// Measurement is what Evaluate computes from a timeline. Durations are in
// seconds from the injection; nil means it did not happen.
type Measurement struct {
	Passed  bool     `json:"passed"`
	Reasons []string `json:"reasons,omitempty"`
	// TTD: injection to the first detection event.
	TTD *float64 `json:"ttd_seconds"`
	// TTR: injection to the scenario's recovery (the last Recover event).
	TTR *float64 `json:"ttr_seconds"`
	// FullCapacity: injection to every desired instance ready and in rotation
	// again; nil when capacity was never lost.
	FullCapacity *float64 `json:"full_capacity_seconds"`
	// ClientImpact: injection to the end of the last failed or slow (over SLO)
	// request; 0 when clients saw nothing.
	ClientImpact *float64       `json:"client_impact_seconds"`
	Requests     int            `json:"requests"`
	ClientErrors int            `json:"client_errors"`
	ErrorKinds   map[string]int `json:"client_error_kinds,omitempty"`
	SLO          float64        `json:"slo_seconds"`
	Latency      Phases         `json:"latency"`
	Detected     *Observation   `json:"detected,omitempty"`
	Recovered    *Observation   `json:"recovered,omitempty"`
	// Actions the agent took or decided (restarts, stops, ejections, runbook
	// steps), with their audit sequence numbers.
	Actions []Observation `json:"actions"`
	Series  []Bucket      `json:"series"`
	// Writes: the database write load's figures (database drills only).
	Writes *WriteFigures `json:"writes,omitempty"`
	// Figures the injector measured itself (restore drills: restore_seconds,
	// recover_seconds, rto_seconds, data_loss_seconds, missing_writes …).
	Figures map[string]float64 `json:"figures,omitempty"`
}

// actionKinds are the events that are decisions or actions of the agent.
var actionKinds = map[string]bool{
	"instance.restart": true, "instance.stopping": true, "instance.started": true, "instance.crashloop": true,
	"instance.giveup": true, "instance.stopped": true, "service.rolledback": true, "service.scaled": true, "api.action": true,
	ObservedOut: true, ObservedIn: true, ObservedAvoided: true, ObservedUsed: true, ObservedFailing: true,
}

func isAction(o Observation) bool {
	if strings.HasPrefix(o.Actor, "drill:") {
		return false
	}
	return actionKinds[o.Kind] || (strings.HasPrefix(o.Kind, "remedy.") && o.Kind != "remedy.deferred") || strings.HasPrefix(o.Kind, "db.")
}

func secs(t, from time.Time) *float64 {
	v := t.Sub(from).Seconds()
	return &v
}

// Evaluate judges a finished drill (pure). Its reasons cover the scenario's
// expectations; the runner adds its own (injection or restoration failures,
// an abort).
func Evaluate(in Input) Measurement {
	sc, mk := in.Scenario, in.Marks
	p := Track(in)
	var m Measurement
	fail := func(format string, args ...any) { m.Reasons = append(m.Reasons, fmt.Sprintf(format, args...)) }
	if p.Detected != nil {
		m.Detected, m.TTD = p.Detected, secs(p.Detected.Time, mk.Inject)
	}
	if p.Recovered != nil {
		m.Recovered, m.TTR = p.Recovered, secs(p.Recovered.Time, mk.Inject)
	}
	if p.Full != nil {
		m.FullCapacity = secs(p.Full.Time, mk.Inject)
	}
	for _, o := range in.Events {
		if !o.Time.Before(mk.Start) && isAction(o) {
			m.Actions = append(m.Actions, o)
		}
	}
	measureLoad(&m, in)

	switch {
	case mk.Inject.IsZero():
		fail("the fault was never injected")
	case p.Detected == nil:
		fail("not detected: no %s within %v of the injection", orList(sc.Detect), sc.Deadline)
	case p.Recovered == nil:
		fail("detected after %.2fs but not recovered within %v: no %s", *m.TTD, sc.Deadline, p.Waiting)
	case m.TTR != nil && *m.TTR > sc.Deadline.D().Seconds():
		fail("recovered after %.2fs, past the deadline of %v", *m.TTR, sc.Deadline)
	}
	for _, o := range p.Forbidden {
		fail("%s on %s at %s while the fault was injected (%s)", o.Kind, o.Target, since(o.Time, mk.Inject), o.Reason)
	}
	if p.Degraded != nil && p.Full == nil && !mk.Inject.IsZero() {
		fail("not back at full capacity: lost at %s and not regained by the end (settle %v after the fault was removed)",
			since(p.Degraded.Time, mk.Inject), sc.Settle)
	}
	if m.Requests > 0 {
		rate := float64(m.ClientErrors) / float64(m.Requests)
		if rate > sc.MaxErrorRate {
			fail("client-visible errors: %d of %d requests (%.2f%%), allowed %.2f%% (%s)",
				m.ClientErrors, m.Requests, 100*rate, 100*sc.MaxErrorRate, kinds(m.ErrorKinds))
		}
	}
	if r, l := sc.MaxLatencyRatio, m.Latency; r > 0 && l.Before.Count > 0 && l.During.Count > 0 {
		// Normal is the worse of before and after the fault: a shared host
		// that slows down on its own during the drill is not blamed on the fault.
		normal, when := l.Before.P99, "before"
		if l.After.Count > 0 && l.After.P99 > normal {
			normal, when = l.After.P99, "after"
		}
		if l.During.P99 > r*normal {
			fail("p99 latency %.1fms while the fault was injected, %.2f× the normal %.1fms (p99 %s the fault); allowed %.2f×",
				1000*l.During.P99, l.During.P99/normal, 1000*normal, when, r)
		}
	}
	m.Passed = len(m.Reasons) == 0
	return m
}

func orList(ms []Match) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = m.String()
	}
	return strings.Join(s, " or ")
}

func kinds(k map[string]int) string {
	var s []string
	for name, n := range k {
		s = append(s, fmt.Sprintf("%d %s", n, name))
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// measureLoad fills the client-side figures from the samples.
func measureLoad(m *Measurement, in Input) {
	mk := in.Marks
	var before, during, after load.Histogram
	for _, s := range in.Samples {
		switch {
		case s.Intended.Before(mk.Inject) || mk.Inject.IsZero():
			before.Record(s.Latency)
		case mk.Restore.IsZero() || s.Intended.Before(mk.Restore):
			during.Record(s.Latency)
		default:
			after.Record(s.Latency)
		}
	}
	m.Latency = Phases{Before: before.Summary(), During: during.Summary(), After: after.Summary()}
	slo := in.SLO
	if slo == 0 {
		slo = max(10*before.Quantile(0.99), 100*time.Millisecond)
	}
	m.SLO = slo.Seconds()
	var lastBad time.Time
	for _, s := range in.Samples {
		m.Requests++
		if !s.OK {
			m.ClientErrors++
			if m.ErrorKinds == nil {
				m.ErrorKinds = map[string]int{}
			}
			m.ErrorKinds[s.Err]++
		}
		if !mk.Inject.IsZero() && !s.Intended.Before(mk.Inject) && (!s.OK || s.Latency > slo) && s.Done().After(lastBad) {
			lastBad = s.Done()
		}
	}
	if !mk.Inject.IsZero() && len(in.Samples) > 0 {
		zero := 0.0
		m.ClientImpact = &zero
		if !lastBad.IsZero() {
			m.ClientImpact = secs(lastBad, mk.Inject)
		}
	}
	m.Series = series(in.Samples, mk)
}

// series buckets the samples by due time: at most about 300 buckets, none
// shorter than 100ms.
func series(samples []load.Sample, mk Marks) []Bucket {
	if len(samples) == 0 || mk.Start.IsZero() {
		return nil
	}
	end := mk.End
	for _, s := range samples {
		if s.Intended.After(end) {
			end = s.Intended
		}
	}
	width := max(100*time.Millisecond, end.Sub(mk.Start)/300).Round(100 * time.Millisecond)
	n := int(end.Sub(mk.Start)/width) + 1
	hs := make([]load.Histogram, n)
	out := make([]Bucket, n)
	for _, s := range samples {
		i := int(s.Intended.Sub(mk.Start) / width)
		if i < 0 || i >= n {
			continue
		}
		hs[i].Record(s.Latency)
		out[i].Requests++
		if !s.OK {
			out[i].Errors++
		}
	}
	for i := range out {
		out[i].T = (time.Duration(i) * width).Seconds()
		out[i].P50, out[i].P99, out[i].Max = hs[i].Quantile(0.5).Seconds(), hs[i].Quantile(0.99).Seconds(), hs[i].Max().Seconds()
	}
	return out
}

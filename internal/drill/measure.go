package drill

import (
	"fmt"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/drill/load"
)

// Observation is one entry of a drill's timeline: an event of the agent
// (from the audit log, with its sequence number) or a state change the drill
// observed itself by polling (Seq 0, kinds observed.*).
type Observation struct {
	Time   time.Time         `json:"time"`
	Seq    int64             `json:"seq,omitempty"`
	Kind   string            `json:"kind"`
	Target string            `json:"target"`
	Actor  string            `json:"actor,omitempty"`
	Reason string            `json:"reason,omitempty"`
	Fields map[string]string `json:"fields,omitempty"`
}

// Subject names what a drill is aimed at, for matching "on" targets.
type Subject struct {
	Service    string `json:"service"`
	Instance   string `json:"instance,omitempty"` // "web/1" for instance scope
	Dependency string `json:"dependency,omitempty"`
	// Host is the fleet host of a fleet drill, as its events name it:
	// "fleet/<fleet>/<host>".
	Host string `json:"host,omitempty"`
	// Member is the etcd member an etcd-member-loss drill stops.
	Member string `json:"member,omitempty"`
}

func belongs(target, service string) bool {
	return service != "" && (target == service || strings.HasPrefix(target, service+"/"))
}

// Matches reports whether o is an event m selects for subject s.
func (m Match) Matches(o Observation, s Subject) bool {
	if !kindMatches(m.Kind, o.Kind) {
		return false
	}
	switch m.On {
	case "", "target":
		want := s.Instance
		if want == "" {
			want = s.Service
		}
		if o.Target != want {
			return false
		}
	case "service":
		if !belongs(o.Target, s.Service) {
			return false
		}
	case "dependency":
		if !belongs(o.Target, s.Dependency) {
			return false
		}
	case "host":
		if s.Host == "" || o.Target != s.Host {
			return false
		}
	case "any":
	default:
		return false
	}
	for k, v := range m.Fields {
		if o.Fields[k] != v {
			return false
		}
	}
	return strings.HasPrefix(o.Actor, m.Actor)
}

// kindMatches applies a Match's kind: alternatives separated by "|", each
// exact or a prefix followed by "*".
func kindMatches(pattern, kind string) bool {
	for _, alt := range strings.Split(pattern, "|") {
		if p, ok := strings.CutSuffix(alt, "*"); ok && strings.HasPrefix(kind, p) || alt == kind {
			return true
		}
	}
	return false
}

// Marks are the drill's own moments. Zero fields have not happened yet.
type Marks struct {
	Start   time.Time `json:"start"`
	Inject  time.Time `json:"inject"`
	Restore time.Time `json:"restore"`
	End     time.Time `json:"end"`
}

// Input is everything a verdict is computed from.
type Input struct {
	Scenario Scenario
	Subject  Subject
	Marks    Marks
	Events   []Observation // in time order
	Samples  []load.Sample
	// SLO is the latency above which a request counts as impaired; 0 derives
	// it from the baseline: max(10 × p99 before the injection, 100ms).
	SLO time.Duration
}

// Progress is what the timeline shows so far.
type Progress struct {
	Detected *Observation // the first Detect match after the injection
	// Recovered is the last step of the Recover sequence once all matched
	// after the injection (the detection itself when Recover is empty, or
	// when the steps completed before the detection); nil until detected.
	Recovered *Observation
	// Waiting is the Recover step not seen yet ("" when recovered).
	Waiting string
	// Forbidden holds Forbid matches between the injection and the restoration.
	Forbidden []Observation
	// Degraded is the first loss of full capacity after the injection;
	// Full the return to it that lasted (none is seen losing it again).
	Degraded, Full *Observation
}

// Track scans the timeline (pure: it only reads in).
func Track(in Input) Progress {
	var p Progress
	sc, s, mk := in.Scenario, in.Subject, in.Marks
	if mk.Inject.IsZero() {
		return p
	}
	step := 0
	for i := range in.Events {
		o := &in.Events[i]
		if o.Time.Before(mk.Inject) {
			continue
		}
		injected := mk.Restore.IsZero() || o.Time.Before(mk.Restore)
		if injected && !strings.HasPrefix(o.Actor, "drill:") {
			for _, m := range sc.Forbid {
				if m.Matches(*o, s) {
					p.Forbidden = append(p.Forbidden, *o)
					break
				}
			}
		}
		switch {
		case o.Kind == ObservedDegraded && belongs(o.Target, s.Service):
			if p.Degraded == nil {
				p.Degraded = o
			}
			p.Full = nil // lost again: only a return that lasts counts
		case o.Kind == ObservedFull && p.Degraded != nil && belongs(o.Target, s.Service):
			p.Full = o
		}
		if p.Detected == nil {
			for _, m := range sc.Detect {
				if m.Matches(*o, s) {
					p.Detected = o
					break
				}
			}
		}
		// Recovery steps count from the injection, not from the detection:
		// the proxy may take an instance out of traffic a moment before the
		// supervisor's readiness event is stamped.
		if step < len(sc.Recover) && sc.Recover[step].Matches(*o, s) {
			step++
			if step == len(sc.Recover) {
				p.Recovered = o
			}
		}
	}
	switch {
	case p.Detected == nil:
		p.Recovered = nil // recovered from what? the verdict says "not detected"
	case len(sc.Recover) == 0:
		p.Recovered = p.Detected
	case p.Recovered != nil && p.Recovered.Time.Before(p.Detected.Time):
		p.Recovered = p.Detected // recovery is never earlier than its detection
	}
	if p.Recovered == nil && step < len(sc.Recover) {
		p.Waiting = sc.Recover[step].String()
	}
	return p
}

func since(t, from time.Time) string { return fmt.Sprintf("+%.2fs", t.Sub(from).Seconds()) }

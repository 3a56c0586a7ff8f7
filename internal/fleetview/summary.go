// Package fleetview is the fleet's one view: each agent publishes a compact
// summary of itself (its services, its newest events, its scorecard answers,
// its audit head) in etcd under its membership lease, and any agent reads
// every host's summary from a watch, so that `medic status --fleet`, `medic
// events --fleet`, the dashboard and `medic scorecard --fleet` show the whole
// fleet from any host without calling the other hosts. It also anchors each
// host's audit chain head in etcd (anchor.go), so that a rewrite of one
// host's log is found from any other (docs/fleet.md, One view).
//
// The merging is pure (Combine, Card); Publisher and Follow do the I/O.
package fleetview

import (
	"encoding/json"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/fleet"
)

// Bounds of a summary (docs/fleet.md): a summary larger than MaxBytes drops
// its oldest events, then its last services, until it fits.
const (
	MaxServices  = 100      // services listed per host
	MaxEvents    = 20       // newest events per host
	MaxText      = 160      // bytes of an event's reason or an answer's evidence
	MaxBytes     = 32 << 10 // bytes of one host's summary in etcd
	MaxAnchors   = 64       // heads kept in one host's anchor
	PageRecords  = 1000     // audit records fetched per request by verify --fleet
	PublishEvery = time.Second * 2
)

// Summary is what one host publishes about itself.
type Summary struct {
	Host string    `json:"host"`
	At   time.Time `json:"at"` // when the host wrote it (its clock)
	// API is the base URL other hosts reach this agent's API at; empty when
	// it listens on loopback only.
	API       string     `json:"api,omitempty"`
	Services  []Service  `json:"services"`
	Events    []Event    `json:"events"`
	Scorecard []Answer   `json:"scorecard,omitempty"` // nil: not evaluated yet
	Audit     audit.Head `json:"audit"`
	Truncated bool       `json:"truncated,omitempty"` // events or services were dropped to fit MaxBytes
}

// Service is one supervised service on the host.
type Service struct {
	Name    string `json:"name"`
	Desired int    `json:"desired"`
	Running int    `json:"running"`
	Ready   int    `json:"ready"`
	Fleet   bool   `json:"fleet,omitempty"` // placed fleet-wide
}

// Event is one recent event of the host, its reason cut to MaxText.
type Event struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Target string    `json:"target,omitempty"`
	Actor  string    `json:"actor,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

// Answer is the host's answer to one scorecard question.
type Answer struct {
	ID     string `json:"id"`
	Answer string `json:"answer"` // yes, no, unknown
	Why    string `json:"why,omitempty"`
}

// Cut shortens s to at most n bytes on a rune boundary, marking the cut.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n-len("…")]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// Fit applies the bounds: at most MaxServices services, the newest
// MaxEvents events (oldest first), texts cut to MaxText, then drops the
// oldest events and then the last services until the JSON fits MaxBytes.
// It returns the JSON.
func Fit(s Summary) (Summary, []byte) {
	s.Services = slices.Clone(s.Services)
	slices.SortFunc(s.Services, func(a, b Service) int { return strings.Compare(a.Name, b.Name) })
	if len(s.Services) > MaxServices {
		s.Services, s.Truncated = s.Services[:MaxServices], true
	}
	if len(s.Events) > MaxEvents {
		s.Events, s.Truncated = s.Events[len(s.Events)-MaxEvents:], true
	}
	s.Events = slices.Clone(s.Events)
	for i := range s.Events {
		s.Events[i].Reason = Cut(s.Events[i].Reason, MaxText)
		s.Events[i].Target = Cut(s.Events[i].Target, MaxText)
	}
	s.Scorecard = slices.Clone(s.Scorecard)
	for i := range s.Scorecard {
		s.Scorecard[i].Why = Cut(s.Scorecard[i].Why, MaxText)
	}
	for {
		b, err := json.Marshal(s)
		if err != nil {
			panic(err) // plain data
		}
		switch {
		case len(b) <= MaxBytes:
			return s, b
		case len(s.Events) > 0:
			s.Events, s.Truncated = s.Events[1:], true
		case len(s.Services) > 0:
			s.Services, s.Truncated = s.Services[:len(s.Services)-1], true
		default:
			return s, b
		}
	}
}

// Host is one host in the fleet's view: its membership and, while its
// lease lives, its summary.
type Host struct {
	fleet.Member
	Self    bool     `json:"self,omitempty"`
	Summary *Summary `json:"summary,omitempty"` // nil: none published (not up, or not yet)
	// AgeSeconds is how old the summary is by the viewer's clock.
	AgeSeconds float64 `json:"age_seconds,omitempty"`
}

// Status is the whole fleet from one agent.
type Status struct {
	Fleet string `json:"fleet"`
	Self  string `json:"self"`
	// Watching: the viewing agent's watches have delivered; until then the
	// list is not the fleet.
	Watching bool   `json:"watching"`
	Hosts    []Host `json:"hosts"`
}

// Combine joins the membership and the summaries, by host name. A summary of
// a host not in the membership (its key is seen before the host's) is
// listed as up.
func Combine(st fleet.Status, sums map[string]Summary, watching bool, now time.Time) Status {
	out := Status{Fleet: st.Fleet, Self: st.Self, Watching: st.Watching && watching}
	seen := map[string]bool{}
	for _, m := range st.Hosts {
		h := Host{Member: m, Self: m.Host == st.Self}
		if s, ok := sums[m.Host]; ok {
			h.Summary = &s
			h.AgeSeconds = max(now.Sub(s.At).Seconds(), 0)
		}
		seen[m.Host] = true
		out.Hosts = append(out.Hosts, h)
	}
	for name, s := range sums {
		if seen[name] {
			continue
		}
		s := s
		out.Hosts = append(out.Hosts, Host{Member: fleet.Member{Info: fleet.Info{Host: name}, State: fleet.Up},
			Self: name == st.Self, Summary: &s, AgeSeconds: max(now.Sub(s.At).Seconds(), 0)})
	}
	slices.SortFunc(out.Hosts, func(a, b Host) int { return strings.Compare(a.Host, b.Host) })
	return out
}

// Events merges the hosts' recent events, oldest first, each named by host.
func (s Status) Events() []HostEvent {
	var out []HostEvent
	for _, h := range s.Hosts {
		if h.Summary == nil {
			continue
		}
		for _, e := range h.Summary.Events {
			out = append(out, HostEvent{Host: h.Host, Event: e})
		}
	}
	slices.SortStableFunc(out, func(a, b HostEvent) int { return a.Time.Compare(b.Time) })
	return out
}

// HostEvent is an event of one host in the fleet's merged list.
type HostEvent struct {
	Host string `json:"host"`
	Event
}

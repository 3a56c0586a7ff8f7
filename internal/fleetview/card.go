package fleetview

import (
	"fmt"
	"time"

	"github.com/medic-dev/medic/internal/fleet"
)

// Card is the fleet's scorecard: one answer per question from every host's
// own answer.
type Card struct {
	Time    time.Time  `json:"time"`
	Yes     int        `json:"yes"`
	No      int        `json:"no"`
	Unknown int        `json:"unknown"`
	Items   []CardItem `json:"items"`
	// Excluded names the lost hosts, which are not asked: their share of
	// the fleet's services runs elsewhere.
	Excluded []string `json:"excluded,omitempty"`
}

// CardItem is one question across the fleet.
type CardItem struct {
	ID     string       `json:"id"`
	Answer string       `json:"answer"`
	Hosts  []HostAnswer `json:"hosts"`
}

// HostAnswer is one host's answer to a question, or why it has none.
type HostAnswer struct {
	Host   string `json:"host"`
	Answer string `json:"answer"`
	Why    string `json:"why,omitempty"`
}

// Answers.
const (
	Yes     = "yes"
	No      = "no"
	Unknown = "unknown"
)

// FleetCard answers each question of ids for the fleet: "no" when a host
// answers no; "yes" only when every host that is not lost has published its
// own answer and it is yes; "unknown" otherwise — a host that is up but has
// not published, a suspect host (its summary went with its lease), or a
// viewer whose watch has not delivered. Lost hosts are excluded and named.
// A fleet with no host to ask answers unknown.
func FleetCard(st Status, ids []string, now time.Time) Card {
	c := Card{Time: now}
	var asked []Host
	for _, h := range st.Hosts {
		if h.State == fleet.Lost {
			c.Excluded = append(c.Excluded, h.Host)
			continue
		}
		asked = append(asked, h)
	}
	for _, id := range ids {
		it := CardItem{ID: id, Answer: Yes}
		if !st.Watching {
			it.Answer = Unknown
			it.Hosts = append(it.Hosts, HostAnswer{Host: st.Self, Answer: Unknown, Why: "this agent has not read the fleet from etcd yet"})
		}
		if len(asked) == 0 {
			it.Answer = Unknown
		}
		for _, h := range asked {
			ha := hostAnswer(h, id)
			it.Hosts = append(it.Hosts, ha)
			switch {
			case ha.Answer == No:
				it.Answer = No
			case ha.Answer != Yes && it.Answer == Yes:
				it.Answer = Unknown
			}
		}
		switch it.Answer {
		case Yes:
			c.Yes++
		case No:
			c.No++
		default:
			c.Unknown++
		}
		c.Items = append(c.Items, it)
	}
	return c
}

func hostAnswer(h Host, id string) HostAnswer {
	switch {
	case h.Summary == nil && h.State != fleet.Up:
		return HostAnswer{Host: h.Host, Answer: Unknown, Why: fmt.Sprintf("host %s: its summary went with its lease", h.State)}
	case h.Summary == nil:
		return HostAnswer{Host: h.Host, Answer: Unknown, Why: "no summary published yet"}
	case h.Summary.Scorecard == nil:
		return HostAnswer{Host: h.Host, Answer: Unknown, Why: "its scorecard is not evaluated yet"}
	}
	for _, a := range h.Summary.Scorecard {
		if a.ID != id {
			continue
		}
		switch a.Answer {
		case Yes, No:
			return HostAnswer{Host: h.Host, Answer: a.Answer, Why: a.Why}
		}
		return HostAnswer{Host: h.Host, Answer: Unknown, Why: a.Why}
	}
	return HostAnswer{Host: h.Host, Answer: Unknown, Why: "the host does not answer this question (another version?)"}
}

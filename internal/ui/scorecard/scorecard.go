// Package scorecard answers the questions every production service should
// answer "yes" to — can an instance die without user impact, can the
// database fail over, is every call bounded, is recovery proven — from the
// running config and the recorded drills. Each answer carries its evidence
// and, when it is not "yes", what to change.
//
// Evaluate is a pure function of its Input and the time: the API, the CLI
// and the tests all call it the same way.
package scorecard

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// Answer is a question's answer. The zero value is Unknown.
type Answer string

const (
	Unknown Answer = "unknown" // not enough evidence either way (e.g. no drill recorded yet)
	Yes     Answer = "yes"
	No      Answer = "no"
)

// rank orders answers from best to worst: an item is as bad as its worst subject.
func (a Answer) rank() int {
	switch a {
	case Yes:
		return 0
	case No:
		return 2
	}
	return 1
}

// Input is what the scorecard is computed from.
type Input struct {
	// Config is the running config with defaults applied.
	Config *config.Config
	// DrillsKnown says whether drill records could be read at all; when false,
	// answers that need a drill are Unknown rather than No.
	DrillsKnown bool
	// Drills are the recorded drill runs, in any order.
	Drills []DrillRun
	// Previous, when not nil, says which services keep a previous known-good
	// version to roll back to (the running supervisor knows; a config file does not).
	Previous map[string]bool
	// Listening, when known, is each proxy's bound address by service (the
	// config may say 127.0.0.1:0).
	Listening map[string]string
	// Objectives are the declared recovery objectives by service or database name.
	Objectives map[string]Objective
	// Databases are the database clusters medic manages.
	Databases []Database
	// Required lists the ids of the items a CI gate fails on; nil means DefaultRequired.
	Required []string
	// Dependencies are the calls the running agent saw through each dependency
	// listener; nil when not known (offline), empty when none are declared.
	Dependencies []DependencySeen
	// Bypasses are the outbound connections the running agent saw an
	// instance hold to addresses that are not medic's (from /proc); nil when
	// not known. A snapshot: none seen proves nothing.
	Bypasses []Bypass
	// Releases are the rollouts recorded in the release history (deploys,
	// reloads, rollbacks), in any order.
	Releases []ReleaseRun
}

// ReleaseRun is one recorded rollout of a release and what clients saw.
type ReleaseRun struct {
	Service string    `json:"service"`
	Version string    `json:"version"`
	Source  string    `json:"source"`  // config, deploy or rollback
	Outcome string    `json:"outcome"` // live, failed, superseded
	Ended   time.Time `json:"ended"`
	// Seconds the rollout took.
	DurationSeconds float64 `json:"duration_seconds"`
	// Requests and ClientErrors through the proxy during the rollout; Requests 0: not measured under load.
	Requests     int64 `json:"requests"`
	ClientErrors int64 `json:"client_errors"`
}

// DependencySeen is one dependency listener's figures, from the running agent.
type DependencySeen struct {
	Service    string        `json:"service"`
	Dependency string        `json:"dependency"`
	Timeout    time.Duration `json:"timeout"`   // the bound of every call
	Calls      uint64        `json:"calls"`     // calls seen, any outcome
	TimedOut   uint64        `json:"timed_out"` // calls cut at the timeout
}

// Bypass is one remote address a service's instances were connected to
// without going through medic.
type Bypass struct {
	Service     string `json:"service"`
	Remote      string `json:"remote"`
	Connections int    `json:"connections"`
}

// dependency returns what the agent saw of service's dependency dep.
func (in Input) dependency(service, dep string) (DependencySeen, bool) {
	for _, d := range in.Dependencies {
		if d.Service == service && d.Dependency == dep {
			return d, true
		}
	}
	return DependencySeen{}, false
}

// DrillRun is one recorded drill, as `medic drill --json` reports it.
type DrillRun struct {
	Scenario     string    `json:"scenario"`
	Service      string    `json:"service"` // the service or database drilled
	Passed       bool      `json:"passed"`
	Started      time.Time `json:"started"`
	TTDSeconds   float64   `json:"ttd_seconds"`
	TTRSeconds   float64   `json:"ttr_seconds"`
	ClientErrors int       `json:"client_errors"`
	// UnderLoad: client traffic flowed through the proxy during the drill.
	UnderLoad bool `json:"under_load"`
	// DataLossSeconds is the measured recovery point (databases); nil when not measured.
	DataLossSeconds *float64 `json:"data_loss_seconds,omitempty"`
}

// Objective is a declared recovery time and recovery point objective.
type Objective struct {
	RTO time.Duration `json:"rto"`
	RPO time.Duration `json:"rpo"`
}

// Database is one managed database cluster, as far as the scorecard cares.
type Database struct {
	Name string `json:"name"`
	// ManagedFailover: medic promotes a standby under an etcd lease and fences the old primary.
	ManagedFailover bool `json:"managed_failover"`
	// ClientAccess is how applications reach the primary: "proxy" (a medic
	// proxy that routes by role), "multi-host-dsn" (target_session_attrs=read-write),
	// or "" (one fixed host: a failover needs an application change).
	ClientAccess string `json:"client_access"`
}

// Card is the scorecard: one item per question.
type Card struct {
	Time    time.Time `json:"time"`
	Yes     int       `json:"yes"`
	No      int       `json:"no"`
	Unknown int       `json:"unknown"`
	// Passed is false when a required item answers No.
	Passed bool   `json:"passed"`
	Items  []Item `json:"items"`
}

// Item is one question and its answer, the worst over its subjects.
type Item struct {
	ID       string    `json:"id"`
	N        int       `json:"n"` // the question's number, 1–8
	Question string    `json:"question"`
	Answer   Answer    `json:"answer"`
	Required bool      `json:"required"`
	Subjects []Subject `json:"subjects"`
}

// Subject is the answer for one service, database or the agent as a whole.
type Subject struct {
	Name     string   `json:"name"`
	Answer   Answer   `json:"answer"`
	Evidence []string `json:"evidence"`
	Fix      []string `json:"fix,omitempty"` // what to change when the answer is not yes
}

// Item ids, in question order.
const (
	InstanceLoss  = "instance-loss"
	DBFailover    = "db-failover"
	Readiness     = "readiness"
	Timeouts      = "timeouts"
	ZeroDowntime  = "zero-downtime"
	Rollback      = "rollback"
	Objectives    = "objectives"
	FailoverDrill = "failover-drill"
)

// IDs lists every item id in question order.
var IDs = []string{InstanceLoss, DBFailover, Readiness, Timeouts, ZeroDowntime, Rollback, Objectives, FailoverDrill}

// DefaultRequired are the items a gate fails on by default. Timeouts is
// answered from the calls a running agent saw, never from the config alone:
// offline it is unknown, which does not fail a gate.
var DefaultRequired = []string{InstanceLoss, Readiness, Timeouts, ZeroDowntime}

// question is one question: how to answer it for each subject.
type question struct {
	id, text string
	answer   func(in Input, now time.Time) []Subject
}

var questions = []question{
	{InstanceLoss, "Can any single instance die without user impact?", instanceLoss},
	{DBFailover, "Can the primary database fail over without application changes?", dbFailover},
	{Readiness, "Do readiness checks verify that the instance can serve?", readiness},
	{Timeouts, "Is every outbound call bounded by a timeout?", timeouts},
	{ZeroDowntime, "Can the service be restarted or deployed without downtime?", zeroDowntime},
	{Rollback, "Can a bad change be rolled back in under 60 s?", rollback},
	{Objectives, "Are RTO and RPO written down and met by the last drills?", objectives},
	{FailoverDrill, "Was failover tested under load in the last 90 days?", failoverDrill},
}

// Evaluate answers every question for in at now.
func Evaluate(in Input, now time.Time) Card {
	if in.Config == nil {
		in.Config = &config.Config{}
	}
	required := in.Required
	if required == nil {
		required = DefaultRequired
	}
	card := Card{Time: now, Passed: true}
	for i, q := range questions {
		it := Item{ID: q.id, N: i + 1, Question: q.text, Answer: Yes, Required: slices.Contains(required, q.id), Subjects: q.answer(in, now)}
		if len(it.Subjects) == 0 {
			it.Answer = Unknown
		}
		for _, s := range it.Subjects {
			if s.Answer.rank() > it.Answer.rank() {
				it.Answer = s.Answer
			}
		}
		switch it.Answer {
		case Yes:
			card.Yes++
		case No:
			card.No++
			if it.Required {
				card.Passed = false
			}
		default:
			card.Unknown++
		}
		card.Items = append(card.Items, it)
	}
	return card
}

// Failed returns the required items that answer No.
func (c Card) Failed() []Item {
	var out []Item
	for _, it := range c.Items {
		if it.Required && it.Answer == No {
			out = append(out, it)
		}
	}
	return out
}

// Require returns the card with the items named by ids marked required (and
// no others), Passed computed again. It returns an error naming an unknown id.
func (c Card) Require(ids []string) (Card, error) {
	for _, id := range ids {
		if !slices.Contains(IDs, id) {
			return c, fmt.Errorf("unknown scorecard item %q (want %s)", id, strings.Join(IDs, ", "))
		}
	}
	out := c
	out.Items = slices.Clone(c.Items)
	out.Passed = true
	for i := range out.Items {
		out.Items[i].Required = slices.Contains(ids, out.Items[i].ID)
		if out.Items[i].Required && out.Items[i].Answer == No {
			out.Passed = false
		}
	}
	return out, nil
}

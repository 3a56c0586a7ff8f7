package drill

import (
	"fmt"
	"time"
)

// States of a drill.
const (
	StateRunning = "running"
	StatePassed  = "passed"
	StateFailed  = "failed"
	StateAborted = "aborted"
)

// Phases of a running drill, in order.
const (
	PhaseWarmup   = "warmup"   // baseline load
	PhaseInjected = "injected" // the fault is in; waiting for detection and recovery
	PhaseRestore  = "restore"  // removing the fault
	PhaseSettle   = "settle"   // waiting for full capacity
	PhaseCooldown = "cooldown" // after-phase load
	PhaseDone     = "done"
)

// Step is one thing the drill itself did: inject or restore.
type Step struct {
	Time   time.Time `json:"time"`
	Action string    `json:"action"` // inject | restore
	Detail string    `json:"detail,omitempty"`
	Error  string    `json:"error,omitempty"`
	Seq    int64     `json:"seq,omitempty"` // of its drill.* audit record
}

// Result is a drill, running or finished: what was asked, what happened,
// and the verdict. It is what the API returns, the store keeps and the
// reports render.
type Result struct {
	ID          int64    `json:"id"`
	Scenario    string   `json:"scenario"`
	FailureMode string   `json:"failure_mode"`
	Service     string   `json:"service"`
	Subject     Subject  `json:"subject"`
	Actor       string   `json:"actor"` // who asked: "api:alice", "schedule:0"
	State       string   `json:"state"`
	Phase       string   `json:"phase"`
	Summary     string   `json:"summary"`
	Load        LoadSpec `json:"load"`
	Marks       Marks    `json:"marks"`
	Measurement
	Steps      []Step        `json:"steps"`
	Timeline   []Observation `json:"timeline"`
	Definition Scenario      `json:"definition"`
	// Report is where the CLI wrote the HTML report ("" in the API).
	Report string `json:"report,omitempty"`
}

// Done reports whether the drill has its verdict.
func (r *Result) Done() bool { return r.State != StateRunning && r.State != "" }

// summarize writes the one-line summary.
func (r *Result) summarize() {
	target := r.Subject.Instance
	if target == "" {
		target = r.Service
	}
	if h := r.Subject.Host; h != "" {
		target = h + " (" + r.Service + ")"
	}
	s := fmt.Sprintf("%s %s: %s", r.Scenario, target, r.State)
	if r.TTD != nil {
		s += fmt.Sprintf("; detected after %.2fs", *r.TTD)
	}
	if r.TTR != nil {
		s += fmt.Sprintf(", recovered after %.2fs", *r.TTR)
	}
	if v, ok := r.Figures["rto_seconds"]; ok {
		s += fmt.Sprintf("; restored in %.1fs", v)
		if loss, ok := r.Figures["data_loss_seconds"]; ok {
			s += fmt.Sprintf(" losing %.2fs of writes", loss)
		}
	}
	if w := r.Writes; w != nil {
		s += fmt.Sprintf("; %d writes acknowledged, %d lost", w.Acked, w.Lost)
		if w.RTO != nil {
			s += fmt.Sprintf(", longest outage %.2fs", *w.RTO)
		}
	} else if r.Requests > 0 {
		s += fmt.Sprintf("; %d of %d requests failed", r.ClientErrors, r.Requests)
	}
	if len(r.Reasons) > 0 {
		s += "; " + r.Reasons[0]
	}
	r.Summary = s
}

// Brief is a finished drill in a listing.
type Brief struct {
	ID           int64     `json:"id"`
	Scenario     string    `json:"scenario"`
	FailureMode  string    `json:"failure_mode"`
	Service      string    `json:"service"`
	Target       string    `json:"target"`
	State        string    `json:"state"`
	Passed       bool      `json:"passed"`
	Started      time.Time `json:"started"`
	TTD          *float64  `json:"ttd_seconds"`
	TTR          *float64  `json:"ttr_seconds"`
	ClientErrors int       `json:"client_errors"`
	Requests     int       `json:"requests"`
	Summary      string    `json:"summary"`
}

// Brief returns the listing entry of r.
func (r *Result) Brief() Brief {
	t := r.Subject.Instance
	if t == "" {
		t = r.Service
	}
	if r.Subject.Host != "" {
		t = r.Subject.Host
	}
	return Brief{ID: r.ID, Scenario: r.Scenario, FailureMode: r.FailureMode, Service: r.Service, Target: t,
		State: r.State, Passed: r.Passed, Started: r.Marks.Start, TTD: r.TTD, TTR: r.TTR,
		ClientErrors: r.ClientErrors, Requests: r.Requests, Summary: r.Summary}
}

// ModeRecord answers "when did we last test recovery from this, and how long
// did it take?" for one failure mode.
type ModeRecord struct {
	FailureMode string    `json:"failure_mode"`
	Scenario    string    `json:"scenario"`
	Service     string    `json:"service"`
	LastDrilled time.Time `json:"last_drilled"`
	Passed      bool      `json:"passed"`
	// LastTTR is the recovery time of the last passed drill of this mode.
	LastTTR    *float64  `json:"last_ttr_seconds"`
	LastPassed time.Time `json:"last_passed,omitempty"`
	ID         int64     `json:"id"`
}

package remedy

import (
	"fmt"
	"slices"
	"time"
)

// Level is a runbook's trust level. The zero value is LevelUnknown.
type Level int

const (
	LevelUnknown Level = iota
	LevelObserve       // alert only
	LevelPropose       // a human approves each run
	LevelAct           // act and notify
	LevelSilent        // act; summary only
)

var levelNames = [...]string{"unknown", "observe", "propose", "act", "silent"}

func (l Level) String() string {
	if l < 0 || int(l) >= len(levelNames) {
		return fmt.Sprintf("level(%d)", int(l))
	}
	return levelNames[l]
}

// MarshalText renders the level by name.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// ParseLevel parses observe, propose, act or silent.
func ParseLevel(s string) (Level, error) {
	for i, n := range levelNames[1:] {
		if n == s {
			return Level(i + 1), nil
		}
	}
	return LevelUnknown, fmt.Errorf("unknown trust level %q: want observe, propose, act or silent", s)
}

// recentTTRs is how many recovery times the median is taken over.
const recentTTRs = 100

// Record is a runbook's learned record: its trust level and outcomes. It is
// a value; Outcome returns the next one.
type Record struct {
	Runbook     string          `json:"runbook"`
	Level       Level           `json:"level"`
	Configured  Level           `json:"configured"`  // the starting level in the config the record began with
	Consecutive int             `json:"consecutive"` // verified successes since the last failure or promotion
	Runs        int             `json:"runs"`
	Successes   int             `json:"successes"`
	Failures    int             `json:"failures"`
	LastRun     time.Time       `json:"last_run,omitzero"`
	TTRs        []time.Duration `json:"-"` // recent recovery times, oldest first
}

// Change is a trust level change; the zero value means none.
type Change struct {
	From, To Level
	Reason   string
}

// NewRecord starts a record at the configured level.
func NewRecord(runbook string, configured Level) Record {
	return Record{Runbook: runbook, Level: configured, Configured: configured}
}

// Outcome folds one finished run into the record. A verified success
// counts toward promotion: after promoteAfter in a row the level rises one
// step (propose → act → silent), never above max. Observe is never promoted
// automatically: an observing runbook does not act, so nothing verifies it;
// an operator raises it with SetTrust. A failure — a failed step or
// verification, which runs the rollback — resets the count and demotes act
// and silent to propose.
func (r Record) Outcome(success bool, ttr time.Duration, at time.Time, promoteAfter int, max Level) (Record, Change) {
	r.Runs++
	r.LastRun = at
	r.TTRs = slices.Clone(r.TTRs)
	if !success {
		r.Failures++
		r.Consecutive = 0
		if r.Level > LevelPropose {
			from := r.Level
			r.Level = LevelPropose
			return r, Change{From: from, To: r.Level, Reason: "demoted after a failed run (verification or step failed, rollback ran)"}
		}
		return r, Change{}
	}
	r.Successes++
	r.Consecutive++
	r.TTRs = append(r.TTRs, ttr)
	if len(r.TTRs) > recentTTRs {
		r.TTRs = r.TTRs[len(r.TTRs)-recentTTRs:]
	}
	if r.Consecutive >= promoteAfter && r.Level >= LevelPropose && r.Level < max {
		from := r.Level
		r.Level++
		r.Consecutive = 0
		return r, Change{From: from, To: r.Level, Reason: fmt.Sprintf("promoted after %d consecutive verified successes", promoteAfter)}
	}
	return r, Change{}
}

// SuccessRate is Successes/Runs, 0 without runs.
func (r Record) SuccessRate() float64 {
	if r.Runs == 0 {
		return 0
	}
	return float64(r.Successes) / float64(r.Runs)
}

// MedianTTR is the median of the recent recovery times, 0 without any.
func (r Record) MedianTTR() time.Duration {
	if len(r.TTRs) == 0 {
		return 0
	}
	s := slices.Clone(r.TTRs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Package backoff is medic's restart policy as a pure value: given how an
// instance ended and the time, it decides whether to restart, after what
// delay, and whether the instance is crash-looping. It reads no clock and
// starts no goroutine (nomad's RestartTracker, client-go's Backoff, with time
// as an argument).
package backoff

import (
	"fmt"
	"math"
	"time"

	"github.com/medic-dev/medic"
)

// Mode is the restart policy.
type Mode string

const (
	Always    Mode = "always"
	OnFailure Mode = "on-failure"
	Never     Mode = "never"
)

// Policy holds the settings; see config.Restart for their defaults.
type Policy struct {
	Mode       Mode
	Initial    time.Duration // delay before the second restart in a row
	Multiplier float64
	Max        time.Duration
	Jitter     float64       // fraction of the delay added at random, 0..1
	ResetAfter time.Duration // a run this long is stable: the backoff resets

	CrashLoopRestarts int           // this many restarts …
	CrashLoopWindow   time.Duration // … within this window is a crash loop
}

// Action is what the supervisor should do.
type Action int

const (
	GiveUp  Action = iota // do not restart (policy); zero value so a forgotten decision restarts nothing
	Restart               // restart after Delay
)

func (a Action) String() string {
	if a == Restart {
		return "restart"
	}
	return "give-up"
}

// Decision is the outcome of one exit.
type Decision struct {
	Action    Action
	Delay     time.Duration
	CrashLoop bool   // restarts within the window reached the limit
	Attempt   int    // consecutive restarts since the last stable run, this one included
	Reason    string // one line, for the log, the audit record and the API
}

// Tracker is the per-instance state. The zero value with a Policy set is ready.
type Tracker struct {
	Policy Policy

	consecutive int
	startedAt   time.Time
	restarts    []time.Time // restart times within the crash-loop window
}

// New returns a tracker for p.
func New(p Policy) Tracker { return Tracker{Policy: p} }

// Started records that the process started at now.
func (t Tracker) Started(now time.Time) Tracker {
	t.startedAt = now
	return t
}

// Exited decides what follows an exit at now. u is a uniform sample in [0,1)
// used for jitter (the caller passes rand.Float64(); tests pass a constant).
// Cause is a prefix for the reason when the exit was forced ("liveness probe
// failed: HTTP 503"); empty for a crash.
func (t Tracker) Exited(ex medic.Exit, cause string, now time.Time, u float64) (Tracker, Decision) {
	p := t.Policy
	what := ex.Reason
	if cause != "" {
		what = cause
	}
	switch {
	case p.Mode == Never:
		return t, Decision{Action: GiveUp, Reason: fmt.Sprintf("%s; restart policy is never", what)}
	case p.Mode == OnFailure && cause == "" && ex.Success():
		return t, Decision{Action: GiveUp, Reason: fmt.Sprintf("%s; restart policy is on-failure", what)}
	}
	// A run that lasted ResetAfter is stable: start again from "restart at once".
	// This is Kubernetes' 10-minute reset and client-go's 2×max expiry.
	if !t.startedAt.IsZero() && p.ResetAfter > 0 && now.Sub(t.startedAt) >= p.ResetAfter {
		t.consecutive = 0
	}
	t.consecutive++
	t.restarts = prune(append(t.restarts, now), now.Add(-p.CrashLoopWindow))
	d := Decision{Action: Restart, Attempt: t.consecutive, Delay: t.delay(u)}
	d.CrashLoop = p.CrashLoopRestarts > 0 && len(t.restarts) >= p.CrashLoopRestarts
	switch {
	case d.CrashLoop:
		d.Reason = fmt.Sprintf("%s; crash loop: %d restarts within %v, restarting in %v", what, len(t.restarts), p.CrashLoopWindow, round(d.Delay))
	case d.Delay == 0:
		d.Reason = fmt.Sprintf("%s; restarting at once (first restart after a stable run)", what)
	default:
		d.Reason = fmt.Sprintf("%s; restart %d in a row, backing off %v", what, t.consecutive, round(d.Delay))
	}
	return t, d
}

// Forced records a restart asked for by an operator or a rolling restart: it
// neither counts as a crash nor resets the record.
func (t Tracker) Forced(now time.Time) Tracker { return t.Started(now) }

// CrashLooping reports whether restarts within the window at now reach the limit.
func (t Tracker) CrashLooping(now time.Time) bool {
	n := len(prune(append([]time.Time(nil), t.restarts...), now.Add(-t.Policy.CrashLoopWindow)))
	return t.Policy.CrashLoopRestarts > 0 && n >= t.Policy.CrashLoopRestarts
}

func (t Tracker) delay(u float64) time.Duration {
	p := t.Policy
	if t.consecutive <= 1 {
		return 0 // the first restart after a crash happens at once
	}
	mult := p.Multiplier
	if mult < 1 {
		mult = 1
	}
	d := float64(p.Initial) * math.Pow(mult, float64(t.consecutive-2))
	if p.Max > 0 && d > float64(p.Max) {
		d = float64(p.Max)
	}
	d += d * p.Jitter * u
	if p.Max > 0 && d > float64(p.Max) {
		d = float64(p.Max) // jitter spreads a herd but never exceeds the documented cap
	}
	return time.Duration(d)
}

func prune(ts []time.Time, after time.Time) []time.Time {
	out := ts[:0]
	for _, x := range ts {
		if x.After(after) {
			out = append(out, x)
		}
	}
	return out
}

func round(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

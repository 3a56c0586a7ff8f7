package remedy

import (
	"fmt"
	"time"
)

// Outcome is what the engine decided for one runbook and trigger. The zero
// value is OutcomeUnknown.
type Outcome int

const (
	OutcomeUnknown Outcome = iota
	OutcomeAct             // run the steps now
	OutcomePropose         // wait for a human's approval, then run
	OutcomeObserve         // alert only (trust observe)
	OutcomeBlock           // a guardrail refused; Decision.Guard names it
	OutcomeDryRun          // record what would be done, do nothing
)

var outcomeNames = [...]string{"unknown", "act", "propose", "observe", "blocked", "dry_run"}

func (o Outcome) String() string {
	if o < 0 || int(o) >= len(outcomeNames) {
		return fmt.Sprintf("outcome(%d)", int(o))
	}
	return outcomeNames[o]
}

// MarshalText renders the outcome by name.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// Guard names, in the order Guards.Check applies them. The same string is
// recorded in the audit log (Fields["guard"]) and shown by the API.
const (
	GuardAudit        = "audit"         // the audit log cannot store records: no action without its record
	GuardPaused       = "paused"        // automation paused (medic pause)
	GuardProtected    = "protected"     // a target's service has remedy.protected
	GuardTrust        = "trust"         // trust observe: alert only
	GuardFlapping     = "flapping"      // the condition changed state too often on this target
	GuardRateRunbook  = "rate_runbook"  // the runbook's own rate
	GuardRateGlobal   = "rate_global"   // automation.rate over all runbooks
	GuardCooldown     = "cooldown"      // the target was remediated recently
	GuardFailedBefore = "failed_before" // this runbook already failed in this incident
	GuardBusy         = "busy"          // another remediation runs (or waits for approval) on the target
	GuardBudget       = "budget"        // the step would leave fewer ready instances than min_available
	GuardNoTargets    = "no_targets"    // a step resolves to no target (or its inputs cannot be rendered)
	GuardMaxTargets   = "max_targets"   // a step acts on more than automation.max_targets
	GuardDryRun       = "dry_run"       // dry-run: recorded, not done
	GuardFleetBusy    = "fleet_busy"    // another remediation holds the target's fleet-wide lock (asked after every guard above, before the approval's act)
	GuardFleetRate    = "fleet_rate"    // automation.fleet_rate over every host of the fleet
	GuardFleetCutOff  = "fleet_cut_off" // this host is cut from etcd (or the fleet guard did not answer): no fleet-wide action
	GuardFleetStorm   = "fleet_storm"   // the fleet's storm brake: more than fleet.storm_brake.unhealthy_share of the hosts are suspect or lost
	GuardFleetFence   = "fleet_fence"   // a step's fleet lock is no longer held under the fence the run was decided with
	GuardApproval     = "approval"      // trust propose or approve: required: waits for a human
)

// escalating guards tell a human when they block: automation will not fix
// the problem and nobody else knows. Cooldown, busy and dry-run do not: a
// remediation is already under way or was just done, or nothing is wanted.
var escalating = map[string]bool{GuardAudit: true, GuardPaused: true, GuardProtected: true, GuardTrust: true, GuardFlapping: true,
	GuardRateRunbook: true, GuardRateGlobal: true, GuardBudget: true, GuardNoTargets: true, GuardMaxTargets: true,
	GuardFleetRate: true, GuardFleetCutOff: true, GuardFleetStorm: true}

// Decision is the result of Guards.Check.
type Decision struct {
	Outcome  Outcome
	Guard    string // the guardrail that decided (blocked, observe, dry-run, approval); "" for act
	Reason   string // for the audit log, the log and the API
	Escalate bool   // a human must be told
	// retry is when to decide again while the condition holds (a fleet
	// guard's refusal that ends by itself); zero: the guard's own rule.
	retry time.Time
}

// Budget is one disruptive step's effect on a service's ready instances.
type Budget struct {
	Service      string
	Ready        int // ready instances now
	Removing     int // ready instances the step takes out of service at once
	MinAvailable int
}

// Request is everything about one runbook and trigger that Check needs
// besides the Guards' own state, gathered by the engine at one instant.
type Request struct {
	Runbook      string
	AuditDown    string // why the audit log cannot store records; "" when it can
	Rate         Window // the runbook's limit (Max, Per); its history lives in Guards
	Target       string // what cooldown and busy are keyed by
	FlapKey      string // condition and subject whose state changes are counted
	Incident     string
	Paused       bool
	Protected    string // the protected service a step would touch, if any
	Level        Level
	RenderError  error    // a step's inputs could not be rendered
	Targets      []int    // per step: how many targets it resolves to
	TargetErrors []string // per step: why it resolves to none ("" when fine)
	MaxTargets   int
	Budgets      []Budget
	DryRun       bool
	Approval     bool // approve: required
	Approved     bool // a human approved: skip trust and approval
}

// Window allows Max events in any sliding window of Per. It keeps the times
// of the events it admitted.
type Window struct {
	Max int
	Per time.Duration
	at  []time.Time
}

// Allow reports whether one more event fits at now, and if not, why.
func (w *Window) Allow(now time.Time) (bool, string) {
	n := w.count(now)
	if w.Max > 0 && n >= w.Max {
		next := w.at[len(w.at)-n].Add(w.Per)
		return false, fmt.Sprintf("%d runs in the last %v (limit %d); next allowed at %s", n, w.Per, w.Max, next.UTC().Format(time.RFC3339))
	}
	return true, ""
}

// Take records an event at now.
func (w *Window) Take(now time.Time) {
	w.prune(now)
	w.at = append(w.at, now)
}

func (w *Window) count(now time.Time) int {
	w.prune(now)
	return len(w.at)
}

func (w *Window) prune(now time.Time) {
	i := 0
	for i < len(w.at) && !w.at[i].After(now.Add(-w.Per)) {
		i++
	}
	w.at = w.at[i:]
}

// Guards is the state of the guardrails: rate windows, cooldowns, targets
// in use, failed runbooks per incident and condition state changes. It is a
// plain value — no clock, no goroutines, no I/O — so every rule is tested
// with timelines of `now`.
type Guards struct {
	Global      Window
	FlapChanges int
	FlapWithin  time.Duration

	runbooks map[string]*Window
	cooldown map[string]time.Time // target → until
	busy     map[string]string    // target → runbook holding it
	failed   map[string]bool      // incident + "\x00" + runbook
	changes  map[string][]time.Time
}

// NewGuards returns guards with the global rate and flap settings.
func NewGuards(global Window, flapChanges int, flapWithin time.Duration) *Guards {
	return &Guards{Global: global, FlapChanges: flapChanges, FlapWithin: flapWithin,
		runbooks: map[string]*Window{}, cooldown: map[string]time.Time{}, busy: map[string]string{},
		failed: map[string]bool{}, changes: map[string][]time.Time{}}
}

// Check applies the guardrails in their fixed order and returns the first
// that decides; only an OutcomeAct decision lets the steps run. The order:
//
//	paused → protected → trust (observe) → flapping → rate per runbook → rate global
//	→ cooldown → failed before → busy → budget → no targets → max targets
//	→ dry run → approval (propose, approve: required) → act
//
// Cheap, global refusals come first; dry-run comes after every guard so that
// it reports what a real run would have met; approval comes last so that a
// human is only asked about a run the guards would allow (they are checked
// again when the approval arrives). Check does not change g.
func (g *Guards) Check(now time.Time, r Request) Decision {
	block := func(guard, format string, args ...any) Decision {
		return Decision{Outcome: OutcomeBlock, Guard: guard, Reason: fmt.Sprintf(format, args...), Escalate: escalating[guard]}
	}
	if r.AuditDown != "" {
		return block(GuardAudit, "%s: remediation is paused until appends work again (no action without its record)", r.AuditDown)
	}
	if r.Paused {
		return block(GuardPaused, "automation is paused")
	}
	if r.Protected != "" {
		return block(GuardProtected, "service %s is protected: automation never touches it", r.Protected)
	}
	if r.Level == LevelObserve && !r.Approved {
		return Decision{Outcome: OutcomeObserve, Guard: GuardTrust, Reason: "trust level observe: alert only", Escalate: true}
	}
	if n := g.Changes(now, r.FlapKey); g.FlapChanges > 0 && n >= g.FlapChanges {
		return block(GuardFlapping, "%s changed state %d times within %v (limit %d): automation stopped for it", r.FlapKey, n, g.FlapWithin, g.FlapChanges)
	}
	if w := g.runbooks[r.Runbook]; w != nil {
		rw := Window{Max: r.Rate.Max, Per: r.Rate.Per, at: w.at}
		if ok, why := rw.Allow(now); !ok {
			return block(GuardRateRunbook, "runbook %s: %s", r.Runbook, why)
		}
	}
	if gw := g.Global; gw.Max > 0 { // a copy: Check leaves g's history alone
		if ok, why := gw.Allow(now); !ok {
			return block(GuardRateGlobal, "all runbooks: %s", why)
		}
	}
	if until, ok := g.cooldown[r.Target]; ok && now.Before(until) {
		return block(GuardCooldown, "%s was remediated recently; cooldown until %s", r.Target, until.UTC().Format(time.RFC3339))
	}
	if g.failed[r.Incident+"\x00"+r.Runbook] {
		return block(GuardFailedBefore, "runbook %s already failed in incident %s; it is not repeated", r.Runbook, r.Incident)
	}
	if by, ok := g.busy[r.Target]; ok {
		return block(GuardBusy, "a remediation by %s is under way on %s", by, r.Target)
	}
	for _, b := range r.Budgets {
		if b.Removing > 0 && b.Ready-b.Removing < b.MinAvailable {
			return block(GuardBudget, "%s has %d ready instances; taking %d out would go below min_available %d",
				b.Service, b.Ready, b.Removing, b.MinAvailable)
		}
	}
	if r.RenderError != nil {
		return block(GuardNoTargets, "cannot render the steps: %v", r.RenderError)
	}
	for i, n := range r.Targets {
		if n == 0 {
			why := ""
			if i < len(r.TargetErrors) && r.TargetErrors[i] != "" {
				why = ": " + r.TargetErrors[i]
			}
			return block(GuardNoTargets, "step %d has no targets%s", i+1, why)
		}
		if r.MaxTargets > 0 && n > r.MaxTargets {
			return block(GuardMaxTargets, "step %d acts on %d targets; max_targets is %d", i+1, n, r.MaxTargets)
		}
	}
	if r.DryRun {
		return Decision{Outcome: OutcomeDryRun, Guard: GuardDryRun, Reason: "dry run: recorded what would be done"}
	}
	if !r.Approved && (r.Level == LevelPropose || r.Approval) {
		why := "trust level propose"
		if r.Approval {
			why = "approve: required"
		}
		return Decision{Outcome: OutcomePropose, Guard: GuardApproval, Reason: why + ": waiting for approval"}
	}
	return Decision{Outcome: OutcomeAct, Reason: "all guardrails passed"}
}

// Admit records that r's runbook runs now on its target (or waits for
// approval on it): it takes a token from both rate windows and holds the
// target until Release. Proposals hold the target but take tokens only when
// approved (Admit is called again then with tokens true).
func (g *Guards) Admit(now time.Time, r Request, tokens bool) {
	g.busy[r.Target] = r.Runbook
	if !tokens {
		return
	}
	w := g.runbooks[r.Runbook]
	if w == nil {
		w = &Window{}
		g.runbooks[r.Runbook] = w
	}
	w.Max, w.Per = r.Rate.Max, r.Rate.Per
	w.Take(now)
	g.Global.Take(now)
}

// Release frees the target and starts its cooldown. A failed run marks the
// runbook failed for the incident.
func (g *Guards) Release(now time.Time, target, runbook, incident string, cooldown time.Duration, failed bool) {
	if g.busy[target] == runbook {
		delete(g.busy, target)
	}
	for t, until := range g.cooldown { // forget the cooldowns that ended
		if !now.Before(until) {
			delete(g.cooldown, t)
		}
	}
	if cooldown > 0 {
		if until := now.Add(cooldown); until.After(g.cooldown[target]) {
			g.cooldown[target] = until
		}
	}
	if failed {
		g.failed[incident+"\x00"+runbook] = true
	}
}

// Unhold frees a target held by a proposal that was denied or expired,
// without a cooldown.
func (g *Guards) Unhold(target, runbook string) {
	if g.busy[target] == runbook {
		delete(g.busy, target)
	}
}

// Busy reports which runbook holds target, if any.
func (g *Guards) Busy(target string) (string, bool) {
	r, ok := g.busy[target]
	return r, ok
}

// Changed records a state change of the condition instance key at now.
func (g *Guards) Changed(now time.Time, key string) {
	g.changes[key] = append(g.pruneChanges(now, key), now)
}

// Changes returns how many state changes of key fall within FlapWithin of now.
func (g *Guards) Changes(now time.Time, key string) int { return len(g.pruneChanges(now, key)) }

func (g *Guards) pruneChanges(now time.Time, key string) []time.Time {
	at := g.changes[key]
	i := 0
	for i < len(at) && !at[i].After(now.Add(-g.FlapWithin)) {
		i++
	}
	at = at[i:]
	if len(at) == 0 {
		delete(g.changes, key)
		return nil
	}
	g.changes[key] = at
	return at
}

// Forget drops the failure marks of a closed incident.
func (g *Guards) Forget(incident string) {
	for k := range g.failed {
		if len(k) > len(incident) && k[:len(incident)] == incident && k[len(incident)] == 0 {
			delete(g.failed, k)
		}
	}
}

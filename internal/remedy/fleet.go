package remedy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/medic-dev/medic/internal/fleet"
	"github.com/medic-dev/medic/internal/notify"
)

// FleetGuard is the fleet-wide half of the guardrails, asked after every
// guard of this host has allowed a run (fleet.Guard implements it: the
// fleet agent's etcd guard, or fleet.NewLocal). A single-host medic has
// none: its own guards are the whole story.
type FleetGuard interface {
	// Take takes one token of the fixed window key (max per per).
	Take(ctx context.Context, key string, max int, per time.Duration) (ok bool, reason string, err error)
	// Hold takes target's lock for one remediation; release frees it.
	Hold(ctx context.Context, target string) (fence int64, release func(context.Context) error, err error)
}

// fleetSafety is what a fleet guard may also tell: whether this host still
// holds its fleet lease (fleet.EtcdGuard does). A guard without it is
// always safe (fleet.Local: one host).
type fleetSafety interface {
	Safe() error
}

// fleetCooler is what a fleet guard may also do (fleet.Cooler): keep a
// target's cooldown fleet-wide, and check a lock's fence before a step.
type fleetCooler interface {
	Cool(ctx context.Context, target string, d time.Duration) error
	Fenced(ctx context.Context, target string, fence int64) error
}

// errFleetCutOff: a step of a run holding a fleet lock was not run because
// this host may have lost its lease, and the lock with it.
var errFleetCutOff = errors.New("remedy: cut from the fleet")

// fleetSafe is checked before every step (and rollback step) of a run that
// holds a fleet lock: a host cut from etcd mid-run stops acting, since its
// lock goes with its lease and another host may take the target (guard
// fleet_cut_off, no etcd request); then the fence is checked in etcd: the
// target's lock must still be the one the run was decided under (guard
// fleet_fence). Both refuse the step. It returns the refusing guard.
func (e *Engine) fleetSafe(ctx context.Context, pl *plan) (string, error) {
	if pl.fleetRelease == nil {
		return "", nil
	}
	if s, ok := e.fleet.(fleetSafety); ok {
		if err := s.Safe(); err != nil {
			return GuardFleetCutOff, fmt.Errorf("%w: %w", errFleetCutOff, err)
		}
	}
	c, ok := e.fleet.(fleetCooler)
	if !ok {
		return "", nil
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fleetTimeout)
	defer cancel()
	if err := c.Fenced(fctx, pl.target, pl.fence); err != nil {
		return GuardFleetFence, fmt.Errorf("%w: fence %d not proven: %w", errFleetCutOff, pl.fence, err)
	}
	return "", nil
}

// coolFleet starts the target's fleet-wide cooldown when a run that acted
// ends, before its lock is released (so no other host can take the target
// between the two). A cooldown that cannot be written is logged: this
// host's own cooldown still holds, and the fleet-wide rate still bounds the
// others.
func (e *Engine) coolFleet(ctx context.Context, pl *plan, d time.Duration) {
	c, ok := e.fleet.(fleetCooler)
	if !ok || pl.fleetRelease == nil || d <= 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fleetTimeout)
	defer cancel()
	if err := c.Cool(cctx, pl.target, d); err != nil {
		e.log.Error("write the fleet-wide cooldown", "target", pl.target, "err", err)
	}
}

// escalateCutOff tells a human that a run stopped midway because its host
// was cut from the fleet.
func (e *Engine) escalateCutOff(ctx context.Context, pl *plan, why string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rb, inc := pl.rb, pl.inc
	if inc.escalateOnce(GuardFleetCutOff + ":run:" + rb.name) {
		e.send(ctx, e.escalateRoute(rb), notify.Notification{Kind: notify.KindTrigger, Severity: e.escalateSeverity(rb),
			Summary: fmt.Sprintf("%s on %s: runbook %s stopped midway, this host is cut from the fleet", pl.trig.Condition, pl.target, rb.name),
			Text:    e.evidence(pl, why), Target: pl.target, Actor: actorOf(rb.name),
			Fields: fields("guard", GuardFleetCutOff)}, true, inc, GuardFleetCutOff)
	}
}

// fleetTimeout bounds each request to the fleet guard (Hold, Take, release).
// They are made while the engine decides, so a slow etcd delays decisions by
// at most 2·fleetTimeout; a request that times out refuses the run
// (fleet_cut_off): the fleet's consent is not proven.
const fleetTimeout = 2 * time.Second

// fleetBusyRetry is how long after a fleet_busy refusal the engine decides
// again, if the condition still holds (edge-triggered conditions do not
// fire again by themselves).
const fleetBusyRetry = 15 * time.Second

// fleetRateKey is the fleet-wide window of automation.fleet_rate.
const fleetRateKey = "automation"

// fleetLocked asks the fleet guard for a run the host's guards allowed:
// first the target's fleet-wide lock (held for the whole run, released by
// finish), then a token of the fleet-wide rate. A refusal is a blocked
// decision naming the fleet guard; on OutcomeAct pl holds the lock.
func (e *Engine) fleetLocked(ctx context.Context, pl *plan) Decision {
	block := func(guard, format string, args ...any) Decision {
		return Decision{Outcome: OutcomeBlock, Guard: guard, Reason: fmt.Sprintf(format, args...), Escalate: escalating[guard]}
	}
	refused := func(what string, err error) Decision {
		if errors.Is(err, fleet.ErrHeld) {
			return block(GuardFleetBusy, "a remediation on another host (or this one) holds %s fleet-wide: %v", pl.target, err)
		}
		if errors.Is(err, fleet.ErrCutOff) {
			return block(GuardFleetCutOff, "this host takes no fleet-wide action: %v", err)
		}
		if errors.Is(err, fleet.ErrStorm) {
			d := block(GuardFleetStorm, "fleet-wide automation is paused: %v", err)
			d.retry = e.clock.Now().Add(fleetBusyRetry)
			return d
		}
		if ce := (*fleet.CoolingError)(nil); errors.As(err, &ce) {
			d := block(GuardCooldown, "%v", err)
			d.retry = ce.Until
			return d
		}
		return block(GuardFleetCutOff, "the fleet guard could not be asked (%s): %v; no action without the fleet's consent", what, err)
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fleetTimeout)
	fence, release, err := e.fleet.Hold(hctx, pl.target)
	cancel()
	if err != nil {
		return refused("lock "+pl.target, err)
	}
	r := e.cfg.Automation.FleetRate
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fleetTimeout)
	ok, why, err := e.fleet.Take(tctx, fleetRateKey, r.Max, r.Per.D())
	cancel()
	if err != nil || !ok {
		e.releaseFleet(ctx, pl.target, release)
		if err != nil {
			return refused("fleet rate", err)
		}
		return block(GuardFleetRate, "all runbooks on every host of the fleet: %s", why)
	}
	pl.fence, pl.fleetRelease = fence, release
	return Decision{Outcome: OutcomeAct, Reason: fmt.Sprintf("all guardrails passed (fleet lock fence %d)", fence)}
}

// releaseFleet frees a fleet lock, bounded by fleetTimeout. A lock that
// cannot be freed is logged: it is bound to this host's lease, so it goes
// at the latest with the lease.
func (e *Engine) releaseFleet(ctx context.Context, target string, release func(context.Context) error) {
	if release == nil {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fleetTimeout)
	defer cancel()
	if err := release(rctx); err != nil {
		e.log.Error("release the fleet lock", "target", target, "err", err)
	}
}

// fenceField renders a fence for the decision's record; "" (left out) when
// no fleet lock was taken.
func fenceField(f int64) string {
	if f == 0 {
		return ""
	}
	return strconv.FormatInt(f, 10)
}

// fleetBudget is what a fleet guard may also tell: how many instances of a
// fleet service the other hosts publish as ready (discovery), and the
// fleet-wide minimum of ready instances. ok is false for a service that is
// not a fleet service. A host whose publication is gone (lost, cut off)
// counts as having none ready: the budget errs on the side of not acting.
type fleetBudget interface {
	FleetReady(service string) (othersReady, minAvailable int, ok bool)
}

// fleetBudgetOf is the fleet-wide disruption budget of a step taking
// removing of service's ready instances on this host (which has
// localReady): every host's ready instances are counted. ok is false when
// the service is not a fleet service (or there is no fleet).
func (e *Engine) fleetBudgetOf(service string, localReady, removing int) (Budget, bool) {
	fb, ok := e.fleet.(fleetBudget)
	if !ok {
		return Budget{}, false
	}
	others, min, ok := fb.FleetReady(service)
	if !ok {
		return Budget{}, false
	}
	return Budget{Service: service + " (fleet-wide)", Ready: localReady + others, Removing: removing, MinAvailable: min}, true
}

// Package remedy is the decide → act → verify → learn half of medic's loop:
// runbooks as data, matched against condition triggers, decided under
// guardrails and a trust ladder, executed step by step through action
// drivers, verified, rolled back and escalated on failure, and learned from.
//
// The decisions are plain values (Guards.Check, Record.Outcome) that take
// `now`; the Engine is the shell around them: one loop consuming triggers,
// one goroutine per running remediation (at most one per target), every
// decision and step recorded through the Recorder.
package remedy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/action"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
)

// Supervisor is what the engine needs from the process supervisor: status
// for the disruption budget and verification, and the actions.
type Supervisor = action.Supervisor

// Traffic drains instances in the proxy; optional.
type Traffic = action.Traffic

// Checker answers whether a condition, for the given labels, holds as
// resolved (is not firing) at now. The agent implements it over the detect
// engine and the pushed alerts. It is called from several goroutines.
type Checker interface {
	Holds(name string, labels map[string]string, now time.Time) (bool, error)
}

// CheckerFunc adapts a function to Checker.
type CheckerFunc func(name string, labels map[string]string, now time.Time) (bool, error)

// Holds calls f.
func (f CheckerFunc) Holds(name string, labels map[string]string, now time.Time) (bool, error) {
	return f(name, labels, now)
}

// AuditHealth tells whether the audit log stores records (audit.Writer).
// While it does not, the engine takes no action: every decision is blocked
// by GuardAudit, and a step about to run is refused.
type AuditHealth interface {
	Degraded() (bool, string)
}

// Errors returned by the engine's API.
var (
	ErrNotFound = errors.New("remedy: not found")
	ErrDecided  = errors.New("remedy: approval already decided")
	ErrBlocked  = errors.New("remedy: blocked by a guardrail")
	ErrStopped  = errors.New("remedy: engine stopped")
	// ErrAuditDegraded: a step was not run because its record could not be stored.
	ErrAuditDegraded = errors.New("remedy: audit degraded")
)

// Options configure an Engine.
type Options struct {
	Config     *config.Config // runbooks, automation, services' remedy; defaults applied
	Supervisor Supervisor
	Traffic    Traffic // nil: drain/undrain steps fail
	Checker    Checker // nil: conditions are never known to hold (preconditions fail, verify by condition fails)
	Recorder   Recorder
	Notifier   Notifier    // nil: escalations are recorded as not sent
	Audit      AuditHealth // nil: the audit log is taken as healthy (tests)
	Store      Store       // nil: nothing is persisted
	Clock      clock.Clock
	Logger     *slog.Logger
	// Fleet is the fleet-wide guard (the fleet agent's, when `fleet:` is
	// configured), asked after this host's guards. nil: a single host, whose
	// own guards are the whole story.
	Fleet FleetGuard
	// Actions replaces built-in drivers by name (tests, extensions).
	Actions map[string]action.Action
	// QueueSize bounds the trigger queue. Default 256.
	QueueSize int
}

// Engine runs the runbooks. Create it with New, run Serve, feed it with
// Submit; the other methods are the API for `medic runbooks`, `medic
// incidents`, `medic approve|deny|pause|resume`.
type Engine struct {
	clock    clock.Clock
	log      *slog.Logger
	sup      Supervisor
	checker  Checker
	rec      Recorder
	notifier Notifier
	audit    AuditHealth
	store    Store
	traffic  Traffic
	fleet    FleetGuard
	extra    map[string]action.Action // Options.Actions
	dedup    *action.Dedup
	in       chan Trigger
	kick     chan struct{}
	dropped  atomic.Uint64

	mu          sync.Mutex
	cfg         *config.Config
	books       []*runbook
	drivers     map[string]action.Action // by action name, idempotent by key
	guards      *Guards
	paused      bool
	dryRun      bool
	records     map[string]*Record
	incidents   []*Incident          // open and recent, oldest first
	open        map[string]*Incident // by subject
	approvals   map[string]*pending
	scheduled   []scheduled
	lastState   map[string]string // condition key → firing | resolved
	silent      []string          // silent runs since the last summary
	nextSummary time.Time
	runCtx      context.Context // set by Serve
	stopping    bool
	runs        sync.WaitGroup
}

// scheduled is a decision to take later: after a trigger's `for` or to
// repeat a runbook while its condition stays.
type scheduled struct {
	at      time.Time
	trig    Trigger
	runbook string
	round   int
	repeat  bool
}

// maxIncidents is how many closed incidents are kept in memory (and loaded).
const maxIncidents = 200

// New builds an engine from the config and loads its persisted state: trust
// records (a record whose configured level differs from the config starts
// over at the new level), open incidents, the pause and dry-run switches.
// Approvals still pending from a previous run are expired: their runs were
// lost with the process, and a new trigger will propose again.
func New(o Options) (*Engine, error) {
	if o.Config == nil {
		return nil, errors.New("remedy: no config")
	}
	e := &Engine{clock: clock.Or(o.Clock), log: o.Logger, sup: o.Supervisor, checker: o.Checker, rec: o.Recorder,
		notifier: o.Notifier, store: o.Store, records: map[string]*Record{}, open: map[string]*Incident{},
		approvals: map[string]*pending{}, lastState: map[string]string{}, kick: make(chan struct{}, 1)}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.store == nil {
		e.store = memStore{}
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 256
	}
	e.in = make(chan Trigger, o.QueueSize)
	e.traffic, e.extra, e.audit, e.fleet = o.Traffic, o.Actions, o.Audit, o.Fleet
	e.dedup = action.NewDedup(o.Config.Automation.IdempotencyWindow.D(), e.clock.Now)
	if err := e.apply(o.Config); err != nil {
		return nil, err
	}
	a := o.Config.Automation
	e.paused, e.dryRun = a.Paused, a.DryRun
	e.nextSummary = e.clock.Now().Add(a.Summary.D())
	if err := e.load(); err != nil {
		return nil, err
	}
	return e, nil
}

// apply installs cfg's runbooks and guard settings, keeping the state.
func (e *Engine) apply(cfg *config.Config) error {
	var books []*runbook
	for _, name := range sortedNames(cfg.Runbooks) {
		rb, err := compile(name, cfg.Runbooks[name])
		if err != nil {
			return err
		}
		books = append(books, rb)
	}
	a := cfg.Automation
	if e.guards == nil {
		e.guards = NewGuards(Window{}, 0, 0)
	}
	e.guards.Global.Max, e.guards.Global.Per = a.Rate.Max, a.Rate.Per.D()
	e.guards.FlapChanges, e.guards.FlapWithin = a.Flap.Changes, a.Flap.Within.D()
	e.cfg, e.books = cfg, books
	// The drivers enforce max_targets themselves too; the dedup memory
	// outlives a reload.
	drivers := action.Builtins(action.Deps{Supervisor: e.sup, Traffic: e.traffic, Notifier: e.notifier,
		Bounds: e.bounds, MaxTargets: a.MaxTargets, Now: e.clock.Now})
	for name, d := range e.extra {
		drivers[name] = d
	}
	e.drivers = map[string]action.Action{}
	for name, d := range drivers {
		e.drivers[name] = e.dedup.Wrap(name, d)
	}
	return nil
}

// Update installs a reloaded config: runbooks added, changed or removed,
// new guardrail settings. Rate histories, cooldowns, records, incidents and
// running remediations carry over. The pause and dry-run switches are
// runtime state and are not reset.
func (e *Engine) Update(ctx context.Context, cfg *config.Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.apply(cfg); err != nil {
		return err
	}
	e.syncRecordsLocked(ctx)
	return nil
}

func (e *Engine) load() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs, err := e.store.LoadRecords(ctx)
	if err != nil {
		return err
	}
	for i := range recs {
		e.records[recs[i].Runbook] = &recs[i]
	}
	e.syncRecordsLocked(ctx)
	incs, err := e.store.LoadIncidents(ctx, maxIncidents)
	if err != nil {
		return err
	}
	now := e.clock.Now()
	for i := range incs {
		in := &incs[i]
		e.incidents = append(e.incidents, in)
		if in.State == "open" {
			// Its runs died with the previous process and what still fires
			// is unknown: the detector reports it again, which opens a new
			// incident decided afresh.
			in.Active = nil
			in.close(now, "interrupted")
			e.saveIncident(ctx, in)
		}
	}
	settings, err := e.store.LoadSettings(ctx)
	if err != nil {
		return err
	}
	if v, ok := settings["paused"]; ok {
		e.paused, _ = strconv.ParseBool(v)
	}
	if v, ok := settings["dry_run"]; ok {
		e.dryRun, _ = strconv.ParseBool(v)
	}
	stale, err := e.store.LoadApprovals(ctx)
	if err != nil {
		return err
	}
	for _, a := range stale {
		a.State, a.DecidedAt, a.Reason = "expired", now, "medic restarted while the approval was pending"
		if err := e.store.SaveApproval(ctx, a); err != nil {
			return err
		}
		e.record(ctx, medic.Event{Kind: EventApproval, Target: a.Target, Actor: actorOf(a.Runbook), Reason: a.Reason,
			Fields: fields("incident", a.Incident, "runbook", a.Runbook, "approval", a.ID, "state", a.State)})
	}
	return nil
}

// syncRecordsLocked makes sure every configured runbook has a record at its
// configured level.
func (e *Engine) syncRecordsLocked(ctx context.Context) {
	for _, rb := range e.books {
		r := e.records[rb.name]
		if r != nil && r.Configured == rb.level {
			continue
		}
		nr := NewRecord(rb.name, rb.level)
		if r != nil { // the operator changed trust: in the config: start over at it, keep the history
			nr.Runs, nr.Successes, nr.Failures, nr.LastRun, nr.TTRs = r.Runs, r.Successes, r.Failures, r.LastRun, r.TTRs
		}
		e.records[rb.name] = &nr
		e.saveRecord(ctx, nr)
	}
}

func (e *Engine) saveRecord(ctx context.Context, r Record) {
	if err := e.store.SaveRecord(context.WithoutCancel(ctx), r); err != nil {
		e.log.Error("persist runbook record", "runbook", r.Runbook, "err", err)
	}
}

func (e *Engine) saveIncident(ctx context.Context, in *Incident) {
	if err := e.store.SaveIncident(context.WithoutCancel(ctx), in.snapshot()); err != nil {
		e.log.Error("persist incident", "incident", in.ID, "err", err)
	}
}

// Submit queues a trigger without blocking. When the queue is full the
// trigger is dropped, counted, and recorded by the loop; Submit then
// returns false.
func (e *Engine) Submit(t Trigger) bool {
	select {
	case e.in <- t:
		return true
	default:
		e.dropped.Add(1)
		e.wake()
		return false
	}
}

func (e *Engine) wake() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Serve consumes triggers until ctx ends. Remediations run concurrently for
// different targets and one at a time per target. When ctx ends, Serve
// stops deciding, lets the running steps see the cancellation (each run
// records "aborted: shutdown"), withdraws pending approvals, and returns
// once every run has finished.
func (e *Engine) Serve(ctx context.Context) error {
	e.mu.Lock()
	if e.runCtx != nil {
		e.mu.Unlock()
		return errors.New("remedy: Serve called twice")
	}
	e.runCtx = ctx
	e.mu.Unlock()
	var reported uint64
	for {
		if d := e.dropped.Load(); d > reported {
			e.record(ctx, medic.Event{Kind: EventDropped, Target: "remedy", Actor: "remedy",
				Reason: fmt.Sprintf("%d triggers dropped: the queue was full", d-reported), Fields: fields("total", strconv.FormatUint(d, 10))})
			reported = d
		}
		wait := e.nextWake()
		t := e.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			e.shutdown(ctx)
			return nil
		case trig := <-e.in:
			t.Stop()
			e.handle(ctx, trig)
		case <-e.kick:
			t.Stop()
		case <-t.C():
			e.tick(ctx)
		}
	}
}

// nextWake returns how long until the earliest scheduled decision,
// approval deadline or summary.
func (e *Engine) nextWake() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	next := e.nextSummary
	for _, s := range e.scheduled {
		if s.at.Before(next) {
			next = s.at
		}
	}
	for _, p := range e.approvals {
		if p.Deadline.Before(next) {
			next = p.Deadline
		}
	}
	return max(next.Sub(e.clock.Now()), 0)
}

// tick takes the decisions that are due.
func (e *Engine) tick(ctx context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	e.expireLocked(ctx, now)
	var due []scheduled
	e.scheduled = slices.DeleteFunc(e.scheduled, func(s scheduled) bool {
		if !s.at.After(now) {
			due = append(due, s)
			return true
		}
		return false
	})
	for _, s := range due {
		e.dueLocked(ctx, now, s)
	}
	if !now.Before(e.nextSummary) {
		e.summaryLocked(ctx)
		e.nextSummary = now.Add(e.cfg.Automation.Summary.D())
	}
}

func (e *Engine) shutdown(ctx context.Context) {
	e.mu.Lock()
	e.stopping = true
	now := e.clock.Now()
	for _, p := range e.approvals {
		e.finishApprovalLocked(ctx, p, "aborted", "", "aborted: shutdown", now)
	}
	e.mu.Unlock()
	e.runs.Wait()
}

// Pause stops all automation until Resume: triggers are still recorded and
// escalated, nothing is acted on. Persisted.
func (e *Engine) Pause(ctx context.Context, who string) { e.setSwitch(ctx, "paused", true, who) }

// Resume ends a Pause.
func (e *Engine) Resume(ctx context.Context, who string) { e.setSwitch(ctx, "paused", false, who) }

// SetDryRun switches global dry-run on or off: runbooks record what they
// would do and do nothing. Persisted.
func (e *Engine) SetDryRun(ctx context.Context, on bool, who string) {
	e.setSwitch(ctx, "dry_run", on, who)
}

// Paused reports whether automation is paused.
func (e *Engine) Paused() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.paused
}

// DryRun reports whether global dry-run is on.
func (e *Engine) DryRun() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dryRun
}

func (e *Engine) setSwitch(ctx context.Context, name string, on bool, who string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	sw := &e.paused
	if name == "dry_run" {
		sw = &e.dryRun
	}
	*sw = on
	if err := e.store.SaveSetting(context.WithoutCancel(ctx), name, strconv.FormatBool(on)); err != nil {
		e.log.Error("persist setting", "setting", name, "err", err)
	}
	verb := map[string][2]string{"paused": {"automation resumed", "automation paused"},
		"dry_run": {"global dry-run off", "global dry-run on"}}[name]
	reason := verb[0]
	if on {
		reason = verb[1]
	}
	e.record(ctx, medic.Event{Kind: EventSwitch, Target: "automation", Actor: humanActor(who), Reason: reason,
		Fields: fields(name, strconv.FormatBool(on))})
}

// bounds are the scale limits of a service: its remedy section's
// min/max_instances (max defaulting to the configured instances). A service
// without a remedy section is never scaled.
func (e *Engine) bounds(service string) (int, int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.cfg.Services[service]
	if s == nil || s.Remedy == nil {
		return 0, 0, false
	}
	hi := s.Remedy.MaxInstances
	if hi == 0 {
		hi = s.Instances
	}
	return max(s.Remedy.MinInstances, 1), hi, true
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

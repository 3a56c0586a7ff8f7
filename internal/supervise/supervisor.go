// Package supervise runs services as process groups: start, crash detection
// from wait(2), restart with backoff, probes, graceful stop, rolling restarts
// within a disruption budget, and dependency order.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
)

// ErrNotFound is returned for an unknown service or instance.
var ErrNotFound = errors.New("supervise: not found")

// ErrBudget is returned when a voluntary disruption would break min_available.
var ErrBudget = errors.New("supervise: disruption budget exhausted")

// Options configure a Supervisor.
type Options struct {
	Config *config.Config
	Env    Env    // shared with every instance; Gate and Changed are set by the supervisor
	LogDir string // instance logs
	// StateDir keeps the record of started process groups, so that the next
	// medic stops what a crashed one left behind. Empty: no record.
	StateDir string
	// Cgroups chooses how instances are tracked: CgroupsAuto ("" too): cgroup
	// v2, else a v1 hierarchy (pids, freezer), else process groups;
	// CgroupsV1: skip v2; CgroupsNone: process groups only (MEDIC_CGROUPS).
	Cgroups string
}

// The values of Options.Cgroups.
const (
	CgroupsAuto = "auto"
	CgroupsV1   = "v1"
	CgroupsNone = "none"
)

// Supervisor owns every service's instances.
type Supervisor struct {
	env      Env
	oldTrees []string // medic-* trees a previous medic on this data dir made from other cgroups (adopt.go)
	logDir   string
	baseDir  string
	anyReady broadcast

	mu       sync.Mutex
	services map[string]*service
	order    []string // dependency order (dependencies first)
	wg       sync.WaitGroup
	started  bool
	root     context.Context
	procs    *leftovers

	// Rollouts run under rollCtx, cancelled when medic stops; stopping
	// refuses new ones once stopRollouts began.
	rollCtx    context.Context
	rollCancel context.CancelFunc
	rollWG     sync.WaitGroup
	stopping   bool
}

type service struct {
	name      string
	cfg       *config.Service
	prev      *config.Service // the spec before the last change: what Rollback returns to
	instances []*Instance
	ctx       context.Context
	cancel    context.CancelCauseFunc
	minAvail  int
	rolling   lock     // one rolling restart or rollout at a time
	rollout   *rollout // the rollout under way (nil: none); guarded by Supervisor.mu
	// groups run beside the instances from other specs (groups.go);
	// guarded by Supervisor.mu.
	groups         map[string]*group
	nextGroupIndex int
}

// New builds a supervisor for cfg. Nothing starts until Serve.
func New(o Options) (*Supervisor, error) {
	s := &Supervisor{env: o.Env, logDir: o.LogDir, services: map[string]*service{}}
	s.env.Clock = clock.Or(s.env.Clock)
	if s.env.Logger == nil {
		s.env.Logger = slog.New(slog.DiscardHandler)
	}
	if s.env.RunDir == "" {
		d, err := os.MkdirTemp("", "medic-run-")
		if err != nil {
			return nil, fmt.Errorf("create run dir for notify sockets: %w", err)
		}
		s.env.RunDir = d
	}
	s.env.Changed = s.anyReady.Notify
	s.env.handover = new(atomic.Bool)
	if o.StateDir != "" {
		s.procs = openLeftovers(o.StateDir)
		s.env.procs = s.procs
	}
	key := s.env.RunDir // unique to this supervisor when there is no state to find again
	if o.StateDir != "" {
		key, _ = filepath.Abs(o.StateDir)
	}
	var (
		t       *cgroupTree
		treeErr error
	)
	switch o.Cgroups {
	case "", CgroupsAuto:
		t, treeErr = openCgroupTree(key)
	case CgroupsV1, CgroupsNone:
		treeErr = fmt.Errorf("cgroup v2 is not used (cgroups: %s)", o.Cgroups)
	default:
		return nil, fmt.Errorf("cgroups: want %s, %s or %s, got %q", CgroupsAuto, CgroupsV1, CgroupsNone, o.Cgroups)
	}
	if treeErr != nil {
		t = nil
	}
	s.env.limits = planLimits(t, treeErr, treeName(key), o.Cgroups)
	switch {
	case t != nil:
		s.env.cgroups = t
		s.env.Logger.Info("every instance runs in its own cgroup (v2)", "parent", filepath.Join(t.mount, t.group))
	case s.env.limits.track != "":
		s.env.Logger.Warn("cgroup v2 cannot be used: every instance runs in its own cgroup v1 of the "+s.env.limits.track+" hierarchy", "reason", treeErr,
			"parent", s.env.limits.v1[s.env.limits.track].dir)
	default:
		s.env.Logger.Warn("cgroups cannot be used: instances are tracked by process group and the record of their ids; a setsid escapee of a crashed medic is not found", "reason", treeErr)
	}
	if how, ok := s.env.limits.summary(); ok {
		s.env.Logger.Info("resource limits (services.*.limits) are applied", "how", how)
	} else {
		s.env.Logger.Warn("resource limits (services.*.limits) cannot all be applied here: a config that sets them is refused", "how", how)
	}
	if err := s.env.limits.check(o.Config); err != nil {
		return nil, err
	}
	if o.Config.Path != "" {
		s.baseDir = filepath.Dir(o.Config.Path)
	} else {
		s.baseDir, _ = os.Getwd()
	}
	for name, svc := range o.Config.Services {
		s.services[name] = s.build(name, svc)
	}
	s.order = depOrder(o.Config.Services)
	return s, nil
}

func (s *Supervisor) build(name string, cfg *config.Service) *service {
	sv := &service{name: name, cfg: cfg, minAvail: minAvailable(cfg), rolling: make(lock, 1)}
	for _, spec := range Resolve(name, cfg, s.baseDir, s.logDir) {
		sv.instances = append(sv.instances, s.newInstance(spec, cfg.DependsOn))
	}
	return sv
}

// minAvailable is a service's disruption budget: min_available, or
// instances-1 when unset.
func minAvailable(cfg *config.Service) int {
	if cfg.MinAvailable != nil {
		return *cfg.MinAvailable
	}
	return max(cfg.Instances-1, 0)
}

// newInstance builds an instance that waits for deps before it starts.
func (s *Supervisor) newInstance(spec Spec, deps []string) *Instance {
	env := s.env
	env.Gate = func(ctx context.Context) error { return s.waitDeps(ctx, deps) }
	return newInstance(spec, &env)
}

// Serve starts every service in dependency order and runs until ctx ends;
// then it stops services in reverse order (dependents first) and returns
// once every process is stopped and every goroutine has ended.
func (s *Supervisor) Serve(ctx context.Context) error {
	base := context.WithoutCancel(ctx) // services are stopped explicitly, in order
	if s.procs != nil {
		s.adoptOrReap(ctx)
	}
	s.mu.Lock()
	s.root, s.started = base, true
	s.rollCtx, s.rollCancel = context.WithCancel(ctx)
	for _, name := range s.order {
		s.startLocked(base, s.services[name])
	}
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	order := append([]string(nil), s.order...)
	s.mu.Unlock()
	s.stopRollouts() // no replacement outlives the shutdown
	for i := len(order) - 1; i >= 0; i-- {
		s.mu.Lock()
		sv := s.services[order[i]]
		s.mu.Unlock()
		if sv != nil {
			s.stopService(sv, nil)
		}
	}
	s.wg.Wait()
	if s.env.cgroups != nil && !s.env.detached() {
		s.env.cgroups.remove()
	}
	if !s.env.detached() {
		for _, d := range s.oldTrees { // emptied now that their adopted instances stopped
			removeEmptyTree(d)
		}
	}
	if !s.env.detached() {
		for _, t := range s.env.limits.v1 {
			removeEmptyTree(t.dir)
		}
	}
	if !s.env.detached() {
		// Detached (or handed over), the sockets stay: the processes still
		// send to them, and the next medic binds the same paths.
		os.RemoveAll(s.env.RunDir)
	}
	return nil
}

func (s *Supervisor) startLocked(base context.Context, sv *service) {
	sv.ctx, sv.cancel = context.WithCancelCause(base)
	for _, in := range sv.instances {
		s.startInstanceLocked(sv, in)
	}
}

func (s *Supervisor) startInstanceLocked(sv *service, in *Instance) {
	ctx, cancel := context.WithCancelCause(sv.ctx)
	in.cancel, in.done = cancel, make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(in.done)
		in.Serve(ctx)
	}()
}

// stopService stops every instance of sv and waits for them. A nil cause is
// medic shutting down; a *retired cause names who removed the service.
func (s *Supervisor) stopService(sv *service, cause *retired) {
	if sv.cancel == nil {
		return
	}
	if cause != nil {
		sv.cancel(cause)
	} else {
		sv.cancel(nil)
	}
	s.mu.Lock()
	ins := append([]*Instance(nil), sv.instances...)
	s.mu.Unlock()
	for _, in := range ins {
		if in.done != nil {
			<-in.done
		}
	}
}

// waitDeps blocks until every named service has at least one ready instance.
func (s *Supervisor) waitDeps(ctx context.Context, deps []string) error {
	for {
		ch := s.anyReady.Wait()
		ok := true
		for _, d := range deps {
			if s.readyCount(d) == 0 {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

func (s *Supervisor) readyCount(name string) int {
	s.mu.Lock()
	sv := s.services[name]
	s.mu.Unlock()
	if sv == nil {
		return 0
	}
	n := 0
	for _, in := range s.instancesOf(sv) {
		if in.Status().Ready {
			n++
		}
	}
	return n
}

// Status returns every service's status, sorted by name.
func (s *Supervisor) Status() []ServiceStatus {
	s.mu.Lock()
	svcs := make([]*service, 0, len(s.services))
	steps := map[*service]string{}
	for _, sv := range s.services {
		svcs = append(svcs, sv)
		if sv.rollout != nil {
			steps[sv] = sv.rollout.step
		}
	}
	s.mu.Unlock()
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].name < svcs[j].name })
	out := make([]ServiceStatus, 0, len(svcs))
	for _, sv := range svcs {
		s.mu.Lock()
		st := ServiceStatus{Name: sv.name, Desired: max(sv.cfg.Instances, 0), MinAvailable: sv.minAvail, Rollout: steps[sv], Strategy: "rolling"}
		if d := sv.cfg.Deploy; d != nil && d.Strategy != "" {
			st.Strategy = d.Strategy
		}
		s.mu.Unlock()
		for _, in := range s.instancesOf(sv) {
			is := in.Status()
			if is.Ready {
				st.Ready++
			}
			st.Instances = append(st.Instances, is)
		}
		out = append(out, st)
	}
	return out
}

// Instances returns the live instances (for collectors).
func (s *Supervisor) Instances() []*Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Instance
	for _, name := range s.order {
		out = append(out, s.services[name].instances...)
	}
	return out
}

func (s *Supervisor) instance(id medic.InstanceID) (*Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.services[id.Service]
	if sv == nil || id.Index < 0 || id.Index >= len(sv.instances) {
		return nil, fmt.Errorf("instance %s: %w", id, ErrNotFound)
	}
	return sv.instances[id.Index], nil
}

// RestartInstance stops the instance gracefully and starts it again at once;
// it returns when the new process started. It does not count as a crash. A
// ready instance is taken out only within the disruption budget: it waits up
// to BudgetWait for the others, then fails with ErrBudget.
func (s *Supervisor) RestartInstance(ctx context.Context, id medic.InstanceID, actor, reason string) error {
	in, err := s.instance(id)
	if err != nil {
		return err
	}
	if err := s.withinBudget(ctx, id, in); err != nil {
		return err
	}
	return in.send(ctx, command{kind: cmdRestart, actor: actor, reason: reason})
}

// StopInstance stops the instance and keeps it stopped until StartInstance,
// within the disruption budget like RestartInstance.
func (s *Supervisor) StopInstance(ctx context.Context, id medic.InstanceID, actor, reason string) error {
	in, err := s.instance(id)
	if err != nil {
		return err
	}
	if err := s.withinBudget(ctx, id, in); err != nil {
		return err
	}
	return in.send(ctx, command{kind: cmdStop, actor: actor, reason: reason})
}

// StartInstance starts a stopped instance (or cuts a backoff short).
func (s *Supervisor) StartInstance(ctx context.Context, id medic.InstanceID, actor, reason string) error {
	in, err := s.instance(id)
	if err != nil {
		return err
	}
	return in.send(ctx, command{kind: cmdStart, actor: actor, reason: reason})
}

// WaitReady blocks until the instance is ready or ctx ends.
func (in *Instance) WaitReady(ctx context.Context) error {
	for {
		ch := in.change.Wait()
		if in.Status().Ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to be ready: %w", in.id, ctx.Err())
		case <-ch:
		}
	}
}

// ID returns the instance's id.
func (in *Instance) ID() medic.InstanceID { return in.id }

// RollingRestart restarts a service's instances one at a time, never leaving
// fewer than min_available ready instances, and waits for each to be ready
// before the next. readyTimeout bounds each wait.
func (s *Supervisor) RollingRestart(ctx context.Context, name, actor string, readyTimeout time.Duration) error {
	s.mu.Lock()
	sv := s.services[name]
	s.mu.Unlock()
	if sv == nil {
		return fmt.Errorf("service %s: %w", name, ErrNotFound)
	}
	if err := sv.rolling.acquire(ctx); err != nil {
		return fmt.Errorf("rolling restart of %s: wait for the change under way: %w", name, err)
	}
	defer sv.rolling.release()
	for _, in := range s.instancesOf(sv) {
		// Restarting a ready instance removes one from service: wait until the
		// others alone satisfy the budget.
		if err := s.waitBudget(ctx, sv, in, readyTimeout); err != nil {
			return fmt.Errorf("rolling restart of %s at %s: %w", name, in.id, err)
		}
		if err := in.send(ctx, command{kind: cmdRestart, actor: actor, reason: "rolling restart"}); err != nil {
			return fmt.Errorf("rolling restart of %s: restart %s: %w", name, in.id, err)
		}
		wctx, cancel := context.WithTimeout(ctx, readyTimeout)
		err := in.WaitReady(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("rolling restart of %s stopped: %w", name, err)
		}
	}
	return nil
}

func (s *Supervisor) waitBudget(ctx context.Context, sv *service, target *Instance, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ch := s.anyReady.Wait()
		others := 0
		for _, in := range s.instancesOf(sv) {
			if in != target && in.Status().Ready {
				others++
			}
		}
		if !target.Status().Ready || others >= sv.minAvail {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %d other instances ready, min_available %d", ErrBudget, others, sv.minAvail)
		case <-ch:
		}
	}
}

// instancesOf returns a copy of sv's instances (Scale may change the slice).
func (s *Supervisor) instancesOf(sv *service) []*Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Instance(nil), sv.instances...)
}

// Handover makes the shutdown that follows leave every instance running, as
// with Env.Detach: a new medic (a seamless upgrade) has adopted them.
func (s *Supervisor) Handover() { s.env.handover.Store(true) }

// Resuming reports whether a previous medic left a record of running
// instances to adopt (a crash, SIGKILL or --detach before this start).
func (s *Supervisor) Resuming() bool { return s.procs != nil && s.procs.any() }

// WaitAllReady blocks until every instance is ready, or ctx ends (then it
// returns ctx's error). A new medic waits for the instances it adopted
// before its proxies take traffic.
func (s *Supervisor) WaitAllReady(ctx context.Context) error {
	for {
		ch := s.anyReady.Wait()
		all := true
		for _, in := range s.Instances() {
			if !in.Status().Ready {
				all = false
				break
			}
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

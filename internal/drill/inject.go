package drill

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/supervise"
)

// Supervisor is what drills ask of the supervisor.
type Supervisor interface {
	Status() []supervise.ServiceStatus
	RestartInstance(ctx context.Context, id medic.InstanceID, actor, reason string) error
	StopInstance(ctx context.Context, id medic.InstanceID, actor, reason string) error
	StartInstance(ctx context.Context, id medic.InstanceID, actor, reason string) error
}

// Traffic is what drills ask of the proxies.
type Traffic interface {
	Stats() []proxy.Stats
	SetFault(id medic.InstanceID, f proxy.Fault) error
}

// Restore undoes one injection. It must be safe to call when what it undoes
// is already gone (the instance restarted, the file was cleaned up), and it
// runs with a context that is not the drill's (an aborted drill still restores).
type Restore func(ctx context.Context) error

// Injector injects one kind of fault into a target and returns how to undo
// it. An injector that keeps acting (such as crashloop) runs its loop until
// its Restore is called, and Restore waits for the loop to end.
type Injector interface {
	Inject(ctx context.Context, t *Target) (Restore, error)
}

// InjectorFunc adapts a function to Injector.
type InjectorFunc func(ctx context.Context, t *Target) (Restore, error)

// Inject calls f.
func (f InjectorFunc) Inject(ctx context.Context, t *Target) (Restore, error) { return f(ctx, t) }

// Target is what an injector acts on, and how.
type Target struct {
	Drill      int64             // the drill's id; actions are made as "drill:<id>"
	Service    string            // the drilled service
	Instance   medic.InstanceID  // scope instance: the instance under fault
	PID, Port  int               // the instance's process and port when the drill began
	Dependency string            // scope dependency: the stopped service
	Host       string            // scope fleet: the fleet host whose loss is simulated
	Member     string            // etcd-member-loss: the etcd member stopped (the Plan's pick)
	Hold       time.Duration     // scope fleet: how long the host stays gone (the scenario's hold)
	Params     map[string]string // the scenario's fault parameters
	Config     *config.Config
	Sup        Supervisor
	Traffic    Traffic // nil when no service has a proxy
	Clock      clock.Clock
	Logger     *slog.Logger
	// LoadRPS is the rate of the drill's own load (0: closed loop or none).
	LoadRPS float64
	// Note records a line of what the injector did; it appears in the report
	// and the drill.injected audit record.
	Note func(format string, args ...any)
	// Figure records a measured figure of the drill (a restore drill's
	// restore_seconds, data_loss_seconds …): the result's figures.
	Figure func(name string, v float64)
	// Fail adds a reason the drill fails, for an injector that measures
	// something the scenario's events cannot judge (data lost by a restore).
	Fail func(reason string)
}

// Actor names the drill in the audit log.
func (t *Target) Actor() string { return fmt.Sprintf("drill:%d", t.Drill) }

// status returns the current status of instance id.
func (t *Target) status(id medic.InstanceID) (supervise.InstanceStatus, bool) {
	for _, s := range t.Sup.Status() {
		if s.Name != id.Service {
			continue
		}
		for _, is := range s.Instances {
			if is.Index == id.Index {
				return is, true
			}
		}
	}
	return supervise.InstanceStatus{}, false
}

// service returns the current status of service name.
func (t *Target) service(name string) (supervise.ServiceStatus, bool) {
	for _, s := range t.Sup.Status() {
		if s.Name == name {
			return s, true
		}
	}
	return supervise.ServiceStatus{}, false
}

// Injectors maps fault kinds to injectors; safe for concurrent use.
type Injectors struct {
	mu sync.RWMutex
	m  map[string]Injector
}

// DefaultInjectors returns the built-in injectors: kill, sigstop, crashloop,
// http, proxy, disk, stop-dependency and client-storm.
func DefaultInjectors() *Injectors {
	r := &Injectors{m: map[string]Injector{}}
	r.Register("kill", InjectorFunc(injectKill))
	r.Register("sigstop", InjectorFunc(injectStop))
	r.Register("crashloop", InjectorFunc(injectCrashLoop))
	r.Register("http", InjectorFunc(injectHTTP))
	r.Register("proxy", InjectorFunc(injectProxy))
	r.Register("disk", InjectorFunc(injectDisk))
	r.Register("stop-dependency", InjectorFunc(injectStopDependency))
	r.Register("client-storm", InjectorFunc(injectClientStorm))
	return r
}

// Register adds (or replaces) the injector of kind.
func (r *Injectors) Register(kind string, in Injector) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[kind] = in
}

// Get returns the injector of kind.
func (r *Injectors) Get(kind string) (Injector, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	in, ok := r.m[kind]
	return in, ok
}

// param returns the fault parameter name, or def.
func (t *Target) param(name, def string) string {
	if v, ok := t.Params[name]; ok && v != "" {
		return v
	}
	return def
}

// wait waits d on the target's clock, or until ctx ends.
func (t *Target) wait(ctx context.Context, d time.Duration) bool {
	tm := t.Clock.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C():
		return true
	}
}

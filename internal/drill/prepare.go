package drill

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/events"
	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/supervise"
)

// Events is the agent's live event stream (events.Hub).
type Events interface {
	Subscribe(n int) (*events.Sub, []medic.Event)
}

// AuditLog is the durable event stream the final timeline is read from, so
// that every entry carries its audit sequence number (audit.Log).
type AuditLog interface {
	Head() audit.Head
	List(ctx context.Context, f audit.Filter) ([]audit.Record, error)
}

// Deps are what drills need from the agent. Sup, Events, Record and Config
// are required.
type Deps struct {
	Sup       Supervisor
	Traffic   Traffic  // nil: no proxies (drills run without load)
	Events    Events   // live: detection and recovery as they happen
	Audit     AuditLog // nil: the timeline comes from the live stream, without sequence numbers
	Record    func(ctx context.Context, ev medic.Event)
	Config    func() *config.Config // the running config (it changes on reload)
	Clock     clock.Clock
	Logger    *slog.Logger
	Catalog   *Catalog   // nil: the built-ins
	Injectors *Injectors // nil: DefaultInjectors
	// Components names what this agent runs beyond the core ("remedy",
	// "database"); a scenario that Requires one it lacks is refused.
	Components []string
	// Writes makes the write load of database drills; nil: database drills
	// run without load.
	Writes func(WriteRequest) (WriteLoad, error)
	// PollEvery is how often the supervisor and proxy state are sampled. Default 100ms.
	PollEvery time.Duration
}

// Request asks for one drill.
type Request struct {
	Scenario string `json:"scenario"`
	Service  string `json:"service"`
	// Instance picks the instance under fault (scope instance); default the
	// highest-numbered ready one.
	Instance *int `json:"instance,omitempty"`
	// Dependency picks the stopped service (scope dependency); default the
	// service's first depends_on.
	Dependency string `json:"dependency,omitempty"`
	// LoadRPS is the open-loop rate through the proxy; Connections a
	// closed-loop alternative. Default 50 requests per second.
	LoadRPS float64 `json:"load_rps,omitempty"`
	// Path is the request path of the load (default /): a path that calls a
	// dependency, for the dependency drills.
	Path        string `json:"path,omitempty"`
	Connections int    `json:"connections,omitempty"`
	// Duration, when set, replaces the scenario's deadline (time allowed
	// from injection to recovery); for a fleet drill it is how long the
	// host stays gone.
	Duration config.Duration `json:"duration,omitempty"`
	// Host is the fleet host a fleet drill (host-kill, host-partition) is
	// aimed at; the drill runs on another host's agent, which measures.
	Host string `json:"host,omitempty"`
	// Member is the etcd member etcd-member-loss stops; default one whose
	// loss keeps the quorum, run beside a host that declares it.
	Member string `json:"member,omitempty"`
}

// Planner is an injector that checks a drill against the live state before
// anything is touched, and may fix its timings and subject (the fleet
// drills: the lease TTL and the grace set how long a host stays gone). An
// error refuses the drill (it is wrapped in ErrRefused when it is not one).
type Planner interface {
	Plan(req Request, sc *Scenario, s *Subject) error
}

// LoadSpec is the load a drill drove.
type LoadSpec struct {
	URL         string  `json:"url,omitempty"`
	RPS         float64 `json:"rps,omitempty"`
	Connections int     `json:"connections,omitempty"`
	Note        string  `json:"note,omitempty"`
	// Class is the client class the load is sent as (fault param load_class).
	Class string `json:"class,omitempty"`
}

// plan is a checked request, ready to run.
type plan struct {
	sc       Scenario
	subject  Subject
	target   *Target
	injector Injector
	load     LoadSpec
	writes   float64 // database drills: the write rate instead of HTTP load
	actor    string
	cfg      *config.Config
}

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// allowed checks a service may be drilled: it exists, allows drills, and is
// not protected from automation.
func allowed(cfg *config.Config, name string) (*config.Service, error) {
	svc := cfg.Services[name]
	switch {
	case name == "":
		return nil, refused("no service named (pass --service)")
	case svc == nil:
		return nil, refused("unknown service %q", name)
	case !svc.Drills.Allow:
		return nil, refused("service %s does not allow drills (set drills: {allow: true} on it)", name)
	case svc.Remedy != nil && svc.Remedy.Protected:
		return nil, refused("service %s is protected (remedy.protected): drills never touch it", name)
	}
	return svc, nil
}

// prepare checks a request against the config, the catalog and the live
// state: safety first, nothing is touched here.
func prepare(d *Deps, req Request, actor string) (*plan, error) {
	cfg := d.Config()
	sc, err := d.Catalog.Scenario(cfg, req.Scenario)
	if err != nil {
		return nil, err
	}
	// dependency-down names two faults: a service of depends_on stopped, or a
	// dependency declared under `dependencies:` unreachable at medic's listener.
	if sc.Name == "dependency-down" && listenerDependency(cfg, req) != "" {
		if sc, err = d.Catalog.Scenario(cfg, "dependency-unreachable"); err != nil {
			return nil, err
		}
	}
	if req.Duration > 0 {
		sc.Deadline = req.Duration
	}
	for _, r := range sc.Requires {
		if !slices.Contains(d.Components, r) {
			return nil, refused("scenario %s needs the %s component, which this agent does not run", sc.Name, r)
		}
	}
	inj, ok := d.Injectors.Get(sc.Fault.Kind)
	if !ok {
		return nil, refused("scenario %s: no injector for fault %q in this agent", sc.Name, sc.Fault.Kind)
	}
	if slices.Contains(sc.Requires, "database") {
		return prepareDatabase(d, req, actor, cfg, sc, inj)
	}
	if sc.Scope == ScopeFleet {
		return prepareFleet(d, req, actor, cfg, sc, inj)
	}
	if req.Host != "" {
		return nil, refused("scenario %s does not take a host (only the fleet drills do)", sc.Name)
	}
	svc, err := allowed(cfg, req.Service)
	if err != nil {
		return nil, err
	}
	p := &plan{sc: sc, injector: inj, actor: actor, cfg: cfg, subject: Subject{Service: req.Service}}
	t := &Target{Service: req.Service, Params: sc.Fault.Params, Config: cfg, Sup: d.Sup, Traffic: d.Traffic,
		Clock: d.Clock, Logger: d.Logger}
	var st supervise.ServiceStatus
	for _, s := range d.Sup.Status() {
		if s.Name == req.Service {
			st = s
		}
	}
	switch sc.Scope {
	case ScopeInstance:
		var px *proxy.Stats
		if d.Traffic != nil && svc.Proxy != nil {
			for _, ps := range d.Traffic.Stats() {
				if ps.Service == req.Service {
					px = &ps
				}
			}
		}
		is, err := pickInstance(st, req.Instance, px)
		if err != nil {
			return nil, err
		}
		t.Instance, t.PID, t.Port = medic.InstanceID{Service: st.Name, Index: is.Index}, is.PID, is.Port
		p.subject.Instance = t.Instance.String()
	case ScopeDependency:
		dep := req.Dependency
		if dep == "" && len(svc.DependsOn) > 0 {
			dep = svc.DependsOn[0]
		}
		if dep == "" {
			return nil, refused("service %s has no depends_on: name the dependency to stop", req.Service)
		}
		if _, err := allowed(cfg, dep); err != nil {
			return nil, fmt.Errorf("dependency: %w", err)
		}
		t.Dependency, p.subject.Dependency = dep, dep
	}
	if sc.Fault.Kind == "egress" {
		if t.Dependency = listenerDependency(cfg, req); t.Dependency == "" {
			return nil, refused("service %s declares no dependency %q under dependencies:", req.Service, req.Dependency)
		}
	}
	if sc.Fault.Kind == "client-storm" {
		if err := stormClasses(svc, req.Service, sc.Fault.Params); err != nil {
			return nil, err
		}
	}
	p.target = t
	p.load = loadSpec(d, svc, req)
	return p, nil
}

// prepareFleet checks a fleet drill: the service it loads and measures
// (a fleet service that allows drills, default the only one), the host it
// is aimed at, and whatever the injector's Plan checks of the live fleet
// (the storm brake, the disruption budget, the survivors' capacity).
func prepareFleet(d *Deps, req Request, actor string, cfg *config.Config, sc Scenario, inj Injector) (*plan, error) {
	if req.Service == "" {
		var fleetSvcs []string
		for name, s := range cfg.Services {
			if s != nil && s.Fleet != nil {
				fleetSvcs = append(fleetSvcs, name)
			}
		}
		if len(fleetSvcs) != 1 {
			slices.Sort(fleetSvcs)
			return nil, refused("name the fleet service to load and measure (--service): this config has %d: %v", len(fleetSvcs), fleetSvcs)
		}
		req.Service = fleetSvcs[0]
	}
	svc, err := allowed(cfg, req.Service)
	if err != nil {
		return nil, err
	}
	switch {
	case svc.Fleet == nil:
		return nil, refused("service %s has no fleet section: a fleet drill measures a fleet service's capacity", req.Service)
	case sc.Fault.Kind == "etcd-member-loss" && req.Host != "":
		return nil, refused("scenario %s takes an etcd member (--member), not a host: the host that runs it stops it", sc.Name)
	case sc.Fault.Kind != "etcd-member-loss" && req.Member != "":
		return nil, refused("scenario %s takes a host (--host), not an etcd member", sc.Name)
	case req.Host == "" && sc.Fault.Kind != "etcd-member-loss":
		return nil, refused("scenario %s: name the host (--host) whose loss the fleet drill simulates", sc.Name)
	case req.Instance != nil || req.Dependency != "":
		return nil, refused("scenario %s takes a host, not an instance or a dependency", sc.Name)
	}
	p := &plan{sc: sc, injector: inj, actor: actor, cfg: cfg, subject: Subject{Service: req.Service}}
	if pl, ok := inj.(Planner); ok {
		if err := pl.Plan(req, &p.sc, &p.subject); err != nil {
			if !errors.Is(err, ErrRefused) {
				err = refused("%v", err)
			}
			return nil, err
		}
	}
	p.target = &Target{Service: req.Service, Host: req.Host, Member: cmp.Or(p.subject.Member, req.Member), Hold: p.sc.Hold.D(), Params: sc.Fault.Params, Config: cfg, Sup: d.Sup, Traffic: d.Traffic,
		Clock: d.Clock, Logger: d.Logger}
	p.load = loadSpec(d, svc, req)
	return p, nil
}

// listenerDependency is the dependency a request names among those its
// service declares under `dependencies:` (default: the first by name, when
// the service has no depends_on), or "".
func listenerDependency(cfg *config.Config, req Request) string {
	svc := cfg.Services[req.Service]
	if svc == nil || len(svc.Dependencies) == 0 {
		return ""
	}
	if req.Dependency != "" {
		if svc.Dependencies[req.Dependency] != nil {
			return req.Dependency
		}
		return ""
	}
	if len(svc.DependsOn) > 0 {
		return ""
	}
	names := make([]string, 0, len(svc.Dependencies))
	for n := range svc.Dependencies {
		names = append(names, n)
	}
	slices.Sort(names)
	return names[0]
}

// prepareDatabase checks a drill of a database: it exists on this agent and
// allows drills. The injector checks the cluster's live state (which member
// is the primary, where it runs) when it acts.
func prepareDatabase(d *Deps, req Request, actor string, cfg *config.Config, sc Scenario, inj Injector) (*plan, error) {
	db := cfg.Databases[req.Service]
	switch {
	case req.Service == "":
		return nil, refused("no database named (pass --service with the database's name)")
	case db == nil:
		return nil, refused("unknown database %q: this agent keeps no such database", req.Service)
	case !db.Drills.Allow:
		return nil, refused("database %s does not allow drills (set drills: {allow: true} on it)", req.Service)
	case db.Protected:
		return nil, refused("database %s is protected (databases.%s.protected): drills never touch it", req.Service, req.Service)
	case req.Connections > 0:
		return nil, refused("database drills drive an open-loop write load: give load_rps, not connections")
	}
	p := &plan{sc: sc, injector: inj, actor: actor, cfg: cfg, subject: Subject{Service: req.Service}}
	p.target = &Target{Service: req.Service, Params: sc.Fault.Params, Config: cfg, Sup: d.Sup, Traffic: d.Traffic,
		Clock: d.Clock, Logger: d.Logger}
	if d.Writes == nil {
		p.load = LoadSpec{Note: "no load: this agent cannot drive database writes"}
		return p, nil
	}
	p.writes = req.LoadRPS
	if p.writes == 0 {
		p.writes = 100
	}
	p.load = LoadSpec{RPS: p.writes}
	return p, nil
}

// pickInstance chooses the instance under fault and checks the disruption
// budget: the drill takes one ready instance away, so the others must still
// hold min_available (and at least one must remain to serve).
//
// Without a choice from the caller it takes the ready instance the proxy
// is most likely sending traffic to (the lowest latency estimate; the
// highest index on a tie): at low load the proxy's balancer can leave an
// instance without requests for many seconds after one slow answer, and a
// fault injected into it then shows nothing.
func pickInstance(st supervise.ServiceStatus, want *int, px *proxy.Stats) (supervise.InstanceStatus, error) {
	need := max(st.MinAvailable, 1)
	if st.Ready-1 < need {
		return supervise.InstanceStatus{}, refused("disruption budget: %s has %d of %d instances ready and min_available %d: no spare instance to drill",
			st.Name, st.Ready, st.Desired, st.MinAvailable)
	}
	latency := map[string]float64{}
	if px != nil {
		for _, ps := range px.Instances {
			if ps.InRotation {
				latency[ps.ID] = ps.LatencySeconds
			} else {
				latency[ps.ID] = math.Inf(1)
			}
		}
	}
	best := -1
	for i := len(st.Instances) - 1; i >= 0; i-- {
		is := st.Instances[i]
		if want != nil && is.Index != *want {
			continue
		}
		if !is.Ready {
			if want != nil {
				return is, refused("instance %s is not ready: drill a ready one", is.ID)
			}
			continue
		}
		if best < 0 || latency[is.ID] < latency[st.Instances[best].ID] {
			best = i
		}
	}
	if best >= 0 {
		return st.Instances[best], nil
	}
	if want != nil {
		return supervise.InstanceStatus{}, refused("service %s has no instance %d", st.Name, *want)
	}
	return supervise.InstanceStatus{}, refused("service %s has no ready instance", st.Name)
}

func loadSpec(d *Deps, svc *config.Service, req Request) LoadSpec {
	l := LoadSpec{RPS: req.LoadRPS, Connections: req.Connections}
	if l.RPS == 0 && l.Connections == 0 {
		l.RPS = 50
	}
	if svc.Proxy == nil || d.Traffic == nil {
		return LoadSpec{Note: "no load: the service has no proxy"}
	}
	for _, ps := range d.Traffic.Stats() {
		if ps.Service == req.Service && ps.Mode != config.ProxyModeTCP {
			l.URL = "http://" + ps.Listen + "/" + strings.TrimPrefix(req.Path, "/")
		}
	}
	if l.URL == "" {
		return LoadSpec{Note: "no load: the service's proxy is not an HTTP proxy"}
	}
	return l
}

// stormClasses checks the classes a client storm names exist at the service's proxy.
func stormClasses(svc *config.Service, name string, params map[string]string) error {
	if svc.Proxy == nil || !svc.Proxy.Clients.Enabled() {
		return refused("service %s has no client classes (proxy.clients): nothing to storm against", name)
	}
	for _, p := range []string{"class", "load_class"} {
		c := params[p]
		if p == "class" && c == "" {
			c = "agent"
		}
		if c == "" {
			continue
		}
		if _, ok := svc.Proxy.Clients.Classes[c]; !ok {
			return refused("service %s has no client class %q (%s); its classes: %v", name, c, p, svc.Proxy.Clients.ClassNames())
		}
	}
	return nil
}

package drill

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
)

// Kinds of observations the drill makes itself by polling the supervisor and
// the proxy (they carry no audit sequence number): an instance leaving or
// joining the proxy's rotation (readiness, ejection, drain), and the service
// losing or regaining full capacity (every desired instance ready and in rotation).
const (
	ObservedOut      = "observed.out_of_rotation"
	ObservedIn       = "observed.in_rotation"
	ObservedDegraded = "observed.capacity.degraded"
	ObservedFull     = "observed.capacity.full"
	ObservedAvoided  = "observed.avoided" // in rotation, but the balancer sends it nothing
	ObservedUsed     = "observed.used"    // traffic reaches it again
	ObservedFailing  = "observed.failing" // the proxy counts failed tries to it (passive health)
	// ObservedClassRefused: the proxy starts refusing a client class (429 or 503); field class.
	ObservedClassRefused = "observed.class.refused"
)

func on(kind, who string, fields ...string) Match {
	m := Match{Kind: kind, On: who}
	for i := 0; i+1 < len(fields); i += 2 {
		if m.Fields == nil {
			m.Fields = map[string]string{}
		}
		m.Fields[fields[i]] = fields[i+1]
	}
	return m
}

func dur(d time.Duration) config.Duration { return config.Duration(d) }

// Builtins returns the scenarios medic knows without configuration. The
// remediation and database scenarios need those components (Requires) and,
// for crashloop-rollback and the db-* ones, an injector the component
// registers; until then a drill of them is refused with the reason.
func Builtins() []Scenario {
	// The proxy sees a sick instance through its own tries (passive health)
	// and answers by ejecting it, or by no longer choosing it.
	failing := []Match{on(ObservedFailing, "target")}
	steered := []Match{on(ObservedOut+"|"+ObservedAvoided, "target")}
	restartedReady := []Match{on("instance.started", "target"), on("instance.ready", "target")}
	// The supervisor records an exit as the decision it takes about it.
	exited := []Match{on("instance.exited", "target"), on("instance.restart", "target"), on("instance.crashloop", "target"), on("instance.giveup", "target")}
	breakerOpen := []Match{on("dependency.breaker", "service", "to", "open")}
	noRestart := []Match{on("instance.stopping", "target"), on("instance.restart", "target"), on("instance.exited", "target")}
	list := []Scenario{
		{Name: "kill", FailureMode: "process crashes",
			Description: "SIGKILL one instance under load: medic sees the exit at once and restarts it; the proxy retries the requests it was serving on another instance",
			Fault:       Fault{Kind: "kill", Params: map[string]string{"signal": "KILL"}},
			Detect:      exited, Recover: restartedReady, MaxErrorRate: 0},
		{Name: "hang", FailureMode: "process hangs",
			Description: "SIGSTOP one instance (alive, not serving): the liveness probe fails and medic restarts it; the proxy cuts slow tries and retries elsewhere",
			Fault:       Fault{Kind: "sigstop"},
			Detect: []Match{on("probe.changed", "target", "probe", "liveness", "health", "failure"),
				on("probe.changed", "target", "probe", "readiness", "health", "failure"), on("instance.unready", "target")},
			Recover: restartedReady, MaxErrorRate: 0.01},
		{Name: "crashloop", FailureMode: "crash loop",
			Description: "kill every new process of one instance as soon as it starts: medic backs off, marks the crash loop, and keeps it out of traffic",
			Fault:       Fault{Kind: "crashloop", Params: map[string]string{"signal": "KILL"}},
			Detect:      []Match{on("instance.crashloop", "target")}, MaxErrorRate: 0.01, Deadline: dur(90 * time.Second)},
		{Name: "unready", FailureMode: "instance cannot serve",
			Description: "make one instance answer its readiness probe with 503: medic takes it out of traffic without restarting it, and puts it back once ready",
			Fault:       Fault{Kind: "http", Params: map[string]string{"path": "/fault/unready", "restore_path": "/fault/reset"}},
			Detect:      []Match{on("instance.unready", "target")}, Recover: []Match{on(ObservedOut, "target")},
			Forbid: noRestart, MaxErrorRate: 0.01, Hold: dur(3 * time.Second)},
		{Name: "latency", FailureMode: "slow instance",
			Description: "add latency beyond the proxy's try_timeout to one instance's traffic: tries are cut and retried, the instance is ejected",
			Fault:       Fault{Kind: "proxy", Params: map[string]string{"latency": "auto"}},
			Detect:      failing, Recover: steered, MaxErrorRate: 0.01},
		{Name: "errors", FailureMode: "instance answers errors",
			Description: "answer every try to one instance with 500: the proxy ejects it after consecutive failures",
			Fault:       Fault{Kind: "proxy", Params: map[string]string{"error_rate": "1"}},
			Detect:      failing, Recover: steered, MaxErrorRate: 0.05},
		{Name: "reset", FailureMode: "connections reset",
			Description: "reset every try to one instance before it answers: the proxy retries elsewhere and ejects it",
			Fault:       Fault{Kind: "proxy", Params: map[string]string{"reset_rate": "1"}},
			Detect:      failing, Recover: steered, MaxErrorRate: 0.01},
		{Name: "dependency-down", FailureMode: "dependency down", Scope: ScopeDependency,
			Description: "stop every instance of a service this one depends on: its instances go unready and leave traffic, none is restarted",
			Fault:       Fault{Kind: "stop-dependency"},
			Detect:      []Match{on("instance.unready", "service")}, Recover: []Match{on(ObservedOut, "service")},
			Forbid: []Match{on("instance.stopping", "service"), on("instance.restart", "service"), on("instance.exited", "service")}, MaxErrorRate: 1, Hold: dur(3 * time.Second)},
		// Dependencies declared under a service's `dependencies:`: the fault is
		// injected at medic's listener for it, so the timeout, the breaker, the
		// bulkhead and the fallback react as in a real outage; containment (the
		// breaker opening, calls failing fast or answered by the fallback) is the
		// recovery, and the report tells what the application's calls felt.
		{Name: "dependency-slow", FailureMode: "slow dependency", Scope: ScopeService, Requires: []string{"egress"},
			Description: "delay every call to one of the service's declared dependencies beyond its timeout: calls are cut at the timeout and the breaker opens, so the application fails fast (or gets the fallback) instead of waiting",
			Fault:       Fault{Kind: "egress", Params: map[string]string{"latency": "auto"}},
			Detect:      breakerOpen, MaxErrorRate: 1, Hold: dur(3 * time.Second)},
		{Name: "dependency-errors", FailureMode: "dependency answers errors", Scope: ScopeService, Requires: []string{"egress"},
			Description: "answer every call to one of the service's declared dependencies with 500: the breaker opens after its failures",
			Fault:       Fault{Kind: "egress", Params: map[string]string{"error_rate": "1"}},
			Detect:      breakerOpen, MaxErrorRate: 1, Hold: dur(3 * time.Second)},
		{Name: "dependency-unreachable", FailureMode: "dependency down", Scope: ScopeService, Requires: []string{"egress"},
			Description: "make one of the service's declared dependencies refuse every connection: the breaker opens after its failures (dependency-down runs this for a dependency under `dependencies:`)",
			Fault:       Fault{Kind: "egress", Params: map[string]string{"down": "true"}},
			Detect:      breakerOpen, MaxErrorRate: 1, Hold: dur(3 * time.Second)},
		// Client classes (proxy.clients): one class storms, the load is sent as
		// another; containment (the storming class refused while the load is
		// served) is the recovery.
		{Name: "agent-retry-storm", FailureMode: "client retry storm", Scope: ScopeService, Requires: []string{"classes"},
			Description:  "clients of the agent class try at 10× the load's rate, retrying every refusal with no backoff, a tenth with fresh made-up keys, while the load is sent as the human class: the agent class is refused (its rate, its seats), made-up keys land in the default class, and the humans keep their error rate ≤ 0.1% and p99 ≤ 1.5× normal",
			Fault:        Fault{Kind: "client-storm", Params: map[string]string{"class": "agent", "load_class": "human", "ratio": "10", "spoof": "0.1"}},
			Detect:       []Match{on(ObservedClassRefused, "service", "class", "agent")},
			MaxErrorRate: 0.001, MaxLatencyRatio: 1.5, Warmup: dur(5 * time.Second), Hold: dur(10 * time.Second), Settle: dur(5 * time.Second)},
		{Name: "disk-full", FailureMode: "disk full", Scope: ScopeHost, Requires: []string{"remedy"},
			Description:  "fill a directory's disk to 97% with a file dated 2h back: the disk_cleanup runbook deletes it and verifies",
			Fault:        Fault{Kind: "disk", Params: map[string]string{"usage": "0.97", "age": "2h"}},
			Detect:       []Match{on("remedy.decision", "any")},
			Recover:      []Match{on("remedy.step.end", "any", "action", "delete_files", "ok", "true"), on("remedy.run.end", "any", "result", "verified")},
			MaxErrorRate: 0.01, Deadline: dur(3 * time.Minute)},
		{Name: "leak", FailureMode: "memory leak", Requires: []string{"remedy"},
			Description:  "make one instance leak memory steadily: the leak_rolling_restart runbook restarts the instances within the disruption budget",
			Fault:        Fault{Kind: "http", Params: map[string]string{"path": "/fault/leak?mb_per_s=50", "restore_path": "/fault/reset"}},
			Detect:       []Match{on("remedy.decision", "any")},
			Recover:      []Match{on("instance.started", "target"), on("instance.ready", "target"), on("remedy.run.end", "any", "result", "verified")},
			MaxErrorRate: 0.01, Deadline: dur(5 * time.Minute)},
		{Name: "crashloop-rollback", FailureMode: "crash loop after a change", Scope: ScopeService, Requires: []string{"remedy"},
			Description:  "deploy a command that exits at once: the crashloop_rollback runbook rolls back to the last known-good command",
			Fault:        Fault{Kind: "bad-deploy"},
			Detect:       []Match{on("instance.crashloop", "service"), on("remedy.decision", "any")},
			Recover:      []Match{on("service.rolledback", "service"), on("remedy.run.end", "any", "result", "verified")},
			MaxErrorRate: 0.05, Deadline: dur(3 * time.Minute)},
	}
	// Deploy scenarios: the canary component's injector deploys a bad
	// release of the service (its deploy.strategy is canary) under load; the
	// verdict (or the crash loop) is the detection, the canary's rollback —
	// traffic back on the stable instances, canary and baseline stopped — is
	// the recovery. The report's timings are the time to verdict and the
	// time to rollback from the deploy; the load measures the client impact.
	canaryVerdict := []Match{on("deploy.canary.verdict", "service")}
	canaryBack := []Match{on("deploy.canary.rolledback", "service")}
	list = append(list,
		Scenario{Name: "deploy-bad-canary", FailureMode: "bad release (errors)", Scope: ScopeService, Requires: []string{"canary"},
			Description: "deploy the service's command with --error-rate 0.05 as a canary: the verdict fails it on its 5xx and it is rolled back, traffic on the stable instances first",
			Fault:       Fault{Kind: "canary", Params: map[string]string{"args": "--error-rate 0.05"}},
			Detect:      canaryVerdict, Recover: canaryBack, MaxErrorRate: 0.005, Deadline: dur(3 * time.Minute), Warmup: dur(3 * time.Second)},
		Scenario{Name: "deploy-slow-canary", FailureMode: "bad release (latency)", Scope: ScopeService, Requires: []string{"canary"},
			Description: "deploy the service's command with its --latency 20 % longer as a canary: the verdict fails it on the latency median and it is rolled back",
			Fault:       Fault{Kind: "canary", Params: map[string]string{"latency_factor": "1.2"}},
			Detect:      canaryVerdict, Recover: canaryBack, MaxErrorRate: 0.005, Deadline: dur(3 * time.Minute), Warmup: dur(3 * time.Second)},
		Scenario{Name: "deploy-crash", FailureMode: "bad release (crash loop)", Scope: ScopeService, Requires: []string{"canary"},
			Description: "deploy a command that exits at once as a canary: it crash-loops before it gets any traffic and is rolled back",
			Fault:       Fault{Kind: "canary", Params: map[string]string{"command": "exit 3"}},
			Detect:      canaryVerdict, Recover: canaryBack, MaxErrorRate: 0.001, Deadline: dur(3 * time.Minute), Warmup: dur(3 * time.Second)},
	)
	// Database scenarios: the database component registers their injectors
	// and drives the write load (single-row transactions through the primary
	// listeners). Detection is the agent's own decision or the first failed
	// write; recovery is the first write acknowledged after the outage.
	detectDB := "db.elected|db.promoted|db.fenced|db.demoted|db.starting|db.switchover|db.writes.failing"
	for _, db := range []struct{ name, mode, desc string }{
		{"db-kill-primary", "database primary fails", "SIGKILL the primary's agent and its postgres (the primary host dies): a replica is promoted and clients follow it"},
		{"db-kill-postgres", "database primary's postgres crashes", "SIGKILL the primary's postgres only: its agent restarts it, or a replica takes over after primary_start_timeout"},
		{"db-partition", "database primary cut from etcd", "cut the primary's agent from etcd: it fences itself, a replica is promoted, and the old primary rejoins as a replica once restored"},
		{"db-switchover", "planned switchover", "switch the primary over to the best replica: clients follow through medic's listeners"},
	} {
		list = append(list, Scenario{Name: db.name, FailureMode: db.mode, Scope: ScopeService, Requires: []string{"database"},
			Description: db.desc, Fault: Fault{Kind: db.name},
			Detect: []Match{on(detectDB, "any")}, Recover: []Match{on("db.writes.resumed", "target")},
			MaxErrorRate: 1, Deadline: dur(time.Minute), Warmup: dur(3 * time.Second), Settle: dur(time.Minute)})
	}
	// The restore drill proves backups: the database component's injector
	// restores the repository to the moment of the injection into a scratch
	// postgres, verifies it and measures the restore time and the data loss.
	list = append(list, Scenario{Name: "db-restore", FailureMode: "every database member lost", Scope: ScopeService, Requires: []string{"database"},
		Description: "restore the newest backup plus the WAL archived by now into a scratch postgres under write load, verify it (pg_amcheck, the newest write) and measure the restore time and the writes lost against the objectives",
		Fault:       Fault{Kind: "db-restore"},
		Detect:      []Match{on("db.restore.started", "any")}, Recover: []Match{on("db.restore.verified", "any")},
		MaxErrorRate: 0.01, Deadline: dur(time.Hour), Warmup: dur(5 * time.Second), Settle: dur(5 * time.Second)})
	// Fleet scenarios: the drill runs on one agent and is aimed at another
	// host, which simulates its own loss (the fleet component's injector
	// asks it through etcd); the drilling agent measures from the fleet's
	// side: the host seen suspect (its lease expired) is the detection, the
	// fleet service's desired ready count back on the survivors the
	// recovery, and the load goes through this agent's own proxy. The
	// injector's Plan sets how long the host stays gone (hold and deadline)
	// from the lease TTL and the grace.
	detectHost := []Match{on(string(medic.EventHostSuspect)+"|"+string(medic.EventHostLost), "host")}
	capacityBack := []Match{on(string(medic.EventFleetCapacityRestored), "service")}
	noBrake := []Match{on(string(medic.EventStormEngaged), "any")}
	list = append(list,
		Scenario{Name: "host-kill", FailureMode: "host dies", Scope: ScopeFleet, Requires: []string{"fleet"},
			Description: "the named host simulates its death: it SIGKILLs its instances of every fleet service, stops renewing its lease (its etcd connections cut) and answers 503 on its health endpoints; the others see it suspect when its lease expires, lost after the grace, and restore the desired count on the survivors; it comes back at the end and the fleet rebalances",
			Fault:       Fault{Kind: "host-kill"},
			Detect:      detectHost, Recover: capacityBack, Forbid: noBrake, MaxErrorRate: 0.001, Warmup: dur(3 * time.Second)},
		Scenario{Name: "host-partition", FailureMode: "host cut off", Scope: ScopeFleet, Requires: []string{"fleet"},
			Description: "the named host cuts itself from etcd and from its peers (its etcd connections cut, its peer checks and remote proxying refused) without stopping its instances: the others see it suspect, then lost, and take its share over; it stands down by the stand-down rule and rejoins at the end",
			Fault:       Fault{Kind: "host-partition"},
			Detect:      detectHost, Recover: capacityBack, Forbid: noBrake, MaxErrorRate: 0.001, Warmup: dur(3 * time.Second)},
		Scenario{Name: "etcd-member-loss", FailureMode: "etcd member lost", Scope: ScopeFleet, Requires: []string{"fleet"},
			Description: "the host that runs an etcd member (fleet.etcd_member) stops it with its stop command, and starts it again at the end; every agent sees it unhealthy and keeps working through the other members: no host suspect, no lease lost, no storm brake, no remediation or failover, no client error",
			Fault:       Fault{Kind: "etcd-member-loss"},
			Detect:      []Match{on("fleet.etcd.member_unhealthy", "any")},
			Recover:     []Match{on("fleet.etcd.member_loss_absorbed", "any")},
			Forbid: []Match{on(string(medic.EventHostSuspect)+"|"+string(medic.EventHostLost)+"|"+string(medic.EventStormEngaged)+"|"+
				string(medic.EventStoodDown)+"|remedy.step.start|instance.restart|db.promoted|db.demoted|db.fenced|db.failsafe", "any")},
			MaxErrorRate: 0, Warmup: dur(3 * time.Second)},
	)
	for i := range list {
		list[i] = list[i].withDefaults()
	}
	return list
}

// Catalog holds the scenarios a drill may name: the built-ins, those the
// components add, and the custom ones of medic.yaml. It is safe for
// concurrent use.
type Catalog struct {
	mu sync.RWMutex
	m  map[string]Scenario
}

// NewCatalog returns a catalog holding the built-ins.
func NewCatalog() *Catalog {
	c := &Catalog{m: map[string]Scenario{}}
	for _, s := range Builtins() {
		c.m[s.Name] = s
	}
	return c
}

// Add adds s, replacing a scenario of the same name.
func (c *Catalog) Add(s Scenario) error {
	s = s.withDefaults()
	if err := s.Validate(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[s.Name] = s
	return nil
}

// Get returns the scenario called name.
func (c *Catalog) Get(name string) (Scenario, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s, ok := c.m[name]
	if !ok {
		return Scenario{}, fmt.Errorf("%w %q", ErrUnknownScenario, name)
	}
	return s, nil
}

// List returns every scenario, sorted by name.
func (c *Catalog) List() []Scenario {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Scenario, 0, len(c.m))
	for _, s := range c.m {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Scenario resolves name against the config's custom scenarios first, then
// the catalog.
func (c *Catalog) Scenario(cfg *config.Config, name string) (Scenario, error) {
	if cfg != nil && cfg.Drills != nil {
		if sc := cfg.Drills.Scenarios[name]; sc != nil {
			s := FromConfig(name, sc)
			return s, s.Validate()
		}
	}
	return c.Get(name)
}

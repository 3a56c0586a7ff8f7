package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/drill/cron"
)

// DrillsConfig holds custom drill scenarios, drill schedules, and where the
// disk-fill fault may write. Which services may be drilled at all is each
// service's drills.allow.
type DrillsConfig struct {
	// Custom scenarios by name; a built-in's name replaces the built-in.
	Scenarios map[string]*DrillScenario `yaml:"scenarios" json:"scenarios,omitempty"`
	// Drills run on a schedule, each only against a service that allows drills.
	Schedule []DrillSchedule `yaml:"schedule" json:"schedule,omitempty"`
	// Absolute directories the disk fault may write its fill file into. Default none: disk drills are refused.
	DiskPaths []string `yaml:"disk_paths" json:"disk_paths,omitempty"`
}

// DrillScenario is a drill written as data: a fault to inject, the events
// that show medic detected and recovered from it, and the time allowed.
type DrillScenario struct {
	// One line saying what the drill proves.
	Description string `yaml:"description" json:"description,omitempty"`
	// The failure mode it proves, as `medic status` lists it. Default: the scenario's name.
	FailureMode string `yaml:"failure_mode" json:"failure_mode,omitempty"`
	// What the fault is aimed at: instance (one instance; the disruption budget applies), service,
	// dependency (a service named in depends_on) or host. Default instance.
	Scope string `yaml:"scope" json:"scope,omitempty" jsonschema:"enum=instance,enum=service,enum=dependency,enum=host"`
	// The fault to inject.
	Fault DrillFault `yaml:"fault" json:"fault"`
	// Detection: the first event after the injection matching any of these. Required.
	Detect []DrillMatch `yaml:"detect" json:"detect" jsonschema:"minItems=1"`
	// Recovery: events matching these, in this order, after the detection. Default: recovered when detected.
	Recover []DrillMatch `yaml:"recover" json:"recover,omitempty"`
	// Events that must not happen while the fault is injected, such as a restart for a readiness failure.
	Forbid []DrillMatch `yaml:"forbid" json:"forbid,omitempty"`
	// Client-visible errors allowed, as a fraction of the drill's requests. Default 0.01; 1 allows any.
	MaxErrorRate *float64 `yaml:"max_error_rate" json:"max_error_rate,omitempty" jsonschema:"minimum=0,maximum=1"`
	// Load before the injection: the baseline. Default 2s.
	Warmup Duration `yaml:"warmup" json:"warmup,omitempty"`
	// Time allowed from the injection to the recovery; then the fault is removed and the drill fails. Default 30s.
	Deadline Duration `yaml:"deadline" json:"deadline,omitempty"`
	// The fault stays injected at least this long, even once recovered. Default 0.
	Hold Duration `yaml:"hold" json:"hold,omitempty"`
	// Time allowed, after the fault is removed, to be back at full capacity. Default 30s.
	Settle Duration `yaml:"settle" json:"settle,omitempty"`
	// Load kept after full capacity is back, measuring latency after the fault. Default 2s.
	Cooldown Duration `yaml:"cooldown" json:"cooldown,omitempty"`
	// Components the agent must run for the expected recovery: remedy, database.
	Requires []string `yaml:"requires" json:"requires,omitempty"`
}

// DrillFault names an injector and its parameters.
type DrillFault struct {
	// kill, sigstop, crashloop, http, proxy, disk, stop-dependency, or a kind a component registers.
	Kind string `yaml:"kind" json:"kind"`
	// Parameters of the kind, e.g. signal: KILL; path: /fault/unready; latency: 1s; usage: "0.95".
	Params map[string]string `yaml:"params" json:"params,omitempty"`
}

// DrillMatch selects events of the agent's own stream (the audit log).
type DrillMatch struct {
	// Event kind, such as instance.exited, a prefix ending in * (remedy.*), or alternatives
	// separated by | (observed.out_of_rotation|observed.avoided).
	Kind string `yaml:"kind" json:"kind"`
	// Whose event: target (the instance under fault; default), service (the service or any of
	// its instances), dependency, or any.
	On string `yaml:"on" json:"on,omitempty" jsonschema:"enum=target,enum=service,enum=dependency,enum=any"`
	// Event fields that must have these values, e.g. {probe: liveness, health: failure}.
	Fields map[string]string `yaml:"fields" json:"fields,omitempty"`
	// Prefix the event's actor must have, e.g. "runbook:".
	Actor string `yaml:"actor" json:"actor,omitempty"`
}

// DrillSchedule runs a drill at times given by a cron expression.
type DrillSchedule struct {
	// Scenario: a built-in or custom scenario name. Required.
	Scenario string `yaml:"scenario" json:"scenario"`
	// Service (or database) to drill; it must allow drills. Required.
	Service string `yaml:"service" json:"service"`
	// When, in local time: "minute hour day-of-month month day-of-week", @daily, @every 6h … Required.
	Cron string `yaml:"cron" json:"cron"`
	// Open-loop load through the service's proxy, requests per second. Default 20.
	LoadRPS float64 `yaml:"load_rps" json:"load_rps,omitempty" jsonschema:"minimum=0"`
	// Fleet drills only: the host whose loss host-kill or host-partition simulates (another
	// host's top-level name; checked when the drill runs). Required for them, refused for the
	// others.
	Host string `yaml:"host" json:"host,omitempty"`
	// etcd-member-loss only: the etcd member to stop. Default: one whose loss keeps the quorum.
	Member string `yaml:"member" json:"member,omitempty"`
}

// FleetDrillScenarios are the built-in scenarios of scope fleet;
// HostDrillScenarios those of them aimed at a host.
var (
	FleetDrillScenarios = []string{"host-kill", "host-partition", "etcd-member-loss"}
	HostDrillScenarios  = []string{"host-kill", "host-partition"}
)

// BuiltinDrillScenarios names the scenarios medic knows without configuration
// (internal/drill's catalog; a test keeps the two lists equal).
var BuiltinDrillScenarios = []string{
	"kill", "hang", "crashloop", "unready", "latency", "errors", "reset", "disk-full", "leak", "dependency-down",
	"dependency-slow", "dependency-errors", "dependency-unreachable", "agent-retry-storm",
	"crashloop-rollback", "deploy-bad-canary", "deploy-slow-canary", "deploy-crash",
	"db-kill-primary", "db-kill-postgres", "db-partition", "db-switchover", "db-restore",
	"host-kill", "host-partition", "etcd-member-loss",
}

var drillOn = []string{"", "target", "service", "dependency", "any"}

// SetDefaults fills the unset durations and rates of every custom scenario
// and the load of every schedule.
func (d *DrillsConfig) SetDefaults() {
	for name, sc := range d.Scenarios {
		if sc == nil {
			continue
		}
		if sc.FailureMode == "" {
			sc.FailureMode = name
		}
		if sc.Scope == "" {
			sc.Scope = "instance"
		}
		if sc.MaxErrorRate == nil {
			r := 0.01
			sc.MaxErrorRate = &r
		}
		defDur(&sc.Warmup, 2*time.Second)
		defDur(&sc.Deadline, 30*time.Second)
		defDur(&sc.Settle, 30*time.Second)
		defDur(&sc.Cooldown, 2*time.Second)
	}
	for i := range d.Schedule {
		if d.Schedule[i].LoadRPS == 0 {
			d.Schedule[i].LoadRPS = 20
		}
	}
}

// Validate checks scenarios and schedules on their own.
func (d *DrillsConfig) Validate() []FieldIssue {
	var out []FieldIssue
	bad := func(field, format string, args ...any) {
		out = append(out, FieldIssue{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	for _, name := range sortedKeys(d.Scenarios) {
		sc := d.Scenarios[name]
		p := "scenarios." + name
		if sc == nil {
			bad(p, "empty scenario")
			continue
		}
		if !serviceName.MatchString(name) {
			bad(p, "scenario name %q: use [a-z0-9][a-z0-9_-]*", name)
		}
		if strings.TrimSpace(sc.Fault.Kind) == "" {
			bad(p+".fault.kind", "required: the injector, such as kill, sigstop, http, proxy")
		}
		if len(sc.Detect) == 0 {
			bad(p+".detect", "required: at least one event that shows the fault was detected")
		}
		for _, l := range []struct {
			name string
			ms   []DrillMatch
		}{{"detect", sc.Detect}, {"recover", sc.Recover}, {"forbid", sc.Forbid}} {
			for i, m := range l.ms {
				f := fmt.Sprintf("%s.%s[%d]", p, l.name, i)
				if strings.TrimSpace(m.Kind) == "" {
					bad(f+".kind", "required: an event kind such as instance.ready")
				}
				if !slices.Contains(drillOn, m.On) {
					bad(f+".on", "%q: want target, service, dependency or any", m.On)
				}
			}
		}
		if r := sc.MaxErrorRate; r != nil && (*r < 0 || *r > 1) {
			bad(p+".max_error_rate", "%v: want a fraction from 0 to 1", *r)
		}
		for _, r := range sc.Requires {
			if r != "remedy" && r != "database" {
				bad(p+".requires", "%q: want remedy or database", r)
			}
		}
	}
	for i, s := range d.Schedule {
		p := fmt.Sprintf("schedule[%d]", i)
		if s.Scenario == "" {
			bad(p+".scenario", "required")
		}
		if s.Service == "" {
			bad(p+".service", "required")
		}
		if _, err := cron.Parse(s.Cron); err != nil {
			bad(p+".cron", "%v", err)
		}
		if s.LoadRPS < 0 || s.LoadRPS > 10000 {
			bad(p+".load_rps", "%v: want 0 to 10000", s.LoadRPS)
		}
		if s.Host != "" && (len(s.Host) > 64 || !fleetName.MatchString(s.Host)) {
			bad(p+".host", "%q is not a host name: want %s, at most 64 characters (a host's top-level name)", s.Host, fleetName)
		}
		if s.Member != "" && (len(s.Member) > 64 || !fleetName.MatchString(s.Member)) {
			bad(p+".member", "%q is not an etcd member name: want %s, at most 64 characters", s.Member, fleetName)
		}
	}
	for i, dir := range d.DiskPaths {
		if !filepath.IsAbs(dir) || filepath.Clean(dir) == "/" {
			bad(fmt.Sprintf("disk_paths[%d]", i), "%q: want an absolute directory other than /", dir)
		}
	}
	return out
}

// ValidateIn checks that schedules name known scenarios and services that
// allow drills.
func (d *DrillsConfig) ValidateIn(c *Config) []FieldIssue {
	var out []FieldIssue
	for i, s := range d.Schedule {
		p := fmt.Sprintf("schedule[%d]", i)
		if s.Scenario != "" && d.Scenarios[s.Scenario] == nil && !slices.Contains(BuiltinDrillScenarios, s.Scenario) {
			out = append(out, FieldIssue{Field: p + ".scenario", Message: fmt.Sprintf("unknown scenario %q", s.Scenario)})
		}
		fleetDrill := d.Scenarios[s.Scenario] == nil && slices.Contains(FleetDrillScenarios, s.Scenario)
		hostDrill := fleetDrill && slices.Contains(HostDrillScenarios, s.Scenario)
		switch {
		case fleetDrill && c.Fleet == nil:
			out = append(out, FieldIssue{Field: p + ".scenario", Message: fmt.Sprintf("%s is a fleet drill: it needs the top-level fleet section", s.Scenario)})
		case hostDrill && s.Host == "":
			out = append(out, FieldIssue{Field: p + ".host", Message: fmt.Sprintf("required for %s: the host whose loss it simulates (it runs from this host's agent, so name another host)", s.Scenario)})
		case hostDrill && s.Host == c.Name:
			out = append(out, FieldIssue{Field: p + ".host", Message: fmt.Sprintf("%q is this host: a fleet drill runs from another host's agent, which outlives the simulated loss", s.Host)})
		case !hostDrill && s.Host != "":
			out = append(out, FieldIssue{Field: p + ".host", Message: fmt.Sprintf("%s does not take a host (only host-kill and host-partition do)", s.Scenario)})
		}
		if s.Member != "" && s.Scenario != "etcd-member-loss" {
			out = append(out, FieldIssue{Field: p + ".member", Message: fmt.Sprintf("%s does not take an etcd member (only etcd-member-loss does)", s.Scenario)})
		}
		if s.Service == "" {
			continue
		}
		svc := c.Services[s.Service]
		if db := c.Databases[s.Service]; svc == nil && db != nil {
			if !db.Drills.Allow {
				out = append(out, FieldIssue{Field: p + ".service", Message: fmt.Sprintf("database %q does not allow drills (set drills: {allow: true} on it)", s.Service)})
			}
			continue
		}
		switch {
		case svc == nil:
			out = append(out, FieldIssue{Field: p + ".service", Message: fmt.Sprintf("unknown service %q", s.Service)})
		case !svc.Drills.Allow:
			out = append(out, FieldIssue{Field: p + ".service", Message: fmt.Sprintf("service %q does not allow drills (set drills: {allow: true} on it)", s.Service)})
		case fleetDrill && svc.Fleet == nil:
			out = append(out, FieldIssue{Field: p + ".service", Message: fmt.Sprintf("service %q has no fleet section: a fleet drill loads and measures a fleet service", s.Service)})
		}
	}
	return out
}

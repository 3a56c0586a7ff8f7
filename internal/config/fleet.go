package config

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"
)

// Fleet makes this agent a member of a fleet of medic agents on many hosts,
// coordinated through the top-level etcd cluster (never a gossip layer of
// medic's own). The agent joins with a lease under
// <etcd.prefix>/fleet/<name>/hosts/<host>, the host being the top-level name;
// a host whose lease expired is suspect, and lost once its key has been gone
// for grace (docs/fleet.md).
type Fleet struct {
	// Name of the fleet, the same on every host of it: [A-Za-z0-9][A-Za-z0-9_.-]*. Required.
	Name string `yaml:"name" json:"name"`
	// Address (IP or DNS name, no port) at which the other hosts and load balancers reach this
	// host's proxies and instances. Required.
	Address string `yaml:"address" json:"address"`
	// Instances of fleet services this host can run, published with its membership. 0 = no
	// limit. Default 0.
	Capacity int `yaml:"capacity" json:"capacity,omitempty" jsonschema:"minimum=0,maximum=100000"`
	// Time to live of the host's lease in etcd, whole seconds, from 2s to 5m; the agent renews it
	// every lease_ttl/3. A host that stops renewing loses its key this long after its last
	// renewal. Default 10s.
	LeaseTTL Duration `yaml:"lease_ttl" json:"lease_ttl,omitempty"`
	// Time a host's key must stay gone before the host counts as lost (its share moves to the
	// others); until then it is suspect. At least lease_ttl, at most 1h, and at least
	// lease_ttl/3 + 1.25s (a host cut off stands down and stops its instances within it).
	// Default 40s (the Kubernetes node grace).
	Grace Duration `yaml:"grace" json:"grace,omitempty"`
	// Storm brake: fleet-wide automation pauses while more than this share of the hosts is
	// suspect or lost (docs/fleet.md). Default unhealthy_share 0.5.
	StormBrake *StormBrake `yaml:"storm_brake" json:"storm_brake,omitempty"`
	// Longest random delay before this agent joins the fleet at start: it waits a uniform
	// random time in [0, join_jitter], so a fleet-wide restart is not a join storm on etcd. 0
	// joins at once; at most 1m. Default 2s.
	JoinJitter *Duration `yaml:"join_jitter" json:"join_jitter,omitempty"`
	// The etcd member that runs beside this agent on this host, and how to stop and start it:
	// the etcd-member-loss drill stops it through this host (docs/fleet.md, Drills). Default
	// none: the drill refuses.
	EtcdMember *EtcdMember `yaml:"etcd_member" json:"etcd_member,omitempty"`
}

// EtcdMember is the etcd member on this host, as the etcd-member-loss drill
// stops and starts it. Commands are argv (no shell): [systemctl, stop,
// etcd], [docker, stop, etcd], [/usr/local/bin/etcd-ctl, stop] all fit.
type EtcdMember struct {
	// The member's name in the etcd cluster (etcd --name, as etcdctl member list shows it).
	// Required.
	Name string `yaml:"name" json:"name"`
	// Command that stops the member and returns once it is stopped, such as [systemctl, stop,
	// etcd]. Run without a shell; a non-zero exit fails the drill (the start command is run
	// then). Required.
	Stop []string `yaml:"stop" json:"stop" jsonschema:"minItems=1"`
	// Command that starts the member again and returns (it need not wait for the member's
	// health: the drill measures that), such as [systemctl, start, etcd]. Required.
	Start []string `yaml:"start" json:"start" jsonschema:"minItems=1"`
	// Time allowed to each command; then it is killed (its process group) and counts as
	// failed. From 1s to 5m. Default 30s.
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
}

// DefaultJoinJitter is fleet.join_jitter's default; MaxJoinJitter its bound.
const (
	DefaultJoinJitter     = 2 * time.Second
	MaxJoinJitter         = time.Minute
	DefaultEtcdCmdTimeout = 30 * time.Second
	MaxEtcdCmdTimeout     = 5 * time.Minute
)

// Jitter returns join_jitter, its default when unset.
func (f *Fleet) Jitter() time.Duration {
	if f.JoinJitter == nil {
		return DefaultJoinJitter
	}
	return f.JoinJitter.D()
}

// StormBrake pauses fleet-wide automation when much of the fleet is unhealthy.
type StormBrake struct {
	// Share of the hosts (those this agent has seen) that may be suspect or lost before
	// automation pauses fleet-wide: the brake engages when more than this share is. More than
	// 0, at most 1 (1: never). Default 0.5: 2 of 3 hosts pause, 1 of 2 does not.
	UnhealthyShare float64 `yaml:"unhealthy_share" json:"unhealthy_share,omitempty"`
}

// DefaultStormShare is storm_brake.unhealthy_share's default.
const DefaultStormShare = 0.5

// StormShare returns the storm brake's threshold, its default when unset.
func (f *Fleet) StormShare() float64 {
	if f.StormBrake == nil || f.StormBrake.UnhealthyShare == 0 {
		return DefaultStormShare
	}
	return f.StormBrake.UnhealthyShare
}

// The fleet defaults: a 10s lease renewed every 3.3s survives two lost
// renewals, and a 40s grace (Kubernetes' node-monitor-grace-period) lets an
// agent whose lease expired during an etcd hiccup rejoin several times over
// before its host counts as lost.
const (
	DefaultFleetLeaseTTL = 10 * time.Second
	DefaultFleetGrace    = 40 * time.Second
	// MaxFleetLeaseTTL and MaxFleetGrace bound the settings: a longer lease
	// or grace leaves a dead host's share unserved for longer than anyone wants.
	MaxFleetLeaseTTL = 5 * time.Minute
	MaxFleetGrace    = time.Hour
)

// The stand-down of a host cut from etcd and from its peers
// (docs/fleet.md, "Why this bound holds"). The host checks every
// lease_ttl/3 and probes its peers for at most StandDownProbe, so it stands
// down at most lease_ttl/3 + StandDownProbe after its lease may have
// expired; it must have stopped its fleet instances by grace − StandDownSlack
// after that moment (the others start its share no sooner than grace after
// it). Each instance's stop.grace is cut to what is left until then, SIGKILL
// at the end. Validate requires grace − lease_ttl/3 − StandDownProbe −
// StandDownSlack ≥ MinStandDownRoom, so that a stand-down decided on time
// still leaves its instances that long to drain and stop.
const (
	StandDownProbe   = 500 * time.Millisecond
	StandDownSlack   = 250 * time.Millisecond
	MinStandDownRoom = 500 * time.Millisecond
)

// StandDownRoom is the time a stand-down decided at the latest leaves the
// host's instances to stop: grace − lease_ttl/3 − StandDownProbe −
// StandDownSlack.
func StandDownRoom(leaseTTL, grace time.Duration) time.Duration {
	return grace - leaseTTL/3 - StandDownProbe - StandDownSlack
}

var fleetName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// SetDefaults fills the unset fleet settings.
func (f *Fleet) SetDefaults() {
	dbDefaultDur(&f.LeaseTTL, DefaultFleetLeaseTTL)
	dbDefaultDur(&f.Grace, DefaultFleetGrace)
	if f.EtcdMember != nil {
		dbDefaultDur(&f.EtcdMember.Timeout, DefaultEtcdCmdTimeout)
	}
}

// Validate checks the fleet on its own, lease_ttl and grace together.
func (f *Fleet) Validate() []FieldIssue {
	var is []FieldIssue
	bad := func(field, format string, args ...any) {
		is = append(is, FieldIssue{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	switch {
	case f.Name == "":
		bad("name", "required: the fleet's name, the same on every host, such as prod")
	case len(f.Name) > 64 || !fleetName.MatchString(f.Name):
		bad("name", "%q must match %s and be at most 64 characters (it is an etcd key segment)", f.Name, fleetName)
	}
	switch a := f.Address; {
	case a == "":
		bad("address", "required: the IP or DNS name other hosts reach this host at, such as 10.0.0.5")
	case strings.ContainsAny(a, " /\t"):
		bad("address", "%q is not an IP or DNS name", a)
	default:
		if _, _, err := net.SplitHostPort(a); err == nil {
			bad("address", "%q has a port: write the host only (each service has its own ports)", a)
		}
	}
	ttl, grace := f.LeaseTTL.D(), f.Grace.D()
	switch {
	case ttl < 2*time.Second:
		bad("lease_ttl", "%v is below 2s, the shortest lease etcd grants", ttl)
	case ttl > MaxFleetLeaseTTL:
		bad("lease_ttl", "%v is above %v", ttl, MaxFleetLeaseTTL)
	case ttl%time.Second != 0:
		bad("lease_ttl", "%v is not whole seconds: etcd leases are granted in seconds", ttl)
	}
	switch {
	case grace < ttl:
		bad("grace", "%v is shorter than lease_ttl %v: an agent whose lease expired must have at least one "+
			"lease_ttl to rejoin before its host counts as lost", grace, ttl)
	case grace > MaxFleetGrace:
		bad("grace", "%v is above %v", grace, MaxFleetGrace)
	case ttl >= 2*time.Second && StandDownRoom(ttl, grace) < MinStandDownRoom:
		bad("grace", "%v leaves a host cut from etcd %v to stop its instances (grace − lease_ttl/3 − %v of peer probes − %v slack, "+
			"lease_ttl %v): want at least %v; raise fleet.grace or lower fleet.lease_ttl",
			grace, StandDownRoom(ttl, grace), StandDownProbe, StandDownSlack, ttl, MinStandDownRoom)
	}
	if sb := f.StormBrake; sb != nil && (sb.UnhealthyShare < 0 || sb.UnhealthyShare > 1) {
		bad("storm_brake.unhealthy_share", "%g is not a share: want more than 0, at most 1 (1 never brakes)", sb.UnhealthyShare)
	}
	if j := f.JoinJitter; j != nil && (j.D() < 0 || j.D() > MaxJoinJitter) {
		bad("join_jitter", "%v: want 0 (join at once) to %v", j.D(), MaxJoinJitter)
	}
	if em := f.EtcdMember; em != nil {
		switch {
		case em.Name == "":
			bad("etcd_member.name", "required: the member's name in the etcd cluster (etcdctl member list)")
		case len(em.Name) > 64 || !fleetName.MatchString(em.Name):
			bad("etcd_member.name", "%q must match %s and be at most 64 characters", em.Name, fleetName)
		}
		for _, c := range []struct {
			field string
			argv  []string
		}{{"stop", em.Stop}, {"start", em.Start}} {
			switch {
			case len(c.argv) == 0:
				bad("etcd_member."+c.field, "required: the command (argv, no shell) that %ss the member, such as [systemctl, %s, etcd]", c.field, c.field)
			case strings.TrimSpace(c.argv[0]) == "":
				bad("etcd_member."+c.field+"[0]", "empty program name")
			}
		}
		if t := em.Timeout.D(); t != 0 && (t < time.Second || t > MaxEtcdCmdTimeout) {
			bad("etcd_member.timeout", "%v: want 1s to %v", t, MaxEtcdCmdTimeout)
		}
	}
	return is
}

// ValidateIn checks what the fleet needs from the rest of the config.
func (f *Fleet) ValidateIn(c *Config) []FieldIssue {
	var is []FieldIssue
	if c.Etcd == nil {
		is = append(is, FieldIssue{"name", "a fleet needs the top-level etcd section: membership lives in etcd"})
	}
	if c.Name != "" && (len(c.Name) > 64 || !fleetName.MatchString(c.Name)) {
		is = append(is, FieldIssue{"name", fmt.Sprintf("the host name %q (top-level name) must match %s and be at most 64 characters", c.Name, fleetName)})
	}
	return is
}

// ServiceFleet is a service's fleet-wide placement (docs/fleet.md,
// Placement): instances spread over the fleet's hosts by a fixed rule, a
// lost host's share taken over by the others, a returned host rebalanced
// one instance at a time.
type ServiceFleet struct {
	// Instances of the service across the whole fleet, 1 to 1000. Required.
	Instances int `yaml:"instances" json:"instances" jsonschema:"minimum=1,maximum=1000"`
	// How instances are spread: host (as evenly as possible over the hosts, by name). Default
	// host, the only value.
	Spread string `yaml:"spread" json:"spread,omitempty" jsonschema:"enum=host"`
	// Only these hosts (their top-level names) run the service. Default: every host of the fleet.
	Hosts []string `yaml:"hosts" json:"hosts,omitempty"`
	// Most instances one host runs; what fits nowhere is reported short. 0 = no limit. The
	// service's ports run from port to port+max_per_host (one more for a rebalance's surge).
	// Default 0.
	MaxPerHost int `yaml:"max_per_host" json:"max_per_host,omitempty" jsonschema:"minimum=0,maximum=1000"`
}

// SpreadHost is the only spread: even over hosts.
const SpreadHost = "host"

// MaxShare is the most instances one host may run of the service: its cap
// (or all of them) plus one for a rebalance's surge, bounded by 1000.
func (f *ServiceFleet) MaxShare() int {
	n := f.Instances
	if f.MaxPerHost > 0 && f.MaxPerHost < n {
		n = f.MaxPerHost
	}
	return min(n+1, maxInstances)
}

func (f *ServiceFleet) validate(ck *checker, p string, c *Config) {
	if c.Fleet == nil {
		ck.add(p, "a fleet-wide placement needs the top-level fleet section (docs/fleet.md)")
	}
	switch {
	case f.Instances < 1:
		ck.add(p+".instances", "required: the instances across the fleet, at least 1, got %d", f.Instances)
	case f.Instances > maxInstances:
		ck.add(p+".instances", "must be at most %d, got %d", maxInstances, f.Instances)
	}
	if f.Spread != "" && f.Spread != SpreadHost {
		ck.add(p+".spread", "must be %q (even over the hosts), got %q", SpreadHost, f.Spread)
	}
	seen := map[string]bool{}
	for i, h := range f.Hosts {
		hp := fmt.Sprintf("%s.hosts[%d]", p, i)
		switch {
		case len(h) > 64 || !fleetName.MatchString(h):
			ck.add(hp, "%q is not a host name: want %s, at most 64 characters (a host's top-level name)", h, fleetName)
		case seen[h]:
			ck.add(hp, "%q is listed twice", h)
		}
		seen[h] = true
	}
	switch {
	case f.MaxPerHost < 0:
		ck.add(p+".max_per_host", "must not be negative, got %d", f.MaxPerHost)
	case f.MaxPerHost > 0 && len(f.Hosts) > 0 && f.MaxPerHost*len(f.Hosts) < f.Instances:
		ck.add(p+".max_per_host", "%d on each of the %d hosts listed holds %d, fewer than the %d instances",
			f.MaxPerHost, len(f.Hosts), f.MaxPerHost*len(f.Hosts), f.Instances)
	}
}

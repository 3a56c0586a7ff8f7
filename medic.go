// Package medic holds the domain types shared by every component: services,
// instances, their states, health results and the events that join the loops.
// It imports nothing but the standard library (the wtf layout: domain at the
// root, dependencies in packages named after them).
package medic

import (
	"fmt"
	"time"
)

// InstanceState is the lifecycle state of one supervised instance.
// The zero value is StateUnknown.
type InstanceState int

const (
	StateUnknown   InstanceState = iota
	StatePending                 // waiting for dependencies or its first start
	StateStarting                // process started, startup probe not yet passed
	StateRunning                 // process running and started
	StateBackoff                 // exited; waiting out the restart delay
	StateCrashLoop               // restarted too often within the window; still backing off
	StateStopping                // stop signal sent, grace period running
	StateStopped                 // stopped on purpose (or policy says no restart)
	StateFailed                  // could not be started (bad command, missing binary)
)

var stateNames = [...]string{"unknown", "pending", "starting", "running", "backoff", "crashloop", "stopping", "stopped", "failed"}

func (s InstanceState) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("state(%d)", int(s))
	}
	return stateNames[s]
}

// MarshalText renders the state by name in JSON and YAML.
func (s InstanceState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a state name.
func (s *InstanceState) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = InstanceState(i)
			return nil
		}
	}
	return fmt.Errorf("unknown instance state %q", b)
}

// Health is the result of a probe. The zero value is HealthUnknown (never Success:
// kubelet's iota-1 trick is the counterexample).
type Health int

const (
	HealthUnknown Health = iota
	HealthSuccess
	HealthFailure
)

func (h Health) String() string {
	switch h {
	case HealthSuccess:
		return "success"
	case HealthFailure:
		return "failure"
	}
	return "unknown"
}

// MarshalText renders the health by name in JSON.
func (h Health) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses a health name.
func (h *Health) UnmarshalText(b []byte) error {
	for _, v := range []Health{HealthUnknown, HealthSuccess, HealthFailure} {
		if v.String() == string(b) {
			*h = v
			return nil
		}
	}
	return fmt.Errorf("unknown health %q", b)
}

// ProbeKind names the role of a probe, with Kubernetes' meanings.
type ProbeKind string

const (
	ProbeStartup   ProbeKind = "startup"
	ProbeLiveness  ProbeKind = "liveness"
	ProbeReadiness ProbeKind = "readiness"
)

// InstanceID names one replica of a service: "web/0".
type InstanceID struct {
	Service string
	Index   int
}

func (id InstanceID) String() string { return fmt.Sprintf("%s/%d", id.Service, id.Index) }

// MarshalText renders the id as "service/index".
func (id InstanceID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// ParseInstanceID parses "service/index".
func ParseInstanceID(s string) (InstanceID, error) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			var n int
			if _, err := fmt.Sscanf(s[i+1:], "%d", &n); err != nil || i == 0 || n < 0 {
				break
			}
			return InstanceID{Service: s[:i], Index: n}, nil
		}
	}
	return InstanceID{}, fmt.Errorf("instance id %q: want SERVICE/INDEX", s)
}

// Exit describes how a process ended.
type Exit struct {
	Code   int       `json:"code"`             // -1 when killed by a signal
	Signal string    `json:"signal,omitempty"` // e.g. "killed", "terminated"
	At     time.Time `json:"at"`
	Reason string    `json:"reason"` // "exit status 1", "signal: killed", "liveness probe failed: …"
}

// Success reports whether the process exited with status 0.
func (e Exit) Success() bool { return e.Code == 0 && e.Signal == "" }

// EventKind classifies an Event.
type EventKind string

const (
	EventStarted   EventKind = "instance.started"
	EventExited    EventKind = "instance.exited"
	EventRestart   EventKind = "instance.restart"   // decision: restart after delay
	EventCrashLoop EventKind = "instance.crashloop" // decision: entered crash loop
	EventGiveUp    EventKind = "instance.giveup"    // decision: policy says no restart
	EventStopping  EventKind = "instance.stopping"
	EventStopped   EventKind = "instance.stopped"
	EventState     EventKind = "instance.state"
	EventProbe     EventKind = "probe.changed" // edge-triggered probe result change
	// EventProbeUnknown: a probe could not judge because medic itself is short
	// of resources (file descriptors, memory, ports); nothing is counted against the instance.
	EventProbeUnknown EventKind = "probe.unknown"
	EventReady        EventKind = "instance.ready"
	EventUnready      EventKind = "instance.unready"
	EventNotify       EventKind = "instance.notify" // sd_notify message
	EventScaled       EventKind = "service.scaled"
	EventLeftover     EventKind = "instance.leftover"   // a process group left by a previous medic was stopped
	EventAdopted      EventKind = "instance.adopted"    // a process left running by a previous medic was taken over
	EventOOMKilled    EventKind = "instance.oom_killed" // the instance reached its memory limit and the kernel's OOM killer ended it
	EventRolledBack   EventKind = "service.rolledback"
	EventRolledOut    EventKind = "service.rolledout"       // a reload's replacement of a changed service ended (done or stopped)
	EventRolloutStuck EventKind = "service.rollout.waiting" // a rollout has waited RolloutStuckAfter on one step
	EventConfigReload EventKind = "config.reload"
	EventAPIDenied    EventKind = "api.denied"
	EventAPIAction    EventKind = "api.action"
	// EventBreaker is a dependency's circuit breaker changing state (closed, open,
	// half-open); Fields hold service, dependency, from and to.
	EventBreaker EventKind = "dependency.breaker"
	// EventClassBreaker is a client class's own breaker on a service's proxy
	// changing state (closed, open, half-open); Target is "SERVICE/CLASS",
	// Fields hold service, class, from and to.
	EventClassBreaker EventKind = "proxy.class_breaker"
	// Fleet membership as this agent sees it (internal/fleet); Target is
	// "fleet/<fleet>/<host>", Fields hold from, to, address, lease.
	EventHostJoined   EventKind = "fleet.host.joined"   // a host's key appeared, or this agent joined
	EventHostSuspect  EventKind = "fleet.host.suspect"  // a host's key is gone; lost after the grace
	EventHostLost     EventKind = "fleet.host.lost"     // a host's key stayed gone for the grace
	EventHostReturned EventKind = "fleet.host.returned" // a suspect or lost host's key is back
	EventHostUpdated  EventKind = "fleet.host.updated"  // a host rejoined with a new lease or new information
	EventFleetView    EventKind = "fleet.view"          // the hosts present when this agent started watching
	// EventPlacement: this host, coordinating, wrote a fleet service's new
	// assignment (internal/placement); Target is the service, Fields hold
	// from, to and storm.
	EventPlacement EventKind = "fleet.placement"
	// EventAnchorRefused: this host's audit log does not extend the chain
	// head anchored in etcd (its store was replaced or rewritten); the agent
	// keeps the old anchor and stops anchoring (internal/fleetview).
	EventAnchorRefused EventKind = "fleet.audit.refused"
)

// Event is one typed observation or decision. Every event carries a Reason; the
// same string goes to the log, the audit record and the API.
type Event struct {
	Time   time.Time         `json:"time"`
	Kind   EventKind         `json:"kind"`
	Target string            `json:"target"` // "web/0", "web", "config"
	Actor  string            `json:"actor"`  // "supervisor", "probe", "api:alice"
	Reason string            `json:"reason"`
	Fields map[string]string `json:"fields,omitempty"`
}

// The storm brake of the fleet (internal/fleet); Target is "fleet/<fleet>",
// Fields hold unhealthy, hosts and unhealthy_share.
const (
	// EventStormEngaged: more than fleet.storm_brake.unhealthy_share of the
	// hosts are suspect or lost: fleet-wide automation pauses (escalated).
	EventStormEngaged EventKind = "fleet.storm_brake.engaged"
	// EventStormReleased: the unhealthy share is back at or under the
	// threshold: automation resumes (resolves the escalation).
	EventStormReleased EventKind = "fleet.storm_brake.released"
	// EventStoodDown: this host, cut from etcd past its lease and reaching
	// none of its peers, stops all its fleet instances at once by a
	// deadline (the others run its share; recorded when decided and when
	// done); EventStoodUp: it rejoined and runs its share again.
	EventStoodDown EventKind = "fleet.stood_down"
	EventStoodUp   EventKind = "fleet.stood_up"
	// EventFleetCapacityDegraded and EventFleetCapacityRestored: during a
	// fleet drill, the drilling agent saw a fleet service's ready instances
	// on the hosts other than the drilled one below the desired count, and
	// back at it (target the service; fields ready, desired, host).
	EventFleetCapacityDegraded EventKind = "fleet.capacity.degraded"
	EventFleetCapacityRestored EventKind = "fleet.capacity.restored"
	// EventFleetDrillDown and EventFleetDrillUp: this host starts and ends
	// simulating its own loss for another host's fleet drill.
	EventFleetDrillDown EventKind = "fleet.drill.down"
	EventFleetDrillUp   EventKind = "fleet.drill.up"
)

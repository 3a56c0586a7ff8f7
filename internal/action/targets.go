package action

import (
	"fmt"
	"strings"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/supervise"
)

// Scope says what kind of target an action takes.
type Scope int

const (
	ScopeNone     Scope = iota // exec, http, notify, delete_files: the target only names the remediation
	ScopeInstance              // restart_instance, stop, start, drain, undrain: an instance, or every instance of a service
	ScopeService               // rolling_restart, scale, rollback: a service
)

// ScopeOf returns the scope of a built-in action.
func ScopeOf(action string) Scope {
	switch action {
	case "restart_instance", "stop", "start", "drain", "undrain":
		return ScopeInstance
	case "rolling_restart", "scale", "rollback":
		return ScopeService
	}
	return ScopeNone
}

// Disruptive reports whether an action takes ready instances out of service
// (the disruption budget applies to it).
func Disruptive(action string) bool {
	switch action {
	case "restart_instance", "stop", "drain", "rolling_restart":
		return true
	}
	return false
}

// Instances expands target to instance ids: "web/0" is that instance (it
// must exist), "web" every instance of the service. An empty target is an
// error, never "everything".
func Instances(target string, status []supervise.ServiceStatus) ([]medic.InstanceID, error) {
	if strings.TrimSpace(target) == "" {
		return nil, fmt.Errorf("empty target: %w", ErrNoTargets)
	}
	svc, idx, isInstance := strings.Cut(target, "/")
	for _, s := range status {
		if s.Name != svc {
			continue
		}
		if isInstance {
			id, err := medic.ParseInstanceID(target)
			if err != nil {
				return nil, fmt.Errorf("target %q: %w", target, err)
			}
			for _, in := range s.Instances {
				if in.Index == id.Index {
					return []medic.InstanceID{id}, nil
				}
			}
			return nil, fmt.Errorf("target %q: service %s has no instance %s: %w", target, svc, idx, ErrNoTargets)
		}
		ids := make([]medic.InstanceID, 0, len(s.Instances))
		for _, in := range s.Instances {
			ids = append(ids, medic.InstanceID{Service: svc, Index: in.Index})
		}
		return ids, nil
	}
	return nil, fmt.Errorf("target %q: unknown service %s: %w", target, svc, ErrNoTargets)
}

// Service returns the service a service-scoped action targets: "web" as is;
// an instance id is refused, so that a runbook cannot widen an instance
// target into a whole service by accident.
func Service(target string, status []supervise.ServiceStatus) (string, error) {
	if strings.TrimSpace(target) == "" {
		return "", fmt.Errorf("empty target: %w", ErrNoTargets)
	}
	if strings.Contains(target, "/") {
		return "", fmt.Errorf("target %q is an instance; this action takes a service", target)
	}
	for _, s := range status {
		if s.Name == target {
			return target, nil
		}
	}
	return "", fmt.Errorf("unknown service %q: %w", target, ErrNoTargets)
}

// ServiceOf returns the service part of "web/0" or "web".
func ServiceOf(target string) string {
	svc, _, _ := strings.Cut(target, "/")
	return svc
}

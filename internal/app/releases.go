package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
)

// validateSpec checks the running config with service's spec replaced by
// spec: a deploy obeys the rules of the config file (ports, probes, budget).
func (m *Main) validateSpec(service string, spec *config.Service) error {
	m.mu.Lock()
	cur := *m.cfg
	cur.Services = make(map[string]*config.Service, len(m.cfg.Services))
	for name, s := range m.cfg.Services {
		cur.Services[name] = s
	}
	m.mu.Unlock()
	if _, ok := cur.Services[service]; !ok {
		return fmt.Errorf("service %s is not in the config", service)
	}
	cur.Services[service] = spec
	return cur.Validate()
}

// releaseRolledOut ends the release a reload started when its rollout ends.
func (m *Main) releaseRolledOut(ev medic.Event) {
	if ev.Kind != medic.EventRolledOut || m.releases == nil {
		return
	}
	var err error
	if ev.Fields["outcome"] == "stopped" {
		err = errors.New(ev.Reason)
	}
	if rerr := m.releases.RolledOut(context.Background(), ev.Target, err); rerr != nil {
		m.Logger.Warn("release history", "service", ev.Target, "err", rerr)
	}
}

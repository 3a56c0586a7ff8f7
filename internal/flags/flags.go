// Package flags keeps the feature flags of the services as data: the values
// declared under services.X.flags, flipped at run time by runbooks (the
// set_flag action) or an operator (POST /v1/flags/SERVICE/NAME), and served to
// the applications (GET /v1/flags/SERVICE; FLAG_<NAME> holds the value at
// start). Every change is reported through OnChange, which the agent audits.
// A restart of medic starts again from the config's values.
package flags

import (
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"

	"github.com/medic-dev/medic/internal/config"
)

// ErrUnknown is returned for a flag the config does not declare.
var ErrUnknown = errors.New("flags: no such flag")

// Change is one flip, with who asked and why.
type Change struct {
	Service, Flag string
	From, To      bool
	Actor, Reason string
}

// Store holds every service's flags. Safe for concurrent use.
type Store struct {
	mu       sync.RWMutex
	values   map[string]map[string]bool // service → flag → value
	onChange func(Change)
}

// New returns the flags of cfg; onChange (may be nil) sees every change that
// Set makes, after it is made.
func New(cfg *config.Config, onChange func(Change)) *Store {
	s := &Store{values: map[string]map[string]bool{}, onChange: onChange}
	s.Update(cfg)
	return s
}

// Update applies a reloaded config: flags added take their declared value,
// flags removed are forgotten, and flags kept keep their current value (a
// flip outlives a reload).
func (s *Store) Update(cfg *config.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := map[string]map[string]bool{}
	for name, svc := range cfg.Services {
		if svc == nil || len(svc.Flags) == 0 {
			continue
		}
		next[name] = map[string]bool{}
		for f, v := range svc.Flags {
			if cur, ok := s.values[name][f]; ok {
				v = cur
			}
			next[name][f] = v
		}
	}
	s.values = next
}

// Service returns a copy of one service's flags (nil when it declares none).
func (s *Store) Service(name string) map[string]bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return maps.Clone(s.values[name])
}

// All returns a copy of every service's flags.
func (s *Store) All() map[string]map[string]bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]map[string]bool, len(s.values))
	for k, v := range s.values {
		out[k] = maps.Clone(v)
	}
	return out
}

// Set flips one flag and reports whether it changed.
func (s *Store) Set(service, flag string, v bool, actor, reason string) (bool, error) {
	s.mu.Lock()
	cur, ok := s.values[service][flag]
	if !ok {
		s.mu.Unlock()
		return false, fmt.Errorf("%w: %s/%s (declare it under services.%s.flags)", ErrUnknown, service, flag, service)
	}
	s.values[service][flag] = v
	s.mu.Unlock()
	if cur != v && s.onChange != nil {
		s.onChange(Change{Service: service, Flag: flag, From: cur, To: v, Actor: actor, Reason: reason})
	}
	return cur != v, nil
}

// Names returns the declared flags of a service, sorted.
func (s *Store) Names(service string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.values[service]))
	for f := range s.values[service] {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

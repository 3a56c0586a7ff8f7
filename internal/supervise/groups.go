package supervise

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/ports"
)

// GroupIndexBase is the first index of a group's instances: a canary's
// instances are web/1000, web/1001 … beside the service's own web/0, web/1.
const GroupIndexBase = 1000

// GroupHooks is an optional extension of Hooks: Grouped is told an
// instance's group before the instance starts, so that traffic management
// (the proxy's groups and weights) places it before it can become ready.
type GroupHooks interface {
	Grouped(id medic.InstanceID, group string)
}

// GroupStatus is what a group's instances show.
type GroupStatus struct {
	Want     int // instances started by StartGroup
	Ready    int
	Restarts int // restarts of the group's instances since StartGroup
}

// group is a set of instances of a service run beside its own from another
// spec (a canary, its baseline, a green set): they are not the service's
// instances (rollouts, scaling and the disruption budget ignore them).
type group struct {
	name      string
	instances []*Instance
}

// StartGroup starts n instances of spec as group name of service, beside
// its own instances, on n spare consecutive loopback ports (ports.Free: not
// the service's range). A group of that name still running is stopped
// first. The instances' ${INSTANCE} is 0 … n-1; their ids are
// SERVICE/GroupIndexBase+k.
func (s *Supervisor) StartGroup(ctx context.Context, service, name string, spec *config.Service, n int) error {
	if n < 1 || n > 100 {
		return fmt.Errorf("start group %s of %s: want 1 to 100 instances, got %d", name, service, n)
	}
	if err := s.StopGroup(ctx, service, name); err != nil {
		return err
	}
	s.mu.Lock()
	sv := s.services[service]
	if sv == nil || !s.started || s.stopping || sv.ctx == nil {
		s.mu.Unlock()
		return fmt.Errorf("start group %s of %s: %w", name, service, ErrNotFound)
	}
	s.mu.Unlock()
	cfg := *spec
	cfg.Instances = n
	if spec.Port > 0 {
		base, err := ports.Free(n)
		if err != nil {
			return fmt.Errorf("start group %s of %s: spare ports: %w", name, service, err)
		}
		cfg.Port = base
	}
	specs := Resolve(service, &cfg, s.baseDir, s.logDir)
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv.groups == nil {
		sv.groups = map[string]*group{}
	}
	g := &group{name: name}
	stagger := spec.Deploy.StaggerOrZero()
	for i := range specs {
		sv.nextGroupIndex++
		specs[i].Index = GroupIndexBase + sv.nextGroupIndex - 1
		specs[i].LogPath = filepath.Join(s.logDir, service+"-"+strconv.Itoa(specs[i].Index)+".log")
		in := s.newInstance(specs[i], cfg.DependsOn)
		in.startNice = startNice(spec)
		if gh, ok := s.env.Hooks.(GroupHooks); ok {
			gh.Grouped(in.id, name)
		}
		g.instances = append(g.instances, in)
		if i == 0 || stagger <= 0 {
			s.startInstanceLocked(sv, in)
		}
	}
	sv.groups[name] = g
	if stagger > 0 && len(g.instances) > 1 {
		s.wg.Add(1)
		svctx := sv.ctx
		go func() {
			defer s.wg.Done()
			s.staggerGroup(svctx, sv, g, stagger)
		}()
	}
	s.record(ctx, medic.EventKind("service.group.started"), service, "supervisor",
		fmt.Sprintf("group %s: %d instances of %s from port %d", name, n, versionOr(spec), cfg.Port))
	return nil
}

// staggerGroup starts g's instances after the first one at a time
// (deploy.stagger): each when the one before it is ready, or stagger after
// that one started, whichever comes first; it stops when the group is
// stopped or replaced, or the service stops.
func (s *Supervisor) staggerGroup(svctx context.Context, sv *service, g *group, stagger time.Duration) {
	clk := s.env.Clock
	for k := 1; k < len(g.instances); k++ {
		t := clk.NewTimer(stagger)
	wait:
		for {
			ch := s.anyReady.Wait()
			if g.instances[k-1].Status().Ready {
				break
			}
			select {
			case <-ch:
			case <-t.C():
				break wait
			case <-svctx.Done():
				t.Stop()
				return
			}
		}
		t.Stop()
		s.mu.Lock()
		if sv.groups[g.name] != g || s.stopping || sv.ctx != svctx || svctx.Err() != nil {
			s.mu.Unlock()
			return
		}
		s.startInstanceLocked(sv, g.instances[k])
		s.mu.Unlock()
	}
}

func versionOr(spec *config.Service) string {
	if spec.Version != "" {
		return spec.Version
	}
	return "the given spec"
}

// GroupStatus returns the state of service's group name (zero: none).
func (s *Supervisor) GroupStatus(service, name string) GroupStatus {
	s.mu.Lock()
	var ins []*Instance
	if sv := s.services[service]; sv != nil && sv.groups[name] != nil {
		ins = append(ins, sv.groups[name].instances...)
	}
	s.mu.Unlock()
	st := GroupStatus{Want: len(ins)}
	for _, in := range ins {
		is := in.Status()
		if is.Ready {
			st.Ready++
		}
		st.Restarts += is.Restarts
	}
	return st
}

// GroupInstances returns the status of every instance of service's group name.
func (s *Supervisor) GroupInstances(service, name string) []InstanceStatus {
	s.mu.Lock()
	var ins []*Instance
	if sv := s.services[service]; sv != nil && sv.groups[name] != nil {
		ins = append(ins, sv.groups[name].instances...)
	}
	s.mu.Unlock()
	out := make([]InstanceStatus, 0, len(ins))
	for _, in := range ins {
		out = append(out, in.Status())
	}
	return out
}

// StopGroup drains and stops service's group name and waits until every
// instance of it stopped; no such group is no error.
func (s *Supervisor) StopGroup(ctx context.Context, service, name string) error {
	s.mu.Lock()
	sv := s.services[service]
	var g *group
	if sv != nil {
		g = sv.groups[name]
		delete(sv.groups, name)
	}
	s.mu.Unlock()
	if g == nil {
		return nil
	}
	for _, in := range g.instances {
		s.retire(in, "supervisor", fmt.Sprintf("group %s of %s stopped", name, service))
	}
	s.record(ctx, medic.EventKind("service.group.stopped"), service, "supervisor", fmt.Sprintf("group %s: %d instances stopped", name, len(g.instances)))
	return nil
}

package release

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/supervise"
)

// Supervisor is what releases need of the supervisor.
type Supervisor interface {
	// Spec is the spec the service runs or rolls out to; nil: unknown service.
	Spec(service string) *config.Service
	// Deploy rolls the service out to spec within its disruption budget;
	// done runs when the rollout ends, whether or not Deploy still waited.
	Deploy(ctx context.Context, service string, spec *config.Service, actor, why string, done func(error)) error
}

// Traffic counts what a service's clients saw: requests through its proxy
// and those answered 5xx or not at all. ok is false without a proxy.
type Traffic interface {
	Counts(service string) (requests, errors uint64, ok bool)
}

// Validator checks a whole config with one service's spec replaced (the
// same rules as the config file: ports, probes, budget …).
type Validator func(service string, spec *config.Service) error

// Manager records releases and carries out deploys and rollbacks.
type Manager struct {
	Store      *Store
	Supervisor Supervisor
	Traffic    Traffic // nil: no client figures
	Validate   Validator
	Clock      clock.Clock

	mu   sync.Mutex
	file map[string]*config.Service // the config file's spec of each service (the base of a deploy)
	keep map[string]int
}

// ErrNothingToRollBack: no earlier live release with another spec.
var ErrNothingToRollBack = errors.New("release: no earlier live release to roll back to")

// ErrInvalid wraps a deploy request or the spec it makes that is refused.
var ErrInvalid = errors.New("release: invalid deploy")

// Start reconciles the history with the config file medic starts with and
// returns the config to run: a service whose latest release is a deploy or
// a rollback made from the same file spec keeps running that release (the
// file did not change since), otherwise the file's spec runs and is
// recorded as a release when it differs from the latest one.
func (m *Manager) Start(ctx context.Context, cfg *config.Config, actor string) (*config.Config, error) {
	m.Clock = clock.Or(m.Clock)
	out := *cfg
	out.Services = make(map[string]*config.Service, len(cfg.Services))
	m.mu.Lock()
	m.file, m.keep = map[string]*config.Service{}, map[string]int{}
	m.mu.Unlock()
	names := make([]string, 0, len(cfg.Services))
	for name := range cfg.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		spec := cfg.Services[name]
		out.Services[name] = spec
		m.setFile(name, spec)
		list, err := m.Store.List(ctx, name)
		if err != nil {
			return nil, err
		}
		base := SpecHash(spec)
		if len(list) > 0 {
			last := list[0]
			if last.Source != SourceConfig && last.Base == base && last.Outcome == Live {
				out.Services[name] = last.Spec
				continue
			}
			if SpecHash(last.Spec) == base {
				continue
			}
		}
		if _, err := m.Store.Add(ctx, Release{Service: name, Version: versionOf(spec, list), Source: SourceConfig, Base: base, Spec: spec,
			Actor: actor, Reason: "the config file at start", Created: m.Clock.Now(), Outcome: Live}, m.keepFor(name)); err != nil {
			return nil, err
		}
	}
	return &out, nil
}

func (m *Manager) setFile(name string, spec *config.Service) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.file[name] = spec
	m.keep[name] = spec.ReleaseHistory
}

func (m *Manager) keepFor(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.keep[name]
}

func (m *Manager) baseOf(name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return SpecHash(m.file[name])
}

// versionOf is the spec's version label, or r<N> after the newest release.
func versionOf(spec *config.Service, list []Release) string {
	if spec.Version != "" {
		return spec.Version
	}
	var n int64 = 1
	if len(list) > 0 {
		n = list[0].Seq + 1
	}
	return "r" + strconv.FormatInt(n, 10)
}

// Reloaded records a release for each service a reload changed (its rollout
// runs in the supervisor; RolledOut ends it).
func (m *Manager) Reloaded(ctx context.Context, cfg *config.Config, changed, added []string, actor string) error {
	var errs []error
	for _, name := range append(append([]string(nil), changed...), added...) {
		spec := cfg.Services[name]
		if spec == nil {
			continue
		}
		m.setFile(name, spec)
		list, err := m.Store.List(ctx, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := m.Store.Add(ctx, Release{Service: name, Version: versionOf(spec, list), Source: SourceConfig, Base: SpecHash(spec), Spec: spec,
			Actor: actor, Reason: "reload", Created: m.Clock.Now()}, m.keepFor(name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RolledOut ends the service's release under way with the supervisor's
// verdict on its rollout (err nil: every instance runs it).
func (m *Manager) RolledOut(ctx context.Context, service string, err error) error {
	list, lerr := m.Store.List(ctx, service)
	if lerr != nil || len(list) == 0 || list[0].Outcome != RollingOut {
		return lerr
	}
	f := Finished{Outcome: Live, Ended: m.Clock.Now()}
	if err != nil {
		f.Outcome, f.Detail = Failed, err.Error()
	}
	return m.Store.Finish(ctx, list[0].Seq, f)
}

// Changes is a deploy request: the fields of the running spec to replace.
type Changes struct {
	// Version labels the release; empty: r<N>.
	Version string `json:"version,omitempty"`
	// Set holds key=value changes: command (a JSON array, or words split on
	// spaces), dir, instances, env.NAME (an empty value removes NAME).
	Set map[string]string `json:"set,omitempty"`
}

// apply returns a copy of spec with c's changes.
func (c Changes) apply(spec *config.Service) (*config.Service, error) {
	next, err := clone(spec)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(c.Set))
	for k := range c.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := c.Set[k]
		switch {
		case k == "command":
			var argv []string
			if strings.HasPrefix(strings.TrimSpace(v), "[") {
				if err := json.Unmarshal([]byte(v), &argv); err != nil {
					return nil, fmt.Errorf("%w: set.command: want a JSON array of strings or words: %v", ErrInvalid, err)
				}
			} else {
				argv = strings.Fields(v)
			}
			if len(argv) == 0 {
				return nil, fmt.Errorf("%w: set.command: empty", ErrInvalid)
			}
			next.Command = argv
		case k == "dir":
			next.Dir = v
		case k == "instances":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return nil, fmt.Errorf("%w: set.instances: want a number from 1 to 1000, got %q", ErrInvalid, v)
			}
			next.Instances = n
		case strings.HasPrefix(k, "env."):
			name := strings.TrimPrefix(k, "env.")
			if name == "" || strings.ContainsAny(name, "= \x00") {
				return nil, fmt.Errorf("%w: set.%s: not an environment variable name", ErrInvalid, k)
			}
			env := map[string]string{}
			for ek, ev := range next.Env {
				env[ek] = ev
			}
			if v == "" {
				delete(env, name)
			} else {
				env[name] = v
			}
			next.Env = env
		default:
			return nil, fmt.Errorf("%w: set.%s: unknown key (want command, dir, instances or env.NAME)", ErrInvalid, k)
		}
	}
	if c.Version != "" {
		if len(c.Version) > 64 || strings.ContainsFunc(c.Version, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
			return nil, fmt.Errorf("%w: version: at most 64 printable characters without spaces", ErrInvalid)
		}
	}
	next.Version = c.Version
	return next, nil
}

func clone(s *config.Service) (*config.Service, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("copy the spec: %w", err)
	}
	out := new(config.Service)
	if err := json.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("copy the spec: %w", err)
	}
	return out, nil
}

// Deploy makes a release from the running spec with c's changes and rolls
// it out. It returns the release as recorded when the rollout ended, or
// while it still runs when ctx ended first (with the supervisor's
// ErrInProgress).
func (m *Manager) Deploy(ctx context.Context, service string, c Changes, actor string) (Release, error) {
	cur := m.Supervisor.Spec(service)
	if cur == nil {
		return Release{}, fmt.Errorf("deploy %s: %w", service, ErrNotFound)
	}
	next, err := c.apply(cur)
	if err != nil {
		return Release{}, fmt.Errorf("deploy %s: %w", service, err)
	}
	return m.roll(ctx, service, next, SourceDeploy, actor, "deploy")
}

// Rollback rolls the service out to release version to, or (to "") to the
// newest earlier release that went live with another spec than the one
// running now.
func (m *Manager) Rollback(ctx context.Context, service, to, actor string) (Release, error) {
	cur := m.Supervisor.Spec(service)
	if cur == nil {
		return Release{}, fmt.Errorf("roll back %s: %w", service, ErrNotFound)
	}
	list, err := m.Store.List(ctx, service)
	if err != nil {
		return Release{}, err
	}
	now := SpecHash(cur)
	var target *Release
	for i := range list {
		r := &list[i]
		if to != "" {
			if r.Version == to {
				target = r
				break
			}
			continue
		}
		if r.Outcome == Live && SpecHash(r.Spec) != now {
			target = r
			break
		}
	}
	switch {
	case target == nil && to != "":
		return Release{}, fmt.Errorf("roll back %s to %s: %w (medic releases %s lists the %d kept)", service, to, ErrNotFound, service, len(list))
	case target == nil:
		return Release{}, fmt.Errorf("roll back %s: %w", service, ErrNothingToRollBack)
	}
	spec, err := clone(target.Spec)
	if err != nil {
		return Release{}, err
	}
	spec.Version = target.Version // running that version again
	return m.roll(ctx, service, spec, SourceRollback, actor, fmt.Sprintf("rollback to %s (release %d)", target.Version, target.Seq))
}

// roll validates spec, records its release and rolls it out, counting what
// the proxy's clients saw until the rollout ends.
func (m *Manager) roll(ctx context.Context, service string, spec *config.Service, source, actor, why string) (Release, error) {
	if m.Validate != nil {
		if err := m.Validate(service, spec); err != nil {
			return Release{}, fmt.Errorf("%s %s: %w: %v", why, service, ErrInvalid, err)
		}
	}
	list, err := m.Store.List(ctx, service)
	if err != nil {
		return Release{}, err
	}
	if spec.Version == "" {
		spec.Version = versionOf(spec, list)
	}
	r, err := m.Store.Add(ctx, Release{Service: service, Version: spec.Version, Source: source, Base: m.baseOf(service), Spec: spec,
		Actor: actor, Reason: why, Created: m.Clock.Now()}, m.keepFor(service))
	if err != nil {
		return Release{}, err
	}
	var req0, err0 uint64
	measured := false
	if m.Traffic != nil {
		req0, err0, measured = m.Traffic.Counts(service)
	}
	ended := make(chan struct{})
	done := func(rerr error) {
		defer close(ended)
		f := Finished{Outcome: Live, Ended: m.Clock.Now()}
		if rerr != nil {
			f.Outcome, f.Detail = Failed, rerr.Error()
		}
		if measured {
			if req1, err1, ok := m.Traffic.Counts(service); ok {
				n, e := int64(req1-req0), int64(err1-err0)
				f.Requests, f.ClientErrors = &n, &e
			}
		}
		m.Store.Finish(context.WithoutCancel(ctx), r.Seq, f) //nolint:errcheck // the release stays "rolling-out"; the audit has the rollout
	}
	derr := m.Supervisor.Deploy(ctx, service, spec, actor, fmt.Sprintf("%s %s", why, spec.Version), done)
	switch {
	case derr == nil:
		<-ended
	case !errors.Is(derr, supervise.ErrInProgress):
		// Refused before any rollout started: done never runs.
		m.Store.Finish(context.WithoutCancel(ctx), r.Seq, Finished{Outcome: Failed, Ended: m.Clock.Now(), Detail: derr.Error()}) //nolint:errcheck // best effort, as above
	}
	if got, gerr := m.Store.Get(context.WithoutCancel(ctx), r.Seq); gerr == nil {
		r = got // with the outcome and figures Finish recorded
	}
	return r, derr
}

// List returns the service's kept releases, newest first.
func (m *Manager) List(ctx context.Context, service string) ([]Release, error) {
	return m.Store.List(ctx, service)
}

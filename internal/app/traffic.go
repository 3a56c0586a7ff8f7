package app

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/supervise"
)

// traffic connects the supervisor's readiness edges to the services' proxies:
// an instance receives traffic only while it is ready, and is drained before
// it is stopped.
type traffic struct {
	mu      sync.RWMutex
	proxies map[string]*proxy.Proxy
	status  func() []supervise.ServiceStatus
}

func (t *traffic) get(service string) *proxy.Proxy {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.proxies[service]
}

// Ready implements supervise.Hooks.
func (t *traffic) Ready(id medic.InstanceID, port int, ready bool) {
	if p := t.get(id.Service); p != nil && port > 0 {
		p.SetBackend(id.String(), fmt.Sprintf("127.0.0.1:%d", port), ready)
	}
}

// Drain implements supervise.Hooks.
func (t *traffic) Drain(ctx context.Context, id medic.InstanceID) error {
	if p := t.get(id.Service); p != nil {
		return p.Drain(ctx, id.String())
	}
	return nil
}

// Undrain puts a drained instance back in rotation if it is ready (action.Traffic).
func (t *traffic) Undrain(id medic.InstanceID) {
	p := t.get(id.Service)
	if p == nil || t.status == nil {
		return
	}
	for _, s := range t.status() {
		for _, in := range s.Instances {
			if in.ID == id.String() && in.Ready && in.Port > 0 {
				p.SetBackend(in.ID, fmt.Sprintf("127.0.0.1:%d", in.Port), true)
			}
		}
	}
}

// Gone implements supervise.Hooks: the instance no longer exists.
func (t *traffic) Gone(id medic.InstanceID) {
	if p := t.get(id.Service); p != nil {
		p.RemoveBackend(id.String())
	}
}

// Stats returns every proxy's figures, by service.
func (t *traffic) Stats() []proxy.Stats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]proxy.Stats, 0, len(t.proxies))
	for _, p := range t.proxies {
		out = append(out, p.Stats())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

// SetFault injects (or, with a zero fault, clears) a drill fault into one instance's traffic.
func (t *traffic) SetFault(id medic.InstanceID, f proxy.Fault) error {
	p := t.get(id.Service)
	if p == nil {
		return fmt.Errorf("service %s has no proxy: %w", id.Service, errNoProxy)
	}
	if f.IsZero() {
		p.ClearFault(id.String())
		return nil
	}
	if err := f.Validate(); err != nil {
		return err
	}
	p.SetFault(id.String(), f)
	return nil
}

var errNoProxy = fmt.Errorf("no proxy")

// handOver tells every proxy that its stop is a handover to a new medic:
// established connections drain for handover_drain.
func (t *traffic) handOver() {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, p := range t.proxies {
		p.HandOver()
	}
}

// closeAll releases every proxy's listener (Serve does this too when it ran).
func (t *traffic) closeAll() {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, p := range t.proxies {
		p.Close()
	}
}

// Counts implements release.Traffic: the requests through a service's proxy
// so far and those that failed (5xx or no answer).
func (t *traffic) Counts(service string) (requests, errors uint64, ok bool) {
	p := t.get(service)
	if p == nil {
		return 0, 0, false
	}
	st := p.Stats()
	return st.Requests, st.Errors, true
}

// ClientKey makes a key that stands for a client of class at service's
// proxy until remove is called (the drills' class traffic), and names the
// header that carries it.
func (t *traffic) ClientKey(service, name, class string) (header, key string, remove func(), err error) {
	p := t.get(service)
	if p == nil {
		return "", "", nil, fmt.Errorf("service %s has no proxy", service)
	}
	key, remove, err = p.ClientKey(name, class)
	return p.KeyHeader(), key, remove, err
}

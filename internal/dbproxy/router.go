// Package dbproxy serves a database cluster's two client listeners on each
// agent: "primary" leads to the member that holds the leader key and
// serves, "replicas" is balanced over the running replicas. Both are the
// proxy package's TCP mode; this package only decides the backends, from
// the cluster's view in etcd (which the agent follows with a watch, not a
// poll). When the primary changes or is lost, connections to the old one
// are cut at once, so that client pools reconnect instead of hanging on a
// dead or demoted server. A listener with nowhere to route answers the
// client's startup with SQLSTATE 57P03 "cannot connect now", so that a
// multi-host connection string moves on to the next agent at once.
package dbproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/netguard"
	"github.com/medic-dev/medic/internal/proxy"
)

// Backend is one member's postgres.
type Backend struct {
	Member string
	Addr   string // host:port
}

// Options configure a Router.
type Options struct {
	Cluster    string                // names the proxies "<cluster>-primary" and "<cluster>-replicas"
	Config     *config.DatabaseProxy // defaults applied
	Clock      clock.Clock
	Logger     *slog.Logger
	Registerer prometheus.Registerer // medic_proxy_* series; nil registers nothing
	FDs        *netguard.FDs         // the process's descriptor reserve; nil: none
	// Listen binds the database listeners; nil means net.Listen (the agent
	// passes the function that hands sockets over on an upgrade).
	Listen func(network, addr string) (net.Listener, error)
	// HoldFor, when positive, keeps the listeners from accepting until the
	// first Route (or for this long at most): a medic started by an upgrade
	// sets it, so that connections wait in the listen queue for its first
	// view of the cluster instead of being refused with 57P03 meanwhile
	// (the previous medic stopped accepting at the handover).
	HoldFor time.Duration
}

// Router owns the two proxies. Route may be called at any time, Serve once.
type Router struct {
	primary, replicas *proxy.Proxy
	log               *slog.Logger

	holdFor    time.Duration
	clock      clock.Clock
	routed     chan struct{} // closed by the first Route
	routedOnce sync.Once

	mu          sync.Mutex
	curPrimary  *Backend
	curReplicas map[string]string // member → addr
}

// New binds the listeners (a port in use fails here). The caller must call
// Serve, or Close if it never will.
func New(o Options) (*Router, error) {
	if o.Config == nil || o.Config.Primary == "" {
		return nil, errors.New("dbproxy: no primary listener configured")
	}
	r := &Router{log: o.Logger, curReplicas: map[string]string{}, holdFor: o.HoldFor, clock: clock.Or(o.Clock), routed: make(chan struct{})}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("db", o.Cluster)
	var err error
	r.primary, err = newProxy(o, o.Cluster+"-primary", o.Config.Primary)
	if err != nil {
		return nil, err
	}
	if o.Config.Replicas != "" {
		if r.replicas, err = newProxy(o, o.Cluster+"-replicas", o.Config.Replicas); err != nil {
			r.primary.Close()
			return nil, err
		}
	}
	return r, nil
}

func newProxy(o Options, name, listen string) (*proxy.Proxy, error) {
	refuse := refuser(o.Cluster)
	never := 0.0
	noRetry := 0
	maxEject := 0
	cfg := &config.Proxy{Listen: listen, Mode: config.ProxyModeTCP, ConnectTimeout: o.Config.ConnectTimeout,
		// Client connections get no drain time when medic stops: postgres stops with it.
		// On a handover to a new medic they keep piping (HandOver).
		DrainTimeout:  config.Duration(1),
		HandoverDrain: o.Config.HandoverDrain,
		Retries:       config.ProxyRetries{Max: &noRetry},
		// The router, not outlier detection, decides who serves.
		Outlier: config.ProxyOutlier{ErrorRate: &never, ConsecutiveErrors: 1 << 30, MaxEjectionPercent: &maxEject}}
	p, err := proxy.New(proxy.Options{Service: name, Config: cfg, Clock: o.Clock, Logger: o.Logger, Registerer: o.Registerer, FDs: o.FDs,
		Refuse: refuse, Listen: o.Listen})
	if err != nil {
		return nil, fmt.Errorf("dbproxy: %w", err)
	}
	return p, nil
}

// PrimaryAddr is the primary listener's address.
func (r *Router) PrimaryAddr() net.Addr { return r.primary.Addr() }

// ReplicasAddr is the replicas listener's address, nil when not configured.
func (r *Router) ReplicasAddr() net.Addr {
	if r.replicas == nil {
		return nil
	}
	return r.replicas.Addr()
}

// Close releases the listeners of a router whose Serve was never called.
func (r *Router) Close() {
	r.primary.Close()
	if r.replicas != nil {
		r.replicas.Close()
	}
}

// HandOver tells the router that the stop that follows is a handover to a
// new medic, which now accepts on the same sockets: the client connections
// it holds, busy or idle, keep piping to the members they reached until they
// end or handover_drain runs out. Routes stop changing once the member stops
// following etcd; a demoted postgres ends its own sessions.
func (r *Router) HandOver() {
	r.primary.HandOver()
	if r.replicas != nil {
		r.replicas.HandOver()
	}
}

// Serve runs the listeners until ctx ends, then cuts every connection and
// returns once both proxies stopped.
func (r *Router) Serve(ctx context.Context) error {
	if r.holdFor > 0 {
		t0 := r.clock.Now()
		t := r.clock.NewTimer(r.holdFor)
		select {
		case <-r.routed:
		case <-t.C():
		case <-ctx.Done():
		}
		t.Stop()
		r.log.Info("database listeners accept after the handover", "held", r.clock.Now().Sub(t0), "at_most", r.holdFor)
	}
	errc := make(chan error, 2)
	n := 1
	go func() { errc <- r.primary.Serve(ctx) }()
	if r.replicas != nil {
		n++
		go func() { errc <- r.replicas.Serve(ctx) }()
	}
	var first error
	for range n {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Route sets the backends: primary (nil when no member serves as primary,
// or the cluster cannot be seen) and the running replicas. Connections to a
// member that lost its role are cut at once. The replicas listener falls
// back to the primary when no replica runs. Route is idempotent and cheap.
func (r *Router) Route(primary *Backend, replicas []Backend) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.routedOnce.Do(func() { close(r.routed) })
	old := r.curPrimary
	switch {
	case primary == nil && old != nil:
		r.primary.RemoveBackend(old.Member)
		r.log.Warn("no primary: client connections cut and new ones refused", "was", old.Member)
	case primary != nil && (old == nil || *old != *primary):
		r.primary.SetBackend(primary.Member, primary.Addr, true)
		if old != nil && old.Member != primary.Member {
			r.primary.RemoveBackend(old.Member)
		}
		r.log.Info("primary routed", "member", primary.Member, "addr", primary.Addr)
	}
	if primary != nil {
		p := *primary
		r.curPrimary = &p
	} else {
		r.curPrimary = nil
	}
	if r.replicas == nil {
		return
	}
	want := map[string]string{}
	for _, b := range replicas {
		want[b.Member] = b.Addr
	}
	if len(want) == 0 && primary != nil {
		want[primary.Member] = primary.Addr
	}
	for m, addr := range want {
		if r.curReplicas[m] != addr {
			r.replicas.SetBackend(m, addr, true)
		}
	}
	for m := range r.curReplicas {
		if _, ok := want[m]; !ok {
			r.replicas.RemoveBackend(m)
		}
	}
	r.curReplicas = want
}

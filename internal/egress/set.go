package egress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/netguard"
)

// Bounds of a Set.
const (
	// transitionQueue: breaker transitions waiting to be reported; more are dropped and counted. 256.
	transitionQueue = 256
	// drainTimeout: HTTP calls in flight when the Set stops get this long to finish. 5s.
	drainTimeout = 5 * time.Second
)

// ErrUnknown is returned for a dependency the config does not declare.
var ErrUnknown = errors.New("egress: no such dependency")

// Options build a Set.
type Options struct {
	Config     *config.Config
	Clock      clock.Clock
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: no /metrics families
	// OnTransition sees every breaker transition, in order, from Serve's
	// loop (never under a breaker's lock): the app records it as an event.
	OnTransition func(Transition)
	// Listen binds the dependency listeners; nil means net.Listen (the agent
	// passes the function that hands sockets over on an upgrade).
	Listen func(network, addr string) (net.Listener, error)
	// FDs is the process's descriptor budget the listeners admit connections
	// within (netguard); nil admits without it.
	FDs *netguard.FDs
}

// Set is every dependency listener of the config.
type Set struct {
	opts  Options
	deps  []entry // sorted by service, dependency
	trans chan Transition
	drops atomic.Uint64
}

type entry struct {
	d     *dependency
	ln    net.Listener
	http  *httpDep
	tcp   *tcpDep
	stats func() Stats
}

// New listens for every dependency of every service. It fails, closing what
// it opened, when a listener cannot be opened. Call Serve, or Close.
func New(o Options) (*Set, error) {
	o.Clock = clock.Or(o.Clock)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	met, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("register dependency metrics: %w", err)
	}
	s := &Set{opts: o, trans: make(chan Transition, transitionQueue)}
	for svcName, svc := range o.Config.Services {
		for name, cfg := range svc.Dependencies {
			if cfg == nil {
				continue
			}
			d := newDependency(svcName, name, cfg, o.Clock, met, s.enqueue)
			e := entry{d: d}
			if cfg.IsTCP() {
				e.tcp = newTCP(d)
				e.stats = e.tcp.Stats
			} else {
				h, err := newHTTP(d)
				if err != nil {
					s.Close()
					return nil, fmt.Errorf("dependency %s/%s: %w", svcName, name, err)
				}
				e.http, e.stats = h, h.Stats
			}
			listen := o.Listen
			if listen == nil {
				listen = net.Listen
			}
			ln, err := listen("tcp", cfg.Listen)
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("dependency %s/%s: listen on %s: %w", svcName, name, cfg.Listen, err)
			}
			// Like every listener of medic: caps in total and per source
			// within the descriptor budget, and (HTTP) header and idle timeouts.
			guard := netguard.Options{Name: "dependency " + svcName + "/" + name, FDs: o.FDs, Logger: o.Logger, Clock: o.Clock,
				Limits: netguard.Limits{MaxConns: cfg.Limits.MaxConnections, MaxPerSource: cfg.Limits.MaxPerSource}}
			if cfg.IsTCP() {
				guard.Cost = 6 // the client's, the dependency's, and two splice pipes
			} else {
				guard.Cost, guard.Refusal = 2, netguard.HTTP503
			}
			e.ln = netguard.Wrap(ln, guard)
			met.state(svcName, name, Closed)
			s.deps = append(s.deps, e)
		}
	}
	sort.Slice(s.deps, func(i, j int) bool {
		a, b := s.deps[i].d, s.deps[j].d
		return a.service < b.service || a.service == b.service && a.name < b.name
	})
	return s, nil
}

// enqueue is the breakers' transition callback: it must not block.
func (s *Set) enqueue(t Transition) {
	select {
	case s.trans <- t:
	default:
		s.drops.Add(1)
	}
}

// Close closes the listeners of a Set that is not served.
func (s *Set) Close() {
	for _, e := range s.deps {
		if e.ln != nil {
			e.ln.Close()
		}
	}
}

// Len is the number of dependencies.
func (s *Set) Len() int { return len(s.deps) }

// Serve serves every listener until ctx ends, then stops them (HTTP calls in
// flight get drainTimeout) and returns once all have stopped.
func (s *Set) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(s.deps))
	for _, e := range s.deps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if e.tcp != nil {
				err = e.tcp.serve(ctx, e.ln)
			} else {
				err = serveFastHTTP(ctx, e.ln, e.http, e.d.cfg.Limits)
			}
			if err != nil {
				errs <- fmt.Errorf("dependency %s/%s: %w", e.d.service, e.d.name, err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.report(ctx)
	}()
	wg.Wait()
	close(errs)
	return errors.Join(func() []error {
		var out []error
		for err := range errs {
			out = append(out, err)
		}
		return out
	}()...)
}

// report hands transitions to OnTransition until ctx ends, then the ones left.
func (s *Set) report(ctx context.Context) {
	for {
		select {
		case t := <-s.trans:
			s.deliver(t)
		case <-ctx.Done():
			for {
				select {
				case t := <-s.trans:
					s.deliver(t)
				default:
					return
				}
			}
		}
	}
}

func (s *Set) deliver(t Transition) {
	s.opts.Logger.Info(t.Reason, "service", t.Service, "dependency", t.Dependency, "state", t.To.String())
	if s.opts.OnTransition != nil {
		s.opts.OnTransition(t)
	}
}

// Stats returns every dependency's figures, sorted by service and name.
func (s *Set) Stats() []Stats {
	out := make([]Stats, 0, len(s.deps))
	for _, e := range s.deps {
		out = append(out, e.stats())
	}
	return out
}

// DroppedTransitions counts transitions not reported because the queue was full.
func (s *Set) DroppedTransitions() uint64 { return s.drops.Load() }

// Inject sets the fault of one dependency (the zero Fault clears it) and
// returns the one it replaced.
func (s *Set) Inject(service, dep string, f Fault) (Fault, error) {
	if err := f.Validate(); err != nil {
		return Fault{}, err
	}
	for _, e := range s.deps {
		if e.d.service == service && e.d.name == dep {
			var old *Fault
			if f.IsZero() {
				old = e.d.fault.Swap(nil)
			} else {
				old = e.d.fault.Swap(&f)
			}
			if old == nil {
				return Fault{}, nil
			}
			return *old, nil
		}
	}
	return Fault{}, fmt.Errorf("%w: %s/%s", ErrUnknown, service, dep)
}

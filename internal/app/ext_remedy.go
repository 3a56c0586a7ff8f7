package app

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/action"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/detect"
	"github.com/medic-dev/medic/internal/flags"
	"github.com/medic-dev/medic/internal/notify"
	"github.com/medic-dev/medic/internal/remedy"
	"github.com/medic-dev/medic/internal/signal"
)

func init() { register(20, "remedy", buildRemedy) }

// automation is the observe → detect → decide → act → verify loop: signals
// from the host, the supervisor and the proxies, conditions over them, and
// the runbook engine with its notifier.
type automation struct {
	m       *Main
	store   *signal.Store
	detect  *detect.Engine
	engine  *remedy.Engine
	notify  *notify.Notifier
	loops   []interface{ Serve(context.Context) error }
	rates   signal.Rates
	ratesMu sync.Mutex
}

func buildRemedy(m *Main) (*component, error) {
	a := &automation{m: m, store: signal.NewStore(signal.Options{Retention: config.SignalRetention})}
	var err error
	a.detect, err = detect.New(m.cfg.Conditions, detect.Options{Clock: m.Clock, Source: a.store, OnTransition: a.transition, Log: m.Logger})
	if err != nil {
		return nil, fmt.Errorf("conditions: %w", err)
	}
	// The store keeps of each signal what the conditions read: 50 instances
	// sampled every second would otherwise hold an hour of every instance
	// signal, about 20 MB (docs/benchmarks.md, "The agent's footprint").
	a.store.SetHistory(a.detect.History())
	rec := remedy.RecorderFunc(m.Record)
	a.notify, err = notify.New(notify.Options{Receivers: m.cfg.Receivers, Recorder: rec, Clock: m.Clock, Source: m.cfg.Name, Logger: m.Logger,
		Redact: m.redact})
	if err != nil {
		return nil, fmt.Errorf("receivers: %w", err)
	}
	var fg remedy.FleetGuard // nil: a single host
	if m.cfg.Fleet != nil {
		m.fleet = &fleetGuard{}
		fg = m.fleet
	}
	a.engine, err = remedy.New(remedy.Options{
		Fleet: fg, Config: m.cfg, Supervisor: m.sup, Traffic: m.traffic, Recorder: rec, Notifier: a.notify, Audit: m.aw,
		Store: remedy.NewSQLStore(m.db), Clock: m.Clock, Logger: m.Logger,
		Actions: map[string]action.Action{"set_flag": flags.Action{Store: m.flags}},
		Checker: remedy.CheckerFunc(func(name string, labels map[string]string, now time.Time) (bool, error) {
			if !a.detect.Has(name) {
				return false, fmt.Errorf("no condition %q", name)
			}
			return !a.detect.Firing(name, signal.Labels(labels)), nil
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("runbooks: %w", err)
	}
	m.observe(a.detect.Observe) // supervisor events drive event conditions (crash loops, exits)
	m.observe(a.dbNotice)
	m.onReload(func(ctx context.Context, cfg *config.Config) error {
		if err := a.detect.Update(cfg.Conditions); err != nil {
			return err
		}
		a.store.SetHistory(a.detect.History())
		return a.engine.Update(ctx, cfg)
	})

	// Signals: the host's disks named by conditions, the supervisor's figures, the proxies' traffic.
	if paths := diskPaths(m.cfg); len(paths) > 0 {
		a.loops = append(a.loops, &signal.Host{Paths: paths, Period: 2 * time.Second, Clock: m.Clock, Store: a.store, Log: m.Logger})
	}
	a.loops = append(a.loops, signal.Poll(a.store, m.Clock, "supervisor", time.Second, a.pollSupervisor))
	if len(m.traffic.proxies) > 0 {
		a.loops = append(a.loops, signal.Poll(a.store, m.Clock, "proxy", time.Second, a.pollProxies))
	}
	if m.egress != nil {
		a.loops = append(a.loops, signal.Poll(a.store, m.Clock, "egress", time.Second, a.pollDependencies))
	}
	if hasBackups(m.cfg) {
		a.loops = append(a.loops, signal.Poll(a.store, m.Clock, "backup", 5*time.Second, func(now time.Time) []signal.Sample {
			if m.backups == nil {
				return nil
			}
			return backupSignals(now, m.backups())
		}))
	}
	a.loops = append(a.loops, a.scrapers()...)
	return &component{serve: a.serve, mount: a.mount}, nil
}

// serve runs collectors, the condition engine and the runbook engine; the
// notifier stops last so that escalations made while stopping are still sent.
func (a *automation) serve(ctx context.Context) error {
	nctx, stopNotify := context.WithCancel(context.WithoutCancel(ctx))
	var nwg sync.WaitGroup
	nwg.Add(1)
	go func() { defer nwg.Done(); a.notify.Serve(nctx) }()
	var wg sync.WaitGroup
	for _, l := range append(a.loops, a.detect, a.engine) {
		wg.Add(1)
		go func() { defer wg.Done(); l.Serve(ctx) }()
	}
	wg.Wait()
	stopNotify()
	nwg.Wait()
	return nil
}

// transition records a condition's change and hands it to the runbook engine.
func (a *automation) transition(t detect.Transition) {
	state := ""
	switch {
	case t.Fired():
		state = "firing"
	case t.Resolved():
		state = "resolved"
	}
	fields := map[string]string{"condition": t.Condition, "from": t.From.String(), "to": t.To.String(), "labels": t.Labels.String()}
	if t.Confidence > 0 && t.Kind == "anomaly" {
		fields["confidence"] = fmt.Sprintf("%.3f", t.Confidence)
	}
	a.m.Record(context.Background(), medic.Event{Time: t.At, Kind: medic.EventKind("condition." + t.To.String()), Target: conditionTarget(t),
		Actor: "detect", Reason: t.Reason, Fields: fields})
	if state == "" {
		return
	}
	a.engine.Submit(remedy.Trigger{Condition: t.Condition, Labels: t.Labels, State: state, Value: t.Value,
		Confidence: t.Confidence, At: t.At, Since: t.ActiveAt, Reason: t.Reason})
}

func conditionTarget(t detect.Transition) string {
	if in := t.Labels[signal.LabelInstance]; in != "" {
		return in
	}
	if s := t.Labels[signal.LabelService]; s != "" {
		return s
	}
	return "condition/" + t.Condition
}

func (a *automation) pollSupervisor(now time.Time) []signal.Sample {
	var out []signal.Sample
	add := func(name string, l signal.Labels, v float64) {
		out = append(out, signal.Sample{Name: name, Labels: l, T: now, V: v})
	}
	for _, s := range a.m.sup.Status() {
		sl := signal.Labels{signal.LabelService: s.Name}
		add(signal.ServiceReadyInstances, sl, float64(s.Ready))
		add(signal.ServiceDesiredInstances, sl, float64(s.Desired))
		for _, in := range s.Instances {
			l := signal.Labels{signal.LabelService: s.Name, signal.LabelInstance: in.ID}
			add(signal.InstanceReady, l, b2f(in.Ready))
			add(signal.InstanceRestartsTotal, l, float64(in.Restarts))
			if in.PID == 0 {
				continue
			}
			add(signal.InstanceRSSBytes, l, float64(in.RSSBytes))
			add(signal.InstanceOpenFDs, l, float64(in.FDs))
			add(signal.InstanceCPUSecondsTotal, l, in.CPU)
			a.ratesMu.Lock()
			if r, ok := a.rates.Rate(signal.InstanceCPUSecondsTotal, l, now, in.CPU); ok {
				add(signal.InstanceCPUCores, l, r)
			}
			a.ratesMu.Unlock()
		}
	}
	return out
}

func (a *automation) pollProxies(now time.Time) []signal.Sample {
	var out []signal.Sample
	a.ratesMu.Lock()
	defer a.ratesMu.Unlock()
	for _, p := range a.m.traffic.Stats() {
		l := signal.Labels{signal.LabelService: p.Service}
		add := func(name string, v float64) { out = append(out, signal.Sample{Name: name, Labels: l, T: now, V: v}) }
		add(signal.ProxyInflight, float64(p.Inflight))
		if p.ConcurrencyLimit > 0 {
			add(signal.ProxyConcurrencyLimit, float64(p.ConcurrencyLimit))
		}
		req, okReq := a.rates.Rate("proxy_requests_total", l, now, float64(p.Requests))
		errs, okErr := a.rates.Rate("proxy_errors_total", l, now, float64(p.Errors))
		if okReq {
			add(signal.ProxyRequestsPerSecond, req)
		}
		if okErr {
			add(signal.ProxyErrorsPerSecond, errs)
		}
		if okReq && okErr && req > 0 {
			add(signal.ProxyErrorRatio, errs/req)
		}
		if shed, ok := a.rates.Rate("proxy_shed_total", l, now, float64(p.Shed)); ok {
			add(signal.ProxyShedPerSecond, shed)
		}
		for _, in := range p.Instances {
			out = append(out, signal.Sample{Name: signal.ProxyInstanceLatency, T: now, V: in.LatencySeconds,
				Labels: signal.Labels{signal.LabelService: p.Service, signal.LabelInstance: in.ID}})
		}
		for _, c := range p.Classes {
			if state, ok := breakerSignal(c.Breaker); ok {
				out = append(out, signal.Sample{Name: signal.ProxyClassBreakerState, T: now, V: state,
					Labels: signal.Labels{signal.LabelService: p.Service, signal.LabelClass: c.Name}})
			}
		}
	}
	return out
}

// breakerSignal is a breaker state's value as a signal: 0 closed, 1
// half-open, 2 open; false for no state (no breaker).
func breakerSignal(state string) (float64, bool) {
	switch state {
	case "closed":
		return 0, true
	case "half-open":
		return 1, true
	case "open":
		return 2, true
	}
	return 0, false
}

// pollDependencies turns the dependency listeners' figures into signals, so
// that conditions and runbooks can react to a breaker ("payments open for 2m").
func (a *automation) pollDependencies(now time.Time) []signal.Sample {
	var out []signal.Sample
	a.ratesMu.Lock()
	defer a.ratesMu.Unlock()
	for _, d := range a.m.Dependencies() {
		l := signal.Labels{signal.LabelService: d.Service, signal.LabelDependency: d.Dependency}
		add := func(name string, v float64) { out = append(out, signal.Sample{Name: name, Labels: l, T: now, V: v}) }
		state, _ := breakerSignal(d.State)
		add(signal.DependencyBreakerState, state)
		rate := func(name, counter string, v uint64) {
			if r, ok := a.rates.Rate(counter, l, now, float64(v)); ok {
				add(name, r)
			}
		}
		rate(signal.DependencyCallsPerSec, "dependency_calls_total", d.Total())
		rate(signal.DependencyFailuresPerSec, "dependency_failures_total", d.Calls["error"]+d.Calls["timeout"])
		rate(signal.DependencyRefusedPerSec, "dependency_refused_total", d.Calls["open"]+d.Calls["shed"])
		rate(signal.DependencyFallbacksPerSec, "dependency_fallbacks_total", d.Fallbacks)
		if d.Total() > 0 {
			add(signal.DependencyLatencyP99, d.LatencyP99)
		}
	}
	return out
}

// scrapers reads each instance's Prometheus endpoint for services that set
// `metrics`, keeping only the families some condition uses.
func (a *automation) scrapers() []interface{ Serve(context.Context) error } {
	var out []interface{ Serve(context.Context) error }
	keep := a.detect.Signals()
	for name, svc := range a.m.cfg.Services {
		if svc.Metrics == nil || svc.Port == 0 {
			continue
		}
		for i := 0; i < svc.Instances; i++ {
			id := medic.InstanceID{Service: name, Index: i}
			out = append(out, &signal.Scraper{
				URL: fmt.Sprintf("http://127.0.0.1:%d%s", svc.Port+i, svc.Metrics.Path), Metrics: keep,
				Labels: signal.Labels{signal.LabelService: name, signal.LabelInstance: id.String()},
				Period: svc.Metrics.Period.D(), Clock: a.m.Clock, Store: a.store, Log: a.m.Logger,
			})
		}
	}
	return out
}

// diskPaths are the paths that conditions over host_disk_* signals name.
func diskPaths(cfg *config.Config) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range cfg.Conditions {
		if c == nil || !strings.HasPrefix(c.Signal, "host_disk_") {
			continue
		}
		if p := c.Labels["path"]; p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// dbNotice tells people what the database component decided that they must
// know: a refused promotion (no replica may take over without losing
// acknowledged writes, or none is healthy), a replica that does not stream
// (or whose repair the guardrail refused) and a lost redundancy condition
// escalate, and resolve when they end; a promotion and a fence are notices.
// Routes: automation.escalate and automation.notify.
func (a *automation) dbNotice(ev medic.Event) {
	var route config.RunbookRoute
	kind, what := notify.KindInfo, ""
	auto := a.m.cfg.Automation
	switch ev.Kind {
	case "db.promotion_refused":
		route, kind, what = auto.Escalate, notify.KindTrigger, "promotion refused"
	case "db.replica_not_streaming", "db.rejoin_refused":
		route, kind, what = auto.Escalate, notify.KindTrigger, "replica not streaming"
	case "db.replica_streaming":
		route, kind, what = auto.Escalate, notify.KindResolve, "replica not streaming"
		ev.Kind = "db.replica_not_streaming" // the incident it resolves
	case "db.redundancy_lost":
		route, kind, what = auto.Escalate, notify.KindTrigger, "redundancy lost: "+ev.Fields["condition"]
		ev.Kind = medic.EventKind("db.redundancy_lost:" + ev.Fields["condition"])
	case "db.redundancy_restored":
		route, kind, what = auto.Escalate, notify.KindResolve, "redundancy lost: "+ev.Fields["condition"]
		ev.Kind = medic.EventKind("db.redundancy_lost:" + ev.Fields["condition"])
	case "db.promoted":
		route, what = auto.Notify, "new primary"
	case "db.fenced":
		route, what = auto.Notify, "primary fenced"
	case medic.EventStormEngaged:
		route, kind, what = auto.Escalate, notify.KindTrigger, "storm brake engaged, fleet-wide automation paused"
	case medic.EventStormReleased:
		route, kind, what = auto.Escalate, notify.KindResolve, "storm brake engaged, fleet-wide automation paused"
		ev.Kind = medic.EventStormEngaged // the incident it resolves
	default:
		return
	}
	if route.Receiver == "" || !a.notify.Has(route.Receiver) {
		return
	}
	err := a.notify.Send(route.Receiver, notify.Notification{Kind: kind, Incident: "db:" + ev.Target + ":" + string(ev.Kind),
		Severity: route.Severity, Summary: fmt.Sprintf("%s: %s", ev.Target, what), Text: ev.Reason,
		Target: ev.Target, Actor: ev.Actor, Fields: ev.Fields, Time: ev.Time})
	if err != nil {
		a.m.Logger.Warn("database notice not sent", "receiver", route.Receiver, "err", err)
	}
}

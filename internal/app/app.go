// Package app builds medic's components from a config, owns the run group and
// THE shutdown order. It is the only place that starts top-level goroutines;
// the end-to-end tests run it as cmd/medic does.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oklog/run"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/adminsock"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/auth"
	"github.com/medic-dev/medic/internal/backup"
	"github.com/medic-dev/medic/internal/bluegreen"
	"github.com/medic-dev/medic/internal/canary"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/egress"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/events"
	"github.com/medic-dev/medic/internal/flags"
	"github.com/medic-dev/medic/internal/fleet"
	"github.com/medic-dev/medic/internal/logfile"
	"github.com/medic-dev/medic/internal/metrics"
	"github.com/medic-dev/medic/internal/netguard"
	"github.com/medic-dev/medic/internal/probe"
	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/redact"
	"github.com/medic-dev/medic/internal/release"
	"github.com/medic-dev/medic/internal/sqlite"
	"github.com/medic-dev/medic/internal/supervise"
)

// Main is one medic agent.
type Main struct {
	Config *config.Config // loaded and validated; Config.Path is used for reloads
	Logger *slog.Logger
	Clock  clock.Clock
	Detach bool // leave services running when medic stops
	// Upgrades enables the seamless upgrade (SIGUSR2, `medic upgrade`): at most
	// one Main per process may set it (cmd/medic run does).
	Upgrades bool
	// OnEvent, if set, sees every event after it is recorded (the demo prints them).
	OnEvent func(medic.Event)
	// Listening, if set, receives the API's address once it accepts connections.
	Listening func(addr net.Addr)

	mu            sync.Mutex
	cfg           *config.Config
	sup           *supervise.Supervisor
	releases      *release.Manager
	canaries      *canary.Runner    // nil until built (ext_canary.go)
	blueGreen     *bluegreen.Runner // nil until Run builds it
	canaryDeploys *canaryDeployer   // routes canary deploys (ext_canary.go)
	audit         *audit.Log
	aw            *audit.Writer // every append goes through it: it fails closed
	hub           *events.Hub
	mets          *metrics.Metrics

	fds       *netguard.FDs // the descriptor reserve every listener respects
	tokens    *auth.Live    // nil without a tokens file; reloaded with the config
	traffic   *traffic
	egress    *egress.Set // nil when no service declares dependencies
	flags     *flags.Store
	accessLog *slog.Logger
	db        *sqlite.DB

	drills   *drill.Manager                                    // set by the drill component, for the others' injectors
	dbWrites func(drill.WriteRequest) (drill.WriteLoad, error) // set by the database component
	backups  func() []backup.State                             // set by the database component; nil without backups
	fleet    *fleetGuard                                       // made by remedy when fleet: is configured, bound by the fleet component
	// Set by the fleet component for the fleet services' (fleet_services.go).
	fleetAgent *fleet.Agent
	fleetHost  string
	fleetCut   *etcd.Cut // carries the fleet's etcd connections: a fleet drill cuts this host off

	redactor atomic.Pointer[redact.Redactor] // secrets masked in every record and notification
	handover *handover                       // the listeners a seamless upgrade passes on

	observers []func(medic.Event)                           // see observe; set before Run's loops start
	reloaders []func(context.Context, *config.Config) error // see onReload
	handOvers []func()                                      // told that the stop that follows is a handover (upgrade.go)

	load          func(string) (*config.Config, error) // nil: config.Load (tests replace it)
	reloadMu      sync.Mutex                           // guards reloading and pendingReload
	reloading     bool                                 // a SIGHUP reload runs (reloadAsync)
	pendingReload string                               // the actor of a SIGHUP that came meanwhile
	bg            sync.WaitGroup                       // goroutines started outside the group (reloads)
}

func (m *Main) loadConfig() func(string) (*config.Config, error) {
	if m.load != nil {
		return m.load
	}
	return config.Load
}

// observe registers f to see every recorded event (after it is durable). f must not block.
func (m *Main) observe(f func(medic.Event)) { m.observers = append(m.observers, f) }

// onReload registers f to apply a validated new config; an error is recorded, not fatal.
func (m *Main) onReload(f func(context.Context, *config.Config) error) {
	m.reloaders = append(m.reloaders, f)
}

// Run runs the agent until ctx ends or SIGINT/SIGTERM arrives.
func (m *Main) Run(ctx context.Context) error {
	m.Clock = clock.Or(m.Clock)
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	m.cfg = m.Config
	m.setSecrets(m.cfg)
	// Raise the soft descriptor limit to the hard one, and keep a reserve of
	// it that client connections never take (docs/security.md).
	fds, ferr := netguard.Process(m.cfg.API.FDReserve, m.Clock)
	m.fds = fds
	if err := ferr; err != nil {
		m.Logger.Warn("cannot raise the open-files limit; keeping it", "err", err)
	}
	m.Logger.Info("file descriptors", "limit", m.fds.Limit(), "reserve", m.fds.Reserve())
	dataDir := m.cfg.DataDir
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir %s: %w", dataDir, err)
	}
	h, err := newHandover(dataDir, m.Upgrades)
	if err != nil {
		return err
	}
	m.handover = h
	defer m.handover.stop()
	// The store is opened before the group and closed after it: nothing may outlive it.
	db, err := sqlite.Open(dataDir)
	if err != nil {
		return fmt.Errorf("open store in %s: %w", dataDir, err)
	}
	defer db.Close()
	m.db = db
	m.audit, err = audit.Open(db, m.Clock)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	m.aw = audit.NewWriter(m.audit, audit.WriterOptions{Clock: m.Clock})
	if f := m.cfg.API.TokensFile; f != "" {
		if m.tokens, err = auth.OpenLive(f); err != nil {
			return fmt.Errorf("load tokens: %w", err)
		}
	}
	m.hub = events.New(1000)
	m.mets = metrics.New(func() []supervise.ServiceStatus { return m.sup.Status() }, func() float64 { return float64(m.hub.Dropped()) })
	m.mets.AuditHealth(func() float64 {
		if m.aw.Health().Degraded {
			return 1
		}
		return 0
	}, func() float64 { return float64(m.aw.Health().Held) }, func() float64 { return float64(m.aw.Health().LostTotal) })
	m.traffic = &traffic{proxies: map[string]*proxy.Proxy{}, status: func() []supervise.ServiceStatus { return m.sup.Status() }}
	if m.accessLog == nil {
		f, err := logfile.Open(filepath.Join(dataDir, "logs", "access.log"), 50<<20, 3)
		if err != nil {
			return fmt.Errorf("open the proxy access log: %w", err)
		}
		w := logfile.NewBuffered(f, AccessLogBuffer, AccessLogFlush)
		defer w.Close()
		m.accessLog = slog.New(slog.NewJSONHandler(w, nil))
	}
	for name, svc := range m.cfg.Services {
		if svc.Proxy == nil {
			continue
		}
		p, err := proxy.New(proxy.Options{Service: name, Config: svc.Proxy, Clock: m.Clock, Logger: m.Logger.With("proxy", name),
			AccessLog: m.accessLog, Registerer: m.mets.Registry, FDs: m.fds, Listen: m.handover.listen,
			OnClassBreaker: func(ch proxy.ClassBreakerChange) {
				m.Record(context.Background(), medic.Event{Time: ch.At, Kind: medic.EventClassBreaker,
					Target: ch.Service + "/" + ch.Class, Actor: "proxy", Reason: ch.Reason,
					Fields: map[string]string{"service": ch.Service, "class": ch.Class, "from": ch.From, "to": ch.To}})
			}})
		if err != nil {
			m.traffic.closeAll()
			return fmt.Errorf("start proxy for %s: %w", name, err)
		}
		m.traffic.proxies[name] = p
	}
	defer m.traffic.closeAll()
	m.flags = m.newFlags()
	if m.egress, err = m.startEgress(); err != nil {
		return err
	}
	if m.egress != nil {
		defer m.egress.Close()
	}
	// The releases' history decides what runs: a deploy made through the API
	// outlives a restart as long as the config file did not change since.
	m.releases = &release.Manager{Store: release.NewStore(db.SQL()), Traffic: m.traffic, Validate: m.validateSpec, Clock: m.Clock}
	runCfg, err := m.releases.Start(ctx, m.cfg, "medic")
	if err != nil {
		return fmt.Errorf("read the release history: %w", err)
	}
	m.sup, err = supervise.New(supervise.Options{
		Config:   runCfg,
		LogDir:   filepath.Join(dataDir, "logs"),
		StateDir: dataDir,
		Cgroups:  os.Getenv("MEDIC_CGROUPS"), // auto (default), v1, none: docs/design.md
		Env: supervise.Env{
			Clock:  m.Clock,
			Logger: m.Logger,
			Emit:   m.Record,
			Redact: m.redact,
			Detach: m.Detach,
			Hooks:  m.traffic,
			// One timer and a pool of workers for every probe of the agent
			// instead of a goroutine and a timer each (docs/benchmarks.md).
			ProbeScheduler: &probe.Scheduler{Clock: m.Clock},
			Observe: func(id medic.InstanceID, kind medic.ProbeKind, o probe.Outcome, took time.Duration) {
				m.mets.ObserveProbe(id, kind, o.Health, took)
			},
		},
	})
	if err != nil {
		return err
	}
	bg := &bluegreen.Runner{Groups: m.sup, Rollout: m.sup, Traffic: m.traffic, Record: m.Record, Clock: m.Clock}
	bgCtx, bgCancel := context.WithCancel(ctx)
	bg.Start(bgCtx)
	defer func() { bgCancel(); bg.Wait() }()
	m.mu.Lock()
	m.blueGreen = bg
	m.mu.Unlock()
	m.releases.Supervisor = &deployRouter{sup: m.sup, bg: bg}
	m.observe(m.releaseRolledOut)

	ln, err := m.handover.listen("tcp", m.cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("listen for the API on %s: %w", m.cfg.API.Listen, err)
	}
	// The admin socket: the same API for the operator on this machine, outside
	// the TCP listener's caps (internal/adminsock). Without it the CLI uses TCP.
	var sock *adminsock.Listener
	if p := m.cfg.API.SocketPath(); p != "" {
		mode, _ := m.cfg.API.SocketFileMode()
		if sock, err = adminsock.Listen(p, os.FileMode(mode), m.handover.upgrading()); err != nil {
			m.Logger.Warn("admin socket not served; the CLI reaches the agent over TCP", "err", err)
			sock = nil
		} else {
			defer sock.Close()
		}
	}
	// Components beyond the core (remediation, drills, databases, dashboard), each
	// built by one ext_*.go file from the config; nil when not configured.
	var comps []*component
	for _, b := range builders {
		c, err := b.build(m)
		if err != nil {
			return fmt.Errorf("start %s: %w", b.name, err)
		}
		if c != nil {
			c.name = b.name
			comps = append(comps, c)
		}
	}
	srv := &api.Server{
		LiveTokens: m.tokens,
		Supervisor: m.sup,
		Releases:   m.releases,
		Traffic:    m.traffic,
		Dependencies: func() []egress.Stats {
			return m.Dependencies()
		},
		Hub:         m.hub,
		Audit:       m.audit,
		AuditHealth: m.aw.Health,
		Record:      m.Record,
		Reload:      m.Reload,
		Metrics:     m.mets.Registry,
		LogDir:      filepath.Join(dataDir, "logs"),
		Logger:      m.Logger,
		Clock:       m.Clock,
		Limits:      m.cfg.API.Limits,
		FDs:         m.fds,
	}
	for _, c := range comps {
		if c.mount != nil {
			srv.Mounts = append(srv.Mounts, c.mount)
		}
		if c.wrap != nil {
			srv.Wrap = c.wrap
		}
	}
	m.Record(ctx, medic.Event{Time: m.Clock.Now(), Kind: "agent.started", Target: "medic", Actor: "medic",
		Reason: fmt.Sprintf("medic %s started with %d services, API on %s%s", medic.Version, len(m.cfg.Services), ln.Addr(), socketNote(sock))})
	if m.Listening != nil {
		m.Listening(ln.Addr())
	}

	// The audit writer retries a failing log from before the group starts
	// until after it stopped: components append while they stop.
	actx, stopAudit := context.WithCancel(context.WithoutCancel(ctx))
	auditDone := make(chan struct{})
	go func() { defer close(auditDone); m.aw.Serve(actx) }()
	heapDone := make(chan struct{})
	go func() { defer close(heapDone); m.returnHeap(actx) }() // memory a flood of connections left, back to the OS once they are gone

	var g run.Group                // Add order is interrupt order; every interrupt cancels and WAITS.
	supDone := make(chan struct{}) // closed when the supervisor stopped every instance
	{                              // 1 signals: SIGINT/SIGTERM end the group; SIGHUP reloads the config.
		sctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return m.signals(sctx) }, func(error) { cancel() })
	}
	warm := make(chan struct{})  // closed when the proxies may take traffic
	resuming := m.sup.Resuming() // read before the supervisor adopts (and records again)
	{                            // 1b medic's own supervisor (systemd Type=notify) and the upgrade handover:
		// a medic started by an upgrade waits (UpgradeWarmup at most) for the
		// instances it adopted to be ready, then its proxies accept, the old
		// medic is told to go, and systemd gets READY=1 with the new MAINPID;
		// WATCHDOG=1 while the supervisor answers; STOPPING=1 on the way down
		// (not after a handover: the new medic serves).
		wctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			switch {
			case m.handover.upgrading():
				t0 := time.Now()
				c, stop := context.WithTimeout(wctx, UpgradeWarmup)
				err := m.sup.WaitAllReady(c)
				stop()
				m.Logger.Info("upgrade: taking over", "waited", time.Since(t0), "all_ready", err == nil)
			case resuming:
				// After a crash: the proxies' sockets are bound (connections
				// wait in their queues); they accept once the adopted
				// instances are routed again — at once for those ready before
				// the crash — instead of answering 503 meanwhile.
				t0 := time.Now()
				c, stop := context.WithTimeout(wctx, AdoptWarmup)
				err := m.sup.WaitAllReady(c)
				stop()
				m.Logger.Info("adopting: proxies accept", "waited", time.Since(t0), "all_ready", err == nil)
			}
			close(warm)
			if err := m.handover.ready(); err != nil {
				m.Logger.Warn("upgrade: could not tell the previous medic", "err", err)
			}
			notifyReady()
			return watchdog(wctx, func() bool { m.sup.Status(); return true })
		}, func(err error) {
			if !errors.Is(err, errHandedOver) {
				notifyStopping()
			}
			cancel()
		})
	}
	{ // 2 api: stop accepting, finish in-flight requests (5 s), close event streams.
		g.Add(func() error { return srv.Serve(ln) }, func(error) {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		})
		if sock != nil { // the same server: one Shutdown ends both
			g.Add(func() error { return srv.ServeUnix(sock) }, func(error) {
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(sctx)
			})
		}
	}
	// 3 components, in builder order: no new decisions, drills abort and restore,
	// databases follow their own stop rules; each Serve returns once stopped.
	for _, c := range comps {
		if c.serve == nil {
			continue
		}
		cctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			if err := c.serve(cctx); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			return nil
		}, func(error) { cancel() })
	}
	// 4 proxies: stop accepting, drain in-flight requests within their drain_timeout,
	// before the instances behind them are stopped.
	for name, p := range m.traffic.proxies {
		pctx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			select { // after an upgrade, the old medic serves until the instances are ready here
			case <-warm:
			case <-pctx.Done():
				return nil
			}
			if err := p.Serve(pctx); err != nil {
				return fmt.Errorf("proxy %s: %w", name, err)
			}
			return nil
		}, func(error) { cancel() })
	}
	{ // 5 stats: stop sampling before the processes go away.
		sctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return m.sup.CollectStats(sctx, 2*time.Second) }, func(error) { cancel() })
	}
	{ // 6 supervise: stop services dependents-first (TERM → grace → KILL each group), or leave them with --detach.
		sctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { defer close(supDone); return m.sup.Serve(sctx) }, func(error) { cancel() })
	}
	if m.egress != nil { // 7 egress: after the instances stopped, since they call out through it while they drain.
		ectx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return m.egress.Serve(ectx) }, func(error) {
			select { // the instances' last calls during their grace still go through
			case <-supDone:
			case <-time.After(egressStopWait):
			}
			cancel()
		})
	}
	err = g.Run()
	m.bg.Wait() // a SIGHUP reload, its context ended with the group's
	// 8 audit: the last record, appended after every component stopped;
	// then the writer's last try at records held while appends failed.
	m.Record(context.Background(), medic.Event{Time: m.Clock.Now(), Kind: "agent.stopped", Target: "medic", Actor: "medic", Reason: "medic stopped"})
	stopAudit()
	<-auditDone
	<-heapDone
	if h := m.aw.Health(); h.Degraded {
		m.Logger.Error("medic stopped with the audit log degraded: held records are lost", "held", h.Held, "lost", h.Lost, "reason", h.Reason)
	}
	var sig signalError
	if errors.As(err, &sig) || errors.Is(err, errHandedOver) || ctx.Err() != nil {
		return nil // asked to stop: a clean exit
	}
	return err
}

// egressStopWait bounds how long the dependency listeners wait for the
// instances to stop before they close anyway. 30s.
const egressStopWait = 30 * time.Second

// The proxy access log's buffer (logfile.Buffered, as nginx's `access_log
// buffer=32k flush=1s`): its lines reach data_dir/logs/access.log within
// AccessLogFlush or every AccessLogBuffer bytes; a medic that dies loses at
// most that much of it (the audit log is written apart, record by record).
const (
	AccessLogBuffer = 32 << 10
	AccessLogFlush  = time.Second
)

// Record makes an event durable in the audit log, then publishes it. Audit
// appends ignore cancellation: a decision taken during shutdown is still recorded.
func (m *Main) Record(ctx context.Context, ev medic.Event) {
	if ev.Time.IsZero() {
		ev.Time = m.Clock.Now()
	}
	ev = m.redactor.Load().Event(ev) // before it is kept, published or sent anywhere
	wasDegraded := m.aw.Health().Degraded
	_, err := m.aw.Append(context.WithoutCancel(ctx), audit.Record{
		Time: ev.Time, Actor: ev.Actor, Kind: string(ev.Kind), Target: ev.Target, Reason: ev.Reason, Fields: ev.Fields,
	})
	if err != nil {
		m.mets.AuditError()
		if !wasDegraded {
			// Said once per episode (each record while it lasts is counted in
			// medic_audit_append_errors_total); the event is held like the rest.
			h := m.aw.Health()
			m.Logger.Error("audit append failed: remediation paused, records held", "kind", ev.Kind, "target", ev.Target, "err", err)
			if h.Degraded {
				m.Record(ctx, medic.Event{Kind: EventAuditDegraded, Target: "audit", Actor: "medic",
					Reason: h.String() + "; remediation paused until appends work again"})
			}
		}
	}
	if m.mets != nil {
		m.mets.Event(ev.Kind)
	}
	m.hub.Publish(ev)
	for _, f := range m.observers {
		f(ev)
	}
	m.Logger.Info(ev.Reason, "kind", ev.Kind, "target", ev.Target, "actor", ev.Actor)
	if m.OnEvent != nil {
		m.OnEvent(ev)
	}
}

// EventAuditDegraded is published when audit appends start failing (it is
// held and written with the others once they work; audit.gap and
// audit.resumed close the episode).
const EventAuditDegraded medic.EventKind = "audit.degraded"

type signalError struct{ sig os.Signal }

func (e signalError) Error() string { return "received " + e.sig.String() }

func (m *Main) signals(ctx context.Context) error {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case s := <-ch:
			if s == syscall.SIGHUP {
				m.reloadAsync(ctx, "signal:SIGHUP")
				continue
			}
			if s == syscall.SIGUSR2 {
				if err := m.upgrade(ctx); err != nil {
					m.Logger.Error("upgrade failed; this medic keeps serving", "err", err)
					continue
				}
				m.Logger.Info("upgrade: handed over; draining and exiting")
				return errHandedOver
			}
			m.Logger.Info("stopping", "signal", s.String())
			return signalError{s}
		}
	}
}

// Reload loads the config file again. An invalid file is rejected (and
// audited) and the running config stays; a valid one is applied as a diff.
func (m *Main) Reload(ctx context.Context, actor string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reloadTokens(ctx, actor) // whatever the config file holds: a removed token must stop working now
	m.reloadClientKeys(ctx, actor)
	next, err := loadWithin(ctx, m.loadConfig(), m.cfg.Path, ReloadTimeout)
	if err == nil {
		err = m.sup.CheckLimits(next) // limits this host cannot apply
	}
	if err != nil {
		m.Record(ctx, medic.Event{Kind: medic.EventConfigReload, Target: "config", Actor: actor,
			Reason: "reload rejected, running config kept: " + firstLine(err.Error()), Fields: map[string]string{"errors": err.Error()}})
		return fmt.Errorf("reload %s: %w", m.cfg.Path, err)
	}
	depsKept := keepDependencies(m.cfg, next)
	ch := config.Diff(m.cfg, next)
	reason := fmt.Sprintf("reload applied: %d added, %d removed, %d changed, %d unchanged", len(ch.Added), len(ch.Removed), len(ch.Changed), len(ch.Unchanged))
	if len(depsKept) > 0 {
		reason += "; dependencies of " + join(depsKept) + " change on restart only (the running listeners keep theirs)"
	}
	if ch.APIChanged {
		reason += "; api settings change on restart only"
	}
	if kept := proxiesKept(m.cfg, next); len(kept) > 0 {
		reason += "; proxy settings of " + join(kept) + " change on restart only (client keys files are read again now)"
	}
	// A database member's identity, its etcd and its postgres settings are
	// what its lease and its replicas were built on: they change at the next
	// start of medic, never under a running member (switch a primary over
	// first: `medic db switchover`).
	var kept []string
	for _, sec := range ch.Sections {
		if sec == "databases" || sec == "etcd" || sec == "name" || sec == "fleet" {
			kept = append(kept, sec)
		}
	}
	if len(kept) > 0 {
		reason += "; " + join(kept) + " settings change on restart only (the running database members keep theirs)"
	}
	// A service in a blue-green window (blue kept warm, green serving):
	// changed, the file wins without touching green until the service's own
	// instances run the file's spec (bluegreen.Runner.Supersede); unchanged,
	// the window goes on.
	apply := ch
	superseded, windows := windowsOf(m.blueGreen, ch)
	if len(superseded) > 0 {
		apply.Changed = slices.DeleteFunc(slices.Clone(ch.Changed), func(n string) bool { return slices.Contains(superseded, n) })
		reason += "; blue-green window of " + join(superseded) + " superseded: the service's own instances take the file's spec while green serves, then the traffic"
	}
	if len(windows) > 0 {
		reason += "; blue-green window of " + join(windows) + " kept (not changed by the reload)"
	}
	m.Record(ctx, medic.Event{Kind: medic.EventConfigReload, Target: "config", Actor: actor, Reason: reason,
		Fields: map[string]string{"added": join(ch.Added), "removed": join(ch.Removed), "changed": join(ch.Changed)}})
	next.API = m.cfg.API
	next.DataDir = m.cfg.DataDir
	next.Name, next.Etcd, next.Databases, next.Fleet = m.cfg.Name, m.cfg.Etcd, m.cfg.Databases, m.cfg.Fleet
	m.sup.Apply(ctx, withFleetShares(next, m.sup.Status()), apply, actor)
	if err := m.releases.Reloaded(ctx, next, ch.Changed, ch.Added, actor); err != nil {
		m.Logger.Warn("reload: the release history was not updated", "err", err)
	}
	for _, name := range superseded {
		m.supersede(ctx, name, next.Services[name], actor)
	}
	for _, f := range m.reloaders {
		if err := f(ctx, next); err != nil {
			m.Record(ctx, medic.Event{Kind: medic.EventConfigReload, Target: "config", Actor: actor, Reason: "reload: " + err.Error()})
		}
	}
	m.cfg = next
	m.setSecrets(next)
	return nil
}

// windowsOf splits the services with an open blue-green window into those
// the reload changed and the others.
func windowsOf(bg *bluegreen.Runner, ch config.Change) (changed, kept []string) {
	if bg == nil {
		return nil, nil
	}
	for _, name := range ch.Changed {
		if _, open := bg.Window(name); open {
			changed = append(changed, name)
		}
	}
	for _, name := range ch.Unchanged {
		if _, open := bg.Window(name); open {
			kept = append(kept, name)
		}
	}
	return changed, kept
}

// supersede hands a reload's spec of service to its blue-green window; if
// the window ended meanwhile, the spec rolls out as any reload's. Either
// way the rollout's end is the reload's service.rolled_out (which ends its
// release in the history).
func (m *Main) supersede(ctx context.Context, service string, spec *config.Service, actor string) {
	done := func(err error) {
		reason, outcome := "reload rolled out: every instance runs the new version", "done"
		if err != nil {
			reason, outcome = "reload rollout stopped: "+err.Error(), "stopped"
		}
		m.Record(context.WithoutCancel(ctx), medic.Event{Kind: medic.EventRolledOut, Target: service, Actor: actor, Reason: reason,
			Fields: map[string]string{"outcome": outcome}})
	}
	err := m.blueGreen.Supersede(service, spec, actor, "reload", done)
	if errors.Is(err, bluegreen.ErrNoWindow) {
		err = m.sup.Deploy(context.WithoutCancel(ctx), service, spec, actor, "reload", done)
		if errors.Is(err, supervise.ErrInProgress) {
			err = nil
		}
	}
	if err != nil {
		done(err)
	}
}

// reloadTokens reads the tokens file again and audits what changed; on an
// error the tokens in force stay, and the rejection is audited.
func (m *Main) reloadTokens(ctx context.Context, actor string) {
	if m.tokens == nil {
		return
	}
	added, removed, err := m.tokens.Reload()
	if err != nil {
		m.Record(ctx, medic.Event{Kind: medic.EventConfigReload, Target: "tokens", Actor: actor,
			Reason: "tokens file rejected, the tokens in force stay: " + firstLine(err.Error())})
		return
	}
	if len(added)+len(removed) == 0 {
		return
	}
	m.Record(ctx, medic.Event{Kind: medic.EventConfigReload, Target: "tokens", Actor: actor,
		Reason: fmt.Sprintf("tokens reloaded: %d added, %d removed; removed tokens are refused from now on", len(added), len(removed)),
		Fields: map[string]string{"added": join(added), "removed": join(removed)}})
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i] + " …"
		}
	}
	return s
}

func join(xs []string) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}

// Proxies returns the figures of every service's proxy (nil before Run built them).
func (m *Main) Proxies() []proxy.Stats {
	if m.traffic == nil {
		return nil
	}
	return m.traffic.Stats()
}

// socketNote names the admin socket for the agent.started record.
func socketNote(l *adminsock.Listener) string {
	if l == nil {
		return ""
	}
	return " and unix:" + l.Path()
}

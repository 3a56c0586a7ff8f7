package pgha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/netguard"
)

// The REST listener's caps (docs/security.md).
const (
	restMaxConns     = 128
	restMaxPerSource = 32
)

// Options configure an Agent.
type Options struct {
	// Listen binds the REST endpoints' socket; nil means net.Listen (the
	// agent passes the function that hands sockets over on an upgrade).
	Listen func(network, addr string) (net.Listener, error)

	Cluster  string           // the database's name in the config; a key segment in etcd
	Member   string           // this member's name, unique in the cluster
	Config   *config.Database // defaults applied; postgres.data absolute
	Etcd     *etcd.Client
	Prefix   string // etcd key prefix (config etcd.prefix)
	StateDir string // the role marker and the postgres log go here
	Clock    clock.Clock
	Logger   *slog.Logger
	// Record makes an event durable (the audit log); nil drops events.
	Record func(ctx context.Context, ev medic.Event)
	// Metrics may be nil.
	Metrics *Metrics
	// FDs is the process's descriptor reserve the REST listener respects; nil: none.
	FDs *netguard.FDs
	// MetricsHandler, if set, serves GET /metrics on the REST listener
	// (Patroni serves its metrics there too): the agent's whole Prometheus
	// registry, so that a database host needs one scrape target.
	MetricsHandler http.Handler
	// Proxy is this agent's primary listener for the database, published
	// with the member ("" when it has none).
	Proxy string
	// OnView, if set, is called from the loop with every view of the
	// cluster (new etcd data, or a change of freshness). It must not block.
	OnView func(View)
	// Settings are postgres settings owned by another part of medic (the
	// backup's WAL archiving), written after medic's own.
	Settings map[string]string
	// BackupServer is the address of this member's pgBackRest TLS server,
	// published with the member ("" when it runs none).
	BackupServer string
	// LeftoverWait is how long Serve waits, before its loop starts, for the
	// previous medic to hand over a postmaster left running on the data
	// directory (or to stop it): a medic started by an upgrade sets it,
	// since the previous medic's loop still runs until it has handed over.
	// A postmaster handed over is adopted with the lease; any other is
	// stopped. 0 does not wait (after a crash).
	LeftoverWait time.Duration
}

// Agent keeps one member: Serve runs its loop.
type Agent struct {
	o     Options
	born  time.Time // wall time this agent was made: a handover record older than it is a previous upgrade's
	pol   Policy
	k     keys
	clock clock.Clock
	log   *slog.Logger
	pg    *Postgres
	pr    *prober
	wake  chan struct{}
	wg    sync.WaitGroup // the watch and the REST server
	jobs  sync.WaitGroup // the background operation
	me    MemberInfo     // postgres address and REST address as published

	mu        sync.Mutex
	snapshot  View   // latest view from the watch (Fresh unset)
	view      View   // latest view as acted on
	local     Local  // latest observation
	member    Member // decision state
	session   *etcd.Session
	election  *etcd.Election
	leaderVal LeaderInfo
	lastOK    time.Time // send time of the last request etcd answered
	lastRenew time.Time
	lastPub   time.Time
	pubVal    string
	optime    uint64
	busy      string
	retryAt   time.Time // a failed job is not retried before this
	fenceT    clock.Timer
	loopAt    time.Time // last completed iteration (liveness)
	leaderFor time.Time // when this member last became leader
	// pendingRevoke is the lease of a session dropped while etcd could not
	// be reached (0: none); keepLease revokes it once etcd answers.
	pendingRevoke int64
	redNow        []string // redundancy conditions firing, with what was seen (status)
	fs            failsafeState
	campaigning   bool // a campaign is in flight (a failsafe request is refused meanwhile)
	fsClient      *http.Client
	started       time.Time   // when Serve started (a promise given before is forgotten)
	handingOver   atomic.Bool // the coming stop hands the member over (HandOver)

	// loop only
	redSince  map[string]time.Time // redundancy conditions holding since
	redFiring map[string]bool      // and recorded as lost
}

// New checks the options and prepares the local postgres manager.
func New(o Options) (*Agent, error) {
	if o.Cluster == "" || o.Member == "" || o.Config == nil || o.Etcd == nil {
		return nil, errors.New("pgha: cluster, member, config and etcd are required")
	}
	c := o.Config
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("pgha: create %s: %w", o.StateDir, err)
	}
	a := &Agent{o: o, born: time.Now(), clock: clock.Or(o.Clock), log: o.Logger, wake: make(chan struct{}, 1),
		k: keys{base: o.Prefix + "/" + o.Cluster}}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.log = a.log.With("db", o.Cluster, "member", o.Member)
	a.pol = Policy{TTL: c.LeaseTTL.D(), LoopWait: c.LoopWait.D(), RetryTimeout: c.RetryTimeout.D(),
		PrimaryStartTimeout: c.PrimaryStartTimeout.D(), MaxLag: uint64(c.MaximumLagOnFailover),
		Sync: c.Replication.Mode == config.ReplicationSync, Protected: c.Protected, Failsafe: c.FailsafeOn()}
	// Failsafe questions go to the other agents' REST endpoints directly
	// (no proxy from the environment), bounded by retry_timeout.
	a.fsClient = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	pg, err := NewPostgres(PostgresOptions{Member: o.Member, BinDir: c.Postgres.BinDir, Data: c.Postgres.Data,
		Listen: c.Postgres.Listen, User: c.Postgres.User, Superuser: c.Postgres.Superuser, Parameters: c.Postgres.Parameters,
		Settings: o.Settings, HBA: c.Postgres.HBA, LogPath: filepath.Join(o.StateDir, o.Cluster+"-postgres.log"),
		StatePath: filepath.Join(o.StateDir, o.Cluster+"-role.json"), Logger: a.log, Clock: a.clock})
	if err != nil {
		return nil, err
	}
	a.pg, a.pr = pg, &prober{dsn: pg.ConnString + " connect_timeout=2", clock: a.clock}
	a.member = NewMember(o.Member, a.pol)
	o.Metrics.start(o.Cluster, o.Member)
	o.Metrics.roleFunc(o.Cluster, o.Member, a.currentRole)
	host, _ := os.Hostname()
	a.me = MemberInfo{Name: o.Member, Postgres: c.Postgres.ConnectAddress, Host: host, AgentPID: os.Getpid(), Proxy: o.Proxy, Protected: c.Protected,
		Data: c.Postgres.Data, BackupServer: o.BackupServer}
	if c.REST != nil {
		a.me.REST = c.RESTAddress()
	}
	return a, nil
}

// Serve runs the member until ctx ends, then stops postgres (fast), gives
// up the lease (deleting the leader key if it held it, so that a replica
// takes over at once) and returns once everything it started has ended.
// After HandOver it leaves postgres and the lease to the next medic instead.
func (a *Agent) Serve(ctx context.Context) error {
	a.mu.Lock()
	a.started = a.clock.Now()
	a.mu.Unlock()
	if err := a.takeOver(ctx); err != nil {
		return err
	}
	// The agent file says this medic's loop runs; removed once it has
	// ended, so that a medic waiting to take over may go on.
	a.markAgent()
	defer a.unmarkAgent()
	wctx, stopWatch := context.WithCancel(ctx)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.o.Etcd.Watch(wctx, a.k.base, a.clock, func(s etcd.Snapshot) {
			v := viewOf(s, a.k)
			a.mu.Lock()
			a.snapshot = v
			a.mu.Unlock()
			a.poke()
		})
	}()
	var rest *http.Server
	if r := a.o.Config.REST; r != nil {
		listen := a.o.Listen
		if listen == nil {
			listen = net.Listen
		}
		ln, err := listen("tcp", r.Listen)
		if err != nil {
			stopWatch()
			a.wg.Wait()
			return fmt.Errorf("pgha: listen for the REST endpoints on %s: %w", r.Listen, err)
		}
		// The REST endpoints answer health checks of load balancers: short
		// requests from a few sources (docs/security.md gives the bounds).
		gl := netguard.Wrap(ln, netguard.Options{Name: "db rest", FDs: a.o.FDs, Refusal: netguard.HTTP503, Logger: a.log, Clock: a.clock,
			Limits: netguard.Limits{MaxConns: restMaxConns, MaxPerSource: restMaxPerSource}})
		rest = &http.Server{Handler: a.RESTHandler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			IdleTimeout: 30 * time.Second, ConnState: gl.ConnState}
		a.wg.Add(1)
		go func() { defer a.wg.Done(); rest.Serve(gl) }()
	}
	a.log.Info("database member starting", "postgres", a.me.Postgres, "mode", a.o.Config.Replication.Mode, "ttl", a.pol.TTL)
	for {
		a.iterate(ctx)
		t := a.clock.NewTimer(a.pol.LoopWait)
		select {
		case <-ctx.Done():
		case <-a.wake:
		case <-t.C():
		case <-a.pg.Exited():
		}
		t.Stop()
		if ctx.Err() != nil {
			break
		}
	}
	a.jobs.Wait() // a start decided before the stop must not outlive it
	if !a.handingOver.Load() || !a.detach(context.WithoutCancel(ctx)) {
		a.shutdown()
	}
	stopWatch()
	if rest != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		rest.Shutdown(sctx)
		cancel()
	}
	a.wg.Wait()
	a.pr.close()
	return nil
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// shutdown stops postgres and hands the lease over.
func (a *Agent) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a.mu.Lock()
	el, s := a.election, a.session
	a.mu.Unlock()
	if err := a.pg.Stop(ctx, 20*time.Second); err != nil {
		a.log.Warn("stop postgres", "err", err)
	}
	if el != nil {
		rctx, c := context.WithTimeout(ctx, a.pol.RetryTimeout*2)
		err := el.Resign(rctx)
		c()
		reason := "medic stopped: postgres stopped and the lease given up, so that a replica takes over at once"
		if err != nil {
			reason += " (resign failed: the lease expires in " + a.pol.TTL.String() + ")"
		}
		a.record(ctx, "db.demoted", reason)
	}
	if s != nil {
		rctx, c := context.WithTimeout(ctx, a.pol.RetryTimeout*2)
		s.Close(rctx)
		c()
	}
	a.mu.Lock()
	if a.fenceT != nil {
		a.fenceT.Stop()
	}
	a.mu.Unlock()
}

// record writes an event about this member.
func (a *Agent) record(ctx context.Context, kind, reason string) {
	if a.o.Record == nil {
		a.log.Info(reason, "kind", kind)
		return
	}
	{
		a.o.Record(ctx, medic.Event{Time: a.clock.Now(), Kind: medic.EventKind(kind), Actor: "db:" + a.o.Member,
			Target: "db/" + a.o.Cluster + "/" + a.o.Member, Reason: reason})
	}
}

// leading reports whether the agent holds the election.
func (a *Agent) leading() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.election != nil
}

// eventOf is an event about this member made by actor.
func eventOf(a *Agent, kind, actor, reason string) medic.Event {
	return medic.Event{Time: a.clock.Now(), Kind: medic.EventKind(kind), Actor: actor,
		Target: "db/" + a.o.Cluster + "/" + a.o.Member, Reason: reason}
}

package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/backup"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/dbproxy"
	"github.com/medic-dev/medic/internal/etcd"
	"github.com/medic-dev/medic/internal/pgha"
)

func init() { register(30, "db", buildDB) }

// dbMember is one database this agent keeps: its member and, optionally, its router.
type dbMember struct {
	name      string
	superuser string
	agent     *pgha.Agent
	router    *dbproxy.Router
	backup    *backup.Loop // nil without a backup section
}

// buildDB makes one pgha.Agent per configured database (this host's member
// of that cluster) and its primary/replicas router. They stop with order 30:
// after drills and remediation, before the proxies and the supervisor. A
// database's agent stops its postgres and hands its lease over when medic
// stops. The Patroni-compatible endpoints are served on each database's own
// rest.listen, not on the API (load balancers probe them without tokens).
func buildDB(m *Main) (*component, error) {
	if len(m.cfg.Databases) == 0 {
		return nil, nil
	}
	e := m.cfg.Etcd
	if e == nil {
		return nil, errors.New("databases need the etcd section")
	}
	member := m.cfg.Name
	if member == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("member name: no name in the config and no host name: %w", err)
		}
		member = h
	}
	var cut *etcd.Cut // drills may cut this agent from etcd
	for _, d := range m.cfg.Databases {
		if d.Drills.Allow {
			cut = &etcd.Cut{}
		}
	}
	cli, err := dialEtcd(m, cut)
	if err != nil {
		return nil, err
	}
	mets, err := pgha.NewMetrics(m.mets.Registry)
	if err != nil {
		cli.Close()
		return nil, err
	}
	base, _ := os.Getwd()
	if m.cfg.Path != "" {
		if abs, err := filepath.Abs(filepath.Dir(m.cfg.Path)); err == nil {
			base = abs
		}
	}
	var dbs []*dbMember
	var bmets *backup.Metrics
	closeAll := func() {
		for _, d := range dbs {
			if d.router != nil {
				d.router.Close()
			}
		}
		cli.Close()
	}
	names := make([]string, 0, len(m.cfg.Databases))
	for name := range m.cfg.Databases {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cfg := *m.cfg.Databases[name]
		cfg.SetDefaults()
		if !filepath.IsAbs(cfg.Postgres.Data) {
			cfg.Postgres.Data = filepath.Join(base, cfg.Postgres.Data)
		}
		d := &dbMember{name: name, superuser: cfg.Postgres.Superuser}
		var leftoverWait, holdFor time.Duration
		if m.handover.upgrading() { // the previous medic hands its postgres over (or stops it) once it handed over
			leftoverWait, holdFor = UpgradeTimeout+30*time.Second, upgradeDBHold
		}
		log := m.Logger.With("component", "db")
		if cfg.Proxy != nil {
			if d.router, err = dbproxy.New(dbproxy.Options{Cluster: name, Config: cfg.Proxy, Clock: m.Clock,
				Logger: log, Registerer: m.mets.Registry, FDs: m.fds, Listen: m.handover.listen, HoldFor: holdFor}); err != nil {
				closeAll()
				return nil, fmt.Errorf("database %s: %w", name, err)
			}
		}
		router := d.router
		if router != nil {
			m.handOvers = append(m.handOvers, router.HandOver)
		}
		var proxyAddr string
		if router != nil {
			proxyAddr = router.PrimaryAddr().String()
		}
		bopts, err := backupOptions(m, name, &cfg)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("database %s: backup: %w", name, err)
		}
		view := &atomic.Pointer[pgha.View]{} // the newest, for the backups' choice of a replica
		var settings map[string]string
		var bserver string
		if bopts != nil {
			settings = backup.Settings(*bopts)
			bserver = backupServerAddr(cfg.Backup.TLS, bopts, cfg.Postgres.ConnectAddress)
		}
		d.agent, err = pgha.New(pgha.Options{Cluster: name, Member: member, Config: &cfg, Etcd: cli, Prefix: e.Prefix, Proxy: proxyAddr,
			Settings: settings, BackupServer: bserver, LeftoverWait: leftoverWait,
			StateDir: filepath.Join(m.cfg.DataDir, "db"), Clock: m.Clock, Logger: log, Record: m.Record, Metrics: mets, FDs: m.fds, Listen: m.handover.listen,
			MetricsHandler: promhttp.HandlerFor(m.mets.Registry, promhttp.HandlerOpts{}),
			OnView: func(v pgha.View) {
				view.Store(&v)
				if router != nil {
					router.Route(routes(v))
				}
			}})
		dbs = append(dbs, d)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("database %s: %w", name, err)
		}
		// On an upgrade the member's postgres keeps running and the new
		// medic adopts it with the lease (docs/failover.md).
		m.handOvers = append(m.handOvers, d.agent.HandOver)
		if bopts != nil {
			if bmets == nil {
				if bmets, err = backup.NewMetrics(m.mets.Registry); err != nil {
					closeAll()
					return nil, err
				}
			}
			if d.backup, err = startBackup(m, bopts, d.agent, bmets, view); err != nil {
				closeAll()
				return nil, fmt.Errorf("database %s: backup: %w", name, err)
			}
		}
	}
	if m.drills != nil {
		dd := &dbDrills{dbs: dbs, cut: cut, record: m.Record, objs: map[string]*config.Objectives{}}
		for name, c := range m.cfg.Databases {
			dd.objs[name] = c.Objectives
		}
		dd.register(m.drills.Injectors())
		m.dbWrites = dd.writes
	}
	m.backups = func() []backup.State { return backupStates(dbs) }
	h := &dbAPI{dbs: dbs, record: m.Record}
	return &component{serve: func(ctx context.Context) error { return serveDB(ctx, dbs, cli) }, mount: h.mount}, nil
}

// upgradeDBHold bounds how long the database listeners of a medic started
// by an upgrade hold new connections in the listen queue until its first view
// of the cluster routes them. 10s.
const upgradeDBHold = 10 * time.Second

// routes turns a view into the router's backends. A view that cannot be
// trusted (this agent is cut off from etcd) routes no primary, unless the
// DCS failsafe vouches for its leader (docs/failover.md).
func routes(v pgha.View) (*dbproxy.Backend, []dbproxy.Backend) {
	var reps []dbproxy.Backend
	for _, mi := range v.Replicas() {
		reps = append(reps, dbproxy.Backend{Member: mi.Name, Addr: mi.Postgres})
	}
	member, addr, ok := v.Primary()
	if !ok || !(v.Fresh || v.Failsafe) {
		return nil, reps
	}
	return &dbproxy.Backend{Member: member, Addr: addr}, reps
}

// serveDB runs every member and router until ctx ends; a member that fails
// stops the others. It returns once all have stopped.
func serveDB(ctx context.Context, dbs []*dbMember, cli *etcd.Client) error {
	defer cli.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(dbs))
	for _, d := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.agent.Serve(ctx); err != nil {
				errs <- fmt.Errorf("database %s: %w", d.name, err)
				cancel()
			}
		}()
		if d.backup != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.backup.Serve(ctx)
			}()
		}
		if d.router != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.router.Serve(ctx); err != nil {
					errs <- fmt.Errorf("database %s proxy: %w", d.name, err)
					cancel()
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// dbAPI serves /v1/db/*.
type dbAPI struct {
	dbs    []*dbMember
	record func(ctx context.Context, ev medic.Event)
}

func (h *dbAPI) mount(mux *http.ServeMux, g api.Guards) {
	mux.Handle("GET /v1/db/status", g.View(http.HandlerFunc(h.status)))
	mux.Handle("POST /v1/db/switchover", g.Act(http.HandlerFunc(h.switchover)))
	mux.Handle("POST /v1/db/failover", g.Act(http.HandlerFunc(h.failover)))
	mux.Handle("POST /v1/db/backup", g.Operate(http.HandlerFunc(h.backupNow)))
	mux.Handle("POST /v1/db/restore", g.Act(http.HandlerFunc(h.restore)))
	mux.Handle("POST /v1/db/bootstrap", g.Act(http.HandlerFunc(h.bootstrap)))
}

// DBStatusDoc is the body of GET /v1/db/status.
type DBStatusDoc struct {
	Databases []pgha.Status `json:"databases"`
	// Backups: the backup state of each database with a backup section.
	Backups []backup.State `json:"backups,omitempty"`
}

func (h *dbAPI) status(w http.ResponseWriter, r *http.Request) {
	var doc DBStatusDoc
	for _, d := range h.dbs {
		doc.Databases = append(doc.Databases, d.agent.Status(r.Context()))
	}
	doc.Backups = backupStates(h.dbs)
	api.WriteJSON(w, http.StatusOK, doc)
}

// dbRequest is the body of POST /v1/db/switchover and /v1/db/failover.
type dbRequest struct {
	To       string `json:"to"`
	Database string `json:"database"` // required when the agent keeps more than one
}

// DBChangeDoc answers a switchover or failover.
type DBChangeDoc struct {
	Database string  `json:"database"`
	Primary  string  `json:"primary"`
	Seconds  float64 `json:"seconds"`
}

func (h *dbAPI) switchover(w http.ResponseWriter, r *http.Request) { h.change(w, r, "switchover") }
func (h *dbAPI) failover(w http.ResponseWriter, r *http.Request)   { h.change(w, r, "failover") }

func (h *dbAPI) change(w http.ResponseWriter, r *http.Request, what string) {
	var body dbRequest
	if err := api.DecodeBody(r, &body); err != nil {
		api.WriteError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if what == "failover" && body.To == "" {
		api.WriteError(w, http.StatusBadRequest, "body.to: required: the member to promote")
		return
	}
	d, err := h.pick(body.Database)
	if err != nil {
		api.WriteError(w, http.StatusNotFound, "%v", err)
		return
	}
	actor := api.ActorOf(r)
	ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	defer cancel()
	start := time.Now()
	var primary string
	if what == "switchover" {
		primary, err = d.agent.Switchover(ctx, body.To, actor)
	} else {
		primary, err = d.agent.Failover(ctx, body.To, actor)
	}
	reason := fmt.Sprintf("%s to %s: %s is the primary", what, orBest(body.To), primary)
	if err != nil {
		reason = fmt.Sprintf("%s to %s failed: %v", what, orBest(body.To), err)
	}
	h.record(r.Context(), medic.Event{Kind: medic.EventAPIAction, Target: "db/" + d.name, Actor: actor, Reason: reason})
	if err != nil {
		api.WriteError(w, dbErrStatus(err), "%v", err)
		return
	}
	api.WriteJSON(w, http.StatusOK, DBChangeDoc{Database: d.name, Primary: primary, Seconds: time.Since(start).Seconds()})
}

func (h *dbAPI) pick(name string) (*dbMember, error) {
	if name == "" {
		if len(h.dbs) == 1 {
			return h.dbs[0], nil
		}
		return nil, fmt.Errorf("body.database: required: this agent keeps %d databases", len(h.dbs))
	}
	for _, d := range h.dbs {
		if d.name == name {
			return d, nil
		}
	}
	return nil, fmt.Errorf("database %q: not kept by this agent", name)
}

func dbErrStatus(err error) int {
	switch {
	case errors.Is(err, pgha.ErrUnknownMember):
		return http.StatusNotFound
	case errors.Is(err, pgha.ErrRefused):
		return http.StatusConflict
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func orBest(s string) string {
	if s == "" {
		return "the best replica"
	}
	return s
}

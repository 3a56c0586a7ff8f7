package app

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/drill/report"
)

func init() { register(10, "drill", buildDrill) }

// buildDrill makes the drill manager: drills inject faults into services
// that allow them, drive load through their proxies and judge the recovery
// from the agent's own events. It is stopped first among the components
// (order 10) so that a drill's fault is removed while everything else still runs.
func buildDrill(m *Main) (*component, error) {
	var cur atomic.Pointer[config.Config]
	cur.Store(m.cfg)
	m.onReload(func(_ context.Context, cfg *config.Config) error { cur.Store(cfg); return nil })
	var store drill.Store
	if m.db != nil {
		store = drill.NewSQLStore(m.db.SQL())
	}
	var tr drill.Traffic
	if len(m.traffic.proxies) > 0 {
		tr = m.traffic
	}
	mgr, err := drill.NewManager(drill.Deps{
		Sup: m.sup, Traffic: tr, Events: m.hub, Audit: m.audit, Record: m.Record,
		Config: cur.Load, Clock: m.Clock, Logger: m.Logger.With("component", "drill"),
		Components: components(m),
		Writes: func(r drill.WriteRequest) (drill.WriteLoad, error) {
			if m.dbWrites == nil {
				return drill.WriteLoad{}, errors.New("this agent keeps no database")
			}
			return m.dbWrites(r)
		},
	}, store)
	if err != nil {
		return nil, err
	}
	m.drills = mgr
	mgr.Injectors().Register("egress", drill.InjectorFunc(m.injectDependency))
	if m.canaryDeploys != nil {
		mgr.Injectors().Register("canary", drill.InjectorFunc(m.canaryDeploys.inject(m)))
	}
	h := &drillAPI{mgr: mgr}
	return &component{serve: mgr.Serve, mount: h.mount}, nil
}

// components names what the config makes this agent run beyond the core, for
// scenarios that need them.
func components(m *Main) []string {
	cfg := m.cfg
	var out []string
	if m.egress != nil {
		out = append(out, "egress")
	}
	if len(cfg.Runbooks) > 0 {
		out = append(out, "remedy")
	}
	for _, s := range cfg.Services {
		if s.Proxy != nil && s.Proxy.Clients.Enabled() {
			out = append(out, "classes")
			break
		}
	}
	if len(cfg.Databases) > 0 {
		out = append(out, "database")
	}
	if cfg.Fleet != nil && cfg.Etcd != nil {
		for _, s := range cfg.Services {
			if s != nil && s.Fleet != nil {
				out = append(out, "fleet")
				break
			}
		}
	}
	for _, s := range cfg.Services {
		if s.Deploy != nil && s.Deploy.Strategy == config.StrategyCanary {
			out = append(out, "canary")
			break
		}
	}
	return out
}

type drillAPI struct{ mgr *drill.Manager }

func (h *drillAPI) mount(mux *http.ServeMux, g api.Guards) {
	mux.Handle("POST /v1/drills", g.Act(http.HandlerFunc(h.start)))
	mux.Handle("POST /v1/drills/abort", g.Operate(http.HandlerFunc(h.abort)))
	mux.Handle("GET /v1/drills", g.View(http.HandlerFunc(h.list)))
	mux.Handle("GET /v1/drills/scenarios", g.View(http.HandlerFunc(h.scenarios)))
	mux.Handle("GET /v1/drills/modes", g.View(http.HandlerFunc(h.modes)))
	mux.Handle("GET /v1/drills/{id}", g.View(http.HandlerFunc(h.get)))
	mux.Handle("GET /v1/drills/{id}/report.html", g.View(http.HandlerFunc(h.html)))
	mux.Handle("GET /v1/drills/{id}/report.md", g.View(http.HandlerFunc(h.markdown)))
}

func drillStatus(err error) int {
	switch {
	case errors.Is(err, drill.ErrUnknownScenario), errors.Is(err, drill.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, drill.ErrBusy), errors.Is(err, drill.ErrRefused):
		return http.StatusConflict
	case errors.Is(err, drill.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// start: POST /v1/drills {scenario, service, instance, dependency, load_rps|connections, duration}
// answers 202 with the running drill; poll GET /v1/drills/{id} for the verdict.
func (h *drillAPI) start(w http.ResponseWriter, r *http.Request) {
	var req drill.Request
	if err := api.DecodeBody(r, &req); err != nil {
		api.WriteError(w, http.StatusBadRequest, "%v", err)
		return
	}
	switch {
	case req.Scenario == "":
		api.WriteError(w, http.StatusBadRequest, "body.scenario: required")
		return
	case req.LoadRPS < 0 || req.LoadRPS > 10000:
		api.WriteError(w, http.StatusBadRequest, "body.load_rps: want 0 to 10000")
		return
	case req.Connections < 0 || req.Connections > 1000:
		api.WriteError(w, http.StatusBadRequest, "body.connections: want 0 to 1000")
		return
	case req.LoadRPS > 0 && req.Connections > 0:
		api.WriteError(w, http.StatusBadRequest, "body: load_rps and connections exclude each other")
		return
	case req.Duration.D() > time.Hour:
		api.WriteError(w, http.StatusBadRequest, "body.duration: at most 1h")
		return
	}
	res, err := h.mgr.Start(req, api.ActorOf(r))
	if err != nil {
		api.WriteError(w, drillStatus(err), "%v", err)
		return
	}
	api.WriteJSON(w, http.StatusAccepted, res)
}

func (h *drillAPI) abort(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	res, err := h.mgr.Abort(ctx, api.ActorOf(r))
	if err != nil {
		api.WriteError(w, drillStatus(err), "%v", err)
		return
	}
	api.WriteJSON(w, http.StatusOK, res)
}

func (h *drillAPI) list(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			api.WriteError(w, http.StatusBadRequest, "limit %q: want a number ≥ 0", v)
			return
		}
		limit = n
	}
	list, err := h.mgr.List(r.Context(), limit)
	if err != nil {
		api.WriteError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"drills": list})
}

func (h *drillAPI) scenarios(w http.ResponseWriter, r *http.Request) {
	api.WriteJSON(w, http.StatusOK, map[string]any{"scenarios": h.mgr.Scenarios()})
}

func (h *drillAPI) modes(w http.ResponseWriter, r *http.Request) {
	ms, err := h.mgr.Modes(r.Context())
	if err != nil {
		api.WriteError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"modes": ms})
}

func (h *drillAPI) result(w http.ResponseWriter, r *http.Request) (drill.Result, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		api.WriteError(w, http.StatusBadRequest, "drill id %q: want a number ≥ 1", r.PathValue("id"))
		return drill.Result{}, false
	}
	res, err := h.mgr.Get(r.Context(), id)
	if err != nil {
		api.WriteError(w, drillStatus(err), "%v", err)
		return drill.Result{}, false
	}
	return res, true
}

func (h *drillAPI) get(w http.ResponseWriter, r *http.Request) {
	if res, ok := h.result(w, r); ok {
		api.WriteJSON(w, http.StatusOK, res)
	}
}

func (h *drillAPI) html(w http.ResponseWriter, r *http.Request) {
	if res, ok := h.result(w, r); ok {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
		report.HTML(w, &res)
	}
}

func (h *drillAPI) markdown(w http.ResponseWriter, r *http.Request) {
	if res, ok := h.result(w, r); ok {
		w.Header().Set("Content-Type", "text/markdown; charset=utf-8")
		report.Markdown(w, &res)
	}
}

package app

import (
	"errors"
	"net/http"

	"github.com/medic-dev/medic/internal/alerts"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/remedy"
)

// mount adds the automation routes: alerts in, conditions, runbooks,
// incidents, approvals and the switches.
func (a *automation) mount(mux *http.ServeMux, g api.Guards) {
	h := func(f http.HandlerFunc) http.Handler { return f }
	mux.Handle("POST /v1/alerts/alertmanager", g.Operate(alerts.AlertmanagerHandler(a.detect.PushAlerts)))
	mux.Handle("POST /v1/alerts", g.Operate(alerts.GenericHandler(a.detect.PushAlerts)))
	mux.Handle("GET /v1/conditions", g.View(h(func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string]any{"alerts": a.detect.Alerts(), "stats": a.detect.Stats()})
	})))
	mux.Handle("GET /v1/runbooks", g.View(h(func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string]any{"paused": a.engine.Paused(), "dry_run": a.engine.DryRun(), "runbooks": a.engine.Runbooks()})
	})))
	mux.Handle("GET /v1/incidents", g.View(h(func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string]any{"incidents": a.engine.Incidents()})
	})))
	mux.Handle("GET /v1/approvals", g.View(h(func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string]any{"approvals": append(a.engine.Pending(), canaryApprovals(a.m.canaries)...)})
	})))
	mux.Handle("POST /v1/approvals/{id}/approve", g.Act(h(func(w http.ResponseWriter, r *http.Request) {
		var body struct{}
		if err := api.DecodeBody(r, &body); err != nil {
			api.WriteError(w, http.StatusBadRequest, "%v", err)
			return
		}
		if svc, ok := canaryApprovalService(r.PathValue("id")); ok {
			a.decidedCanary(w, r, svc, true)
			return
		}
		a.decided(w, r, a.engine.Approve(r.Context(), r.PathValue("id"), api.ActorOf(r)), "approved")
	})))
	mux.Handle("POST /v1/approvals/{id}/deny", g.Operate(h(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Reason string `json:"reason"`
		}
		if err := api.DecodeBody(r, &body); err != nil {
			api.WriteError(w, http.StatusBadRequest, "%v", err)
			return
		}
		if svc, ok := canaryApprovalService(r.PathValue("id")); ok {
			a.decidedCanary(w, r, svc, false)
			return
		}
		a.decided(w, r, a.engine.Deny(r.Context(), r.PathValue("id"), api.ActorOf(r), body.Reason), "denied")
	})))
	sw := func(do func(r *http.Request)) http.Handler {
		return g.Operate(h(func(w http.ResponseWriter, r *http.Request) {
			do(r)
			api.WriteJSON(w, http.StatusOK, map[string]any{"paused": a.engine.Paused(), "dry_run": a.engine.DryRun()})
		}))
	}
	mux.Handle("POST /v1/automation/pause", sw(func(r *http.Request) { a.engine.Pause(r.Context(), api.ActorOf(r)) }))
	mux.Handle("POST /v1/automation/resume", sw(func(r *http.Request) { a.engine.Resume(r.Context(), api.ActorOf(r)) }))
	mux.Handle("POST /v1/automation/dry-run", g.Operate(h(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			On *bool `json:"on"`
		}
		if err := api.DecodeBody(r, &body); err != nil || body.On == nil {
			api.WriteError(w, http.StatusBadRequest, "body.on: want true or false")
			return
		}
		a.engine.SetDryRun(r.Context(), *body.On, api.ActorOf(r))
		api.WriteJSON(w, http.StatusOK, map[string]any{"paused": a.engine.Paused(), "dry_run": a.engine.DryRun()})
	})))
	mux.Handle("POST /v1/runbooks/{name}/trust", g.Admin(h(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Level string `json:"level"`
		}
		if err := api.DecodeBody(r, &body); err != nil {
			api.WriteError(w, http.StatusBadRequest, "%v", err)
			return
		}
		lvl, err := remedy.ParseLevel(body.Level)
		if err != nil {
			api.WriteError(w, http.StatusBadRequest, "body.level: %v", err)
			return
		}
		a.decided(w, r, a.engine.SetTrust(r.Context(), r.PathValue("name"), lvl, api.ActorOf(r)), "trust set to "+body.Level)
	})))
}

func (a *automation) decided(w http.ResponseWriter, r *http.Request, err error, what string) {
	switch {
	case errors.Is(err, remedy.ErrNotFound):
		api.WriteError(w, http.StatusNotFound, "%v", err)
	case errors.Is(err, remedy.ErrBlocked):
		api.WriteError(w, http.StatusConflict, "%v", err)
	case err != nil:
		api.WriteError(w, http.StatusBadRequest, "%v", err)
	default:
		api.WriteJSON(w, http.StatusOK, map[string]string{"result": what})
	}
}

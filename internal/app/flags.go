package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/flags"
)

// EventFlag is a feature flag flipped by a runbook or an operator.
const EventFlag medic.EventKind = "flag.set"

func init() { register(45, "flags", buildFlags) }

// newFlags keeps the services' feature flags; every flip is audited.
func (m *Main) newFlags() *flags.Store {
	return flags.New(m.cfg, func(c flags.Change) {
		m.Record(context.Background(), medic.Event{Kind: EventFlag, Target: c.Service + "/" + c.Flag, Actor: c.Actor,
			Reason: fmt.Sprintf("flag %s/%s set to %v (was %v): %s", c.Service, c.Flag, c.To, c.From, c.Reason),
			Fields: map[string]string{"service": c.Service, "flag": c.Flag, "from": strconv.FormatBool(c.From), "to": strconv.FormatBool(c.To)}})
	})
}

// buildFlags serves the flags: GET /v1/flags (viewer) for every service,
// GET /v1/flags/SERVICE for one (what an application polls), and
// POST /v1/flags/SERVICE/NAME {"value": true, "reason": "…"} (operator).
func buildFlags(m *Main) (*component, error) {
	m.onReload(func(_ context.Context, cfg *config.Config) error { m.flags.Update(cfg); return nil })
	return &component{mount: func(mux *http.ServeMux, g api.Guards) {
		mux.Handle("GET /v1/flags", g.View(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			api.WriteJSON(w, http.StatusOK, map[string]any{"flags": m.flags.All()})
		})))
		mux.Handle("GET /v1/flags/{service}", g.View(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fs := m.flags.Service(r.PathValue("service"))
			if fs == nil {
				api.WriteError(w, http.StatusNotFound, "service %q declares no flags", r.PathValue("service"))
				return
			}
			api.WriteJSON(w, http.StatusOK, fs)
		})))
		mux.Handle("POST /v1/flags/{service}/{flag}", g.Operate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var body struct {
				Value  *bool  `json:"value"`
				Reason string `json:"reason"`
			}
			if err := api.DecodeBody(r, &body); err != nil || body.Value == nil {
				api.WriteError(w, http.StatusBadRequest, "body: want {\"value\": true|false, \"reason\": \"…\"}")
				return
			}
			if body.Reason == "" {
				body.Reason = "set through the API"
			}
			svc, flag := r.PathValue("service"), r.PathValue("flag")
			changed, err := m.flags.Set(svc, flag, *body.Value, api.ActorOf(r), body.Reason)
			if errors.Is(err, flags.ErrUnknown) {
				api.WriteError(w, http.StatusNotFound, "%v", err)
				return
			}
			api.WriteJSON(w, http.StatusOK, map[string]any{"service": svc, "flag": flag, "value": *body.Value, "changed": changed})
		})))
	}}, nil
}

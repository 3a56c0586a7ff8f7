package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/fleet"
)

func init() { register(35, "fleet", buildFleet) }

// buildFleet makes this agent a member of the configured fleet. It stops
// with order 35: after remediation (which will ask the fleet for its
// guardrails) and the databases, before the proxies and the supervisor, so
// that the others see this host suspect while its instances still serve.
func buildFleet(m *Main) (*component, error) {
	if m.cfg.Fleet == nil {
		return nil, nil
	}
	if m.cfg.Etcd == nil {
		return nil, errors.New("the fleet needs the etcd section")
	}
	f := *m.cfg.Fleet
	f.SetDefaults()
	host := m.cfg.Name
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("fleet host name: no name in the config and no host name: %w", err)
		}
		host = h
	}
	cli, err := dialEtcd(m, nil)
	if err != nil {
		return nil, fmt.Errorf("fleet %s: %w", f.Name, err)
	}
	a, err := fleet.New(fleet.Options{Fleet: f.Name, Host: host, Address: f.Address, Capacity: f.Capacity,
		Version: medic.Version, Prefix: m.cfg.Etcd.Prefix, LeaseTTL: f.LeaseTTL.D(), Grace: f.Grace.D(), Etcd: cli,
		Clock: m.Clock, Logger: m.Logger.With("component", "fleet"), Record: m.Record})
	if err != nil {
		cli.Close()
		return nil, err
	}
	return &component{
		serve: func(ctx context.Context) error {
			defer cli.Close()
			return a.Serve(ctx)
		},
		mount: func(mux *http.ServeMux, g api.Guards) {
			mux.Handle("GET /v1/fleet/hosts", g.View(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				api.WriteJSON(w, http.StatusOK, a.Status())
			})))
		},
	}, nil
}

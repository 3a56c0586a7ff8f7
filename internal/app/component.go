package app

import (
	"context"
	"net/http"
	"sort"

	"github.com/medic-dev/medic/internal/api"
)

// component is one part of the agent beyond the core loop: it may serve a
// loop (started and stopped by the run group) and mount API routes.
type component struct {
	name  string
	serve func(ctx context.Context) error        // runs until ctx ends; returns once stopped
	mount func(mux *http.ServeMux, g api.Guards) // API routes; mutations audited through Main.Record
	wrap  func(http.Handler) http.Handler        // wraps the whole API handler (the dashboard's session cookie)
}

// builder makes a component from the running Main (config, supervisor,
// traffic, audit, hub, metrics are set); it returns nil when the config does
// not use it. Files ext_*.go register one builder each with an order that
// is also the stop order: drill 10 (abort and restore first), remedy 20 (no
// new decisions), db 30, ui 40.
type builder struct {
	order int
	name  string
	build func(m *Main) (*component, error)
}

// builders is filled by the ext_*.go files' init functions.
var builders []builder

func register(order int, name string, build func(m *Main) (*component, error)) {
	builders = append(builders, builder{order: order, name: name, build: build})
	sort.SliceStable(builders, func(i, j int) bool { return builders[i].order < builders[j].order })
}

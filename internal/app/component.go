package app

import (
	"context"
	"net/http"

	"github.com/medic-dev/medic/internal/api"
)

// component is one part of the agent beyond the core loop: it may serve a
// loop (started and stopped by the run group) and mount API routes.
type component struct {
	name  string
	serve func(ctx context.Context) error        // runs until ctx ends; returns once stopped
	mount func(mux *http.ServeMux, g api.Guards) // API routes; mutations audited through Main.Record
}

// builder makes a component from the running Main (config, supervisor,
// traffic, audit, hub, metrics are set); it returns nil when the config does
// not use it. Files ext_*.go register one builder each, in this order:
// remedy, drill, db, ui.
type builder struct {
	name  string
	build func(m *Main) (*component, error)
}

// builders is filled by the ext_*.go files' init functions.
var builders []builder

func register(name string, build func(m *Main) (*component, error)) {
	builders = append(builders, builder{name: name, build: build})
}

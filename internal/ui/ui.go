// Package ui is medic's dashboard: one page served at / on the API listener,
// its assets embedded in the binary (no CDN: it works with no internet),
// kept live by the API's event stream. It also owns what the page needs
// beyond the core API: browser sessions (an API token exchanged for an
// HttpOnly cookie, CSRF-checked mutations), the metrics history behind the
// charts (sampled into the embedded store, downsampled on read) and the
// resilience scorecard.
//
// The page is a client of the API like the CLI: every action it offers goes
// through the existing routes and their role guards, so a viewer's session
// is refused there whatever the page shows.
package ui

import (
	"context"
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/auth"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/ui/scorecard"
)

//go:embed assets
var assets embed.FS

// Event kinds the dashboard records.
const (
	EventLogin  medic.EventKind = "ui.login"
	EventLogout medic.EventKind = "ui.logout"
)

// Options configure a UI. Only Clock may be left nil (wall clock); the
// optional sources say so.
type Options struct {
	// Tokens authenticate sign-ins; nil (no tokens file) makes the page
	// read-only for everyone and refuses sign-ins.
	Tokens *auth.Tokens
	// Live, if set, is the tokens file as reloaded, and replaces Tokens: a
	// token removed on reload no longer signs in, and its sessions end.
	Live   *auth.Live
	Clock  clock.Clock
	Logger *slog.Logger
	// Record audits sign-ins, sign-outs and refused requests.
	Record func(ctx context.Context, ev medic.Event)
	// SessionTTL is the absolute lifetime of a sign-in. Default DefaultSessionTTL.
	SessionTTL time.Duration
	// History stores the sampled series; nil: no history (GET /v1/history is 404, Serve only waits).
	History *History
	// Sample reads the figures the sampler stores every SampleEvery; nil: no sampling.
	Sample func() Snapshot
	// SampleEvery is the sampling period. Default 10s.
	SampleEvery time.Duration
	// Scorecard gathers the scorecard's inputs (running config, drill
	// records); nil: GET /v1/scorecard is 404.
	Scorecard func(ctx context.Context) (scorecard.Input, error)
}

// UI is the dashboard. Build it with New; Mount its routes on the API mux,
// wrap the whole API handler with Wrap, and run Serve for the sampler.
type UI struct {
	opts     Options
	clock    clock.Clock
	log      *slog.Logger
	sessions *sessions
	static   http.Handler

	sampleMu sync.Mutex // one sample at a time
	sampler  sampler

	mux atomic.Pointer[http.ServeMux] // the API's routes, to tell the page which panels exist
}

// New returns a dashboard with opts.
func New(opts Options) *UI {
	u := &UI{opts: opts, clock: clock.Or(opts.Clock), log: opts.Logger, sessions: newSessions(opts.SessionTTL)}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	if u.opts.Record == nil {
		u.opts.Record = func(context.Context, medic.Event) {}
	}
	if u.opts.SampleEvery <= 0 {
		u.opts.SampleEvery = 10 * time.Second
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	u.static = http.StripPrefix("/ui/assets/", http.FileServerFS(sub))
	return u
}

// Mount adds the dashboard's routes to the API mux: the page at /, its
// assets, sign-in and sign-out, and the read-only GET /v1/history and
// GET /v1/scorecard behind the viewer guard.
func (u *UI) Mount(mux *http.ServeMux, g api.Guards) {
	u.mux.Store(mux)
	mux.Handle("GET /{$}", http.HandlerFunc(u.page))
	mux.Handle("GET /ui/assets/", http.HandlerFunc(u.asset))
	mux.Handle("POST /ui/login", http.HandlerFunc(u.login))
	mux.Handle("POST /ui/logout", http.HandlerFunc(u.logout))
	mux.Handle("GET /ui/session", http.HandlerFunc(u.session))
	if u.opts.History != nil {
		mux.Handle("GET /v1/history", g.View(http.HandlerFunc(u.history)))
	}
	if u.opts.Scorecard != nil {
		mux.Handle("GET /v1/scorecard", g.View(http.HandlerFunc(u.scorecard)))
	}
}

// optionalEndpoints are the reads of other components the page shows when
// the agent serves them. The page asks GET /ui/session which exist, rather
// than probing them (a 404 is a console error in every browser). A path
// with {name} is a per-service route, listed as written when the mux
// routes it for a service.
var optionalEndpoints = []string{
	"/v1/approvals", "/v1/incidents", "/v1/runbooks", "/v1/conditions",
	"/v1/db/status", "/v1/drills", "/v1/history", "/v1/scorecard",
	"/v1/fleet/status", "/v1/fleet/scorecard",
	"/v1/services/{name}/releases", "/v1/canaries",
}

// endpoints returns the optional endpoints the API's mux routes for GET.
func (u *UI) endpoints() []string {
	mux := u.mux.Load()
	if mux == nil {
		return nil
	}
	var out []string
	for _, p := range optionalEndpoints {
		path := strings.ReplaceAll(p, "{name}", "x")
		if _, pattern := mux.Handler(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: path}}); pattern != "" {
			out = append(out, p)
		}
	}
	return out
}

// securityHeaders are sent with the page and its assets: no inline script or
// style, nothing from another origin, never framed.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

func (u *UI) page(w http.ResponseWriter, r *http.Request) {
	b, err := assets.ReadFile("assets/index.html")
	if err != nil {
		http.Error(w, "dashboard missing from this build", http.StatusInternalServerError)
		return
	}
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(b)
}

func (u *UI) asset(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	// Assets change only with the binary; revalidate so an upgrade shows at once.
	w.Header().Set("Cache-Control", "no-cache")
	u.static.ServeHTTP(w, r)
}

func (u *UI) scorecard(w http.ResponseWriter, r *http.Request) {
	in, err := u.opts.Scorecard(r.Context())
	if err != nil {
		api.WriteError(w, http.StatusInternalServerError, "gather scorecard inputs: %v", err)
		return
	}
	api.WriteJSON(w, http.StatusOK, scorecard.Evaluate(in, u.clock.Now()))
}

// tokens are the tokens in force.
func (u *UI) tokens() *auth.Tokens {
	if u.opts.Live != nil {
		return u.opts.Live.Tokens()
	}
	return u.opts.Tokens
}

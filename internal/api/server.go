// Package api is medic's HTTP API: status, the event stream, instance and
// service actions, the audit log, logs and /metrics. Reads need the viewer
// role, actions the operator role, reload the admin role; every denial and
// every action is recorded with its actor.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/adminsock"
	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/auth"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/egress"
	"github.com/medic-dev/medic/internal/events"
	"github.com/medic-dev/medic/internal/netguard"
	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/safetext"
	"github.com/medic-dev/medic/internal/supervise"
)

// Supervisor is what the API asks of the supervisor.
type Supervisor interface {
	Status() []supervise.ServiceStatus
	RestartInstance(ctx context.Context, id medic.InstanceID, actor, reason string) error
	StopInstance(ctx context.Context, id medic.InstanceID, actor, reason string) error
	StartInstance(ctx context.Context, id medic.InstanceID, actor, reason string) error
	RollingRestart(ctx context.Context, service, actor string, readyTimeout time.Duration) error
	Scale(ctx context.Context, service string, n int, actor string) error
	Rollback(ctx context.Context, service, actor string) error
}

// Traffic is the proxies' side: figures for status and drill faults.
type Traffic interface {
	Stats() []proxy.Stats
	SetFault(id medic.InstanceID, f proxy.Fault) error
}

// ActorOf names who made a request, for audit records: "api:<token name>".
func ActorOf(r *http.Request) string { return actorOf(r) }

// WriteJSON writes v as the JSON response with status code.
func WriteJSON(w http.ResponseWriter, code int, v any) { writeJSON(w, code, v) }

// WriteError writes {"error": message} with status code.
func WriteError(w http.ResponseWriter, code int, format string, args ...any) {
	writeError(w, code, format, args...)
}

// DecodeBody reads an optional JSON body strictly (unknown fields, wrong types
// and trailing data are errors naming the field; 64 KiB at most).
func DecodeBody(r *http.Request, v any) error { return decodeBody(r, v) }

// Server serves the API. Fields are set before Serve and not changed after.
type Server struct {
	Tokens *auth.Tokens // nil: reads open, mutations refused
	// LiveTokens, if set, replaces Tokens with the tokens file as reloaded:
	// a token removed on reload is refused from the next request on.
	LiveTokens *auth.Live
	Supervisor Supervisor
	// Releases, if set, serves deploys, the history and rollbacks to a kept release.
	Releases Releases
	Traffic  Traffic // may be nil: no proxies
	// Dependencies returns the dependency listeners' figures; nil when there are none.
	Dependencies func() []egress.Stats
	Hub          *events.Hub
	Audit        *audit.Log
	// AuditHealth reports whether the audit log stores records (nil: always
	// healthy). Status and /v1/audit/verify show it.
	AuditHealth func() audit.Health
	Record      func(ctx context.Context, ev medic.Event)
	Reload      func(ctx context.Context, actor string) error
	Metrics     prometheus.Gatherer
	LogDir      string
	Logger      *slog.Logger
	Clock       clock.Clock
	// Limits bound the listener (zero fields: config.DefaultAPILimits); FDs
	// is the process's descriptor reserve (nil: none).
	Limits config.Limits
	FDs    *netguard.FDs

	// Mounts add the routes of other components (remediation, drills, databases,
	// the dashboard). Each gets the mux and the role guards; its handlers must
	// audit their mutations through Record.
	Mounts []func(mux *http.ServeMux, g Guards)
	// Wrap, if set, wraps the whole handler Serve serves (the dashboard's
	// session cookie, turned into the request's auth.Identity before the guards).
	Wrap func(http.Handler) http.Handler

	// TrustPeer decides whether an admin socket's peer acts without a token
	// (nil: root and the agent's own user, adminsock.Trusted).
	TrustPeer func(adminsock.Peer) bool

	mu       sync.Mutex
	servers  []*http.Server // under mu: Shutdown may run on another goroutine than Serve
	stopOnce sync.Once
	stop     chan struct{}
	bg       sync.WaitGroup // flushDenials

	denyMu sync.Mutex
	denied denials
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Guards wrap a handler with the role it needs (and audit denials).
type Guards struct {
	View, Operate, Admin func(http.Handler) http.Handler
	// Act is Operate for an action that changes what runs (stops, starts or
	// replaces instances, injects a fault, moves a database primary): it is
	// refused with 503 while the audit log is degraded, as automation is
	// paused then. Undoing (abort a drill, clear a fault, pause automation)
	// stays under Operate.
	Act func(http.Handler) http.Handler
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	view := s.guard(auth.RoleViewer)
	op := s.guard(auth.RoleOperator)
	admin := s.guard(auth.RoleAdmin)
	act := func(h http.Handler) http.Handler { return op(s.audited(h)) }
	mux.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }))
	mux.Handle("GET /metrics", view(promhttp.HandlerFor(s.Metrics, promhttp.HandlerOpts{})))
	mux.Handle("GET /v1/status", view(http.HandlerFunc(s.status)))
	mux.Handle("GET /v1/events", view(http.HandlerFunc(s.events)))
	mux.Handle("GET /v1/audit", view(http.HandlerFunc(s.auditList)))
	mux.Handle("GET /v1/audit/verify", view(http.HandlerFunc(s.auditVerify)))
	mux.Handle("GET /v1/logs/{service}/{index}", view(http.HandlerFunc(s.logs)))
	mux.Handle("POST /v1/services/{name}/restart", act(http.HandlerFunc(s.restartService)))
	mux.Handle("POST /v1/services/{name}/scale", act(http.HandlerFunc(s.scaleService)))
	mux.Handle("POST /v1/services/{name}/rollback", act(http.HandlerFunc(s.rollbackService)))
	if s.Releases != nil {
		mux.Handle("POST /v1/services/{name}/deploy", act(http.HandlerFunc(s.deployService)))
		mux.Handle("GET /v1/services/{name}/releases", view(http.HandlerFunc(s.listReleases)))
	}
	mux.Handle("POST /v1/instances/{service}/{index}/{action}", act(http.HandlerFunc(s.instanceAction)))
	mux.Handle("PUT /v1/instances/{service}/{index}/fault", act(http.HandlerFunc(s.setFault)))
	mux.Handle("DELETE /v1/instances/{service}/{index}/fault", op(http.HandlerFunc(s.setFault))) // clearing a fault only undoes
	mux.Handle("POST /v1/reload", admin(s.audited(http.HandlerFunc(s.reload))))
	for _, m := range s.Mounts {
		m(mux, Guards{View: view, Operate: op, Admin: admin, Act: act})
	}
	return mux
}

// ReasonAuditDegraded starts the refusal of an operator action while the
// audit log cannot store records.
const ReasonAuditDegraded = "audit degraded"

// audited refuses the action next with 503 while the audit log is degraded:
// an operator's action, like a runbook's, never runs without its durable
// record (docs/security.md, "Audit log").
func (s *Server) audited(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.AuditHealth != nil {
			if h := s.AuditHealth(); h.Degraded {
				// Not recorded: a held record would push the supervisor's
				// own records out of the bounded hold buffer.
				s.logger().Warn("operator action refused: audit degraded", "request", r.Method+" "+safetext.Line(r.URL.Path), "actor", actorOf(r))
				w.Header().Set("Retry-After", "5")
				writeError(w, http.StatusServiceUnavailable, "%s: %s: medic refuses operator actions until appends work again (no action without its record); "+
					"status shows when the log is healthy", ReasonAuditDegraded, h.Reason)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// hostCheck refuses, in token-less mode, a request whose Host header names
// neither this machine (localhost, a loopback address) nor the listen
// address: a web page on another name that resolves to 127.0.0.1 (DNS
// rebinding) must not read status, logs or the audit log.
func (s *Server) hostCheck(next http.Handler, listen net.Addr) http.Handler {
	listenHost, _, _ := net.SplitHostPort(listen.String())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.tokens() != nil || allowedHost(r.Host, listenHost) {
			next.ServeHTTP(w, r)
			return
		}
		writeError(w, http.StatusMisdirectedRequest, "Host %q is not this agent: without a tokens file medic answers only requests for localhost or %s", safetext.Line(r.Host), listenHost)
	})
}

func allowedHost(hostport, listenHost string) bool {
	h := hostport
	if sh, _, err := net.SplitHostPort(hostport); err == nil {
		h = sh
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") || h == listenHost {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && (ip.IsLoopback() || listenHost != "" && ip.Equal(net.ParseIP(listenHost)))
}

// tokens are the tokens in force.
func (s *Server) tokens() *auth.Tokens {
	if s.LiveTokens != nil {
		return s.LiveTokens.Tokens()
	}
	return s.Tokens
}

func (s *Server) guard(need auth.Role) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Built per request: the tokens in force change on reload.
			auth.Middleware(s.tokens(), need, s.auditDenied)(next).ServeHTTP(w, r)
		})
	}
}

// auditDenied audits a refused request (aggregated per source and reason).
func (s *Server) auditDenied(r *http.Request, status int, reason string) {
	why := fmt.Sprintf("%d: %s", status, reason)
	s.denyMu.Lock()
	first, ended := s.denied.observe(s.now(), clientOf(r), why)
	s.denyMu.Unlock()
	for _, ev := range ended {
		s.Record(r.Context(), ev)
	}
	if first {
		s.Record(r.Context(), medic.Event{Kind: medic.EventAPIDenied, Target: r.Method + " " + r.URL.Path,
			Actor: "api:" + clientOf(r), Reason: why,
			Fields: map[string]string{"note": "further denials from this source for this reason are counted and recorded once per " + DenialWindow.String()}})
	}
}

func (s *Server) now() time.Time {
	if s.Clock == nil {
		return time.Now()
	}
	return s.Clock.Now()
}

// flushDenials records the aggregated refusals whose window ended, every
// DenialWindow/4 until stop closes, and once more then.
func (s *Server) flushDenials(stop <-chan struct{}) {
	t := clock.Or(s.Clock).NewTimer(DenialWindow / 4)
	defer t.Stop()
	for {
		var ended []medic.Event
		select {
		case <-t.C():
			t.Reset(DenialWindow / 4)
			s.denyMu.Lock()
			ended = s.denied.due(s.now())
			s.denyMu.Unlock()
		case <-stop:
			s.denyMu.Lock()
			ended = s.denied.due(s.now().Add(DenialWindow))
			s.denyMu.Unlock()
			for _, ev := range ended {
				s.Record(context.Background(), ev)
			}
			return
		}
		for _, ev := range ended {
			s.Record(context.Background(), ev)
		}
	}
}

func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// init makes what Serve and ServeUnix share; once.
func (s *Server) init() {
	s.stopOnce.Do(func() {
		s.stop = make(chan struct{})
		s.bg.Add(1)
		go func() { defer s.bg.Done(); s.flushDenials(s.stop) }()
	})
}

// start registers hs for Shutdown; false when Shutdown already ran.
func (s *Server) start(hs *http.Server) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stop:
		return false
	default:
	}
	s.servers = append(s.servers, hs)
	return true
}

// Serve serves on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	h := s.Handler()
	if s.Wrap != nil {
		h = s.Wrap(h)
	}
	h = s.hostCheck(h, ln.Addr())
	lim := s.Limits
	lim.SetDefaults(config.DefaultAPILimits)
	gl := netguard.Wrap(ln, netguard.Options{Name: "api",
		Limits: netguard.Limits{MaxConns: lim.MaxConnections, MaxPerSource: lim.MaxPerSource},
		FDs:    s.FDs, Priority: true, Refusal: netguard.HTTP503, ClientSpeaksFirst: true, Logger: s.Logger, Clock: s.Clock,
		DeadlineJitter: lim.DeadlineJitter()}) // header and idle timeouts ±10 % per connection, at most
	// No ReadTimeout: net/http cancels a request's context when it fires,
	// which would end event streams; bodies are read with a size cap.
	hs := &http.Server{Handler: h, ReadHeaderTimeout: lim.HeaderTimeout.D(), IdleTimeout: lim.IdleTimeout.D(),
		ConnState: gl.ConnState, ErrorLog: slog.NewLogLogger(s.logger().Handler(), slog.LevelWarn)}
	if !s.start(hs) {
		return nil
	}
	err := hs.Serve(gl)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve API: %w", err)
}

// AdminSocketLimits bound the admin socket: its own caps, apart from the TCP
// listener's, so that a flood of the API port never queues the operator.
var AdminSocketLimits = config.Limits{MaxConnections: 64, HeaderTimeout: config.Duration(5 * time.Second), IdleTimeout: config.Duration(30 * time.Second)}

// ServeUnix serves the API on the admin socket ln (internal/adminsock) until
// Shutdown. A peer that TrustPeer admits (root and the agent's user) acts
// with the admin role, named "unix:<user>" in the audit log, without a
// token; any other peer the socket's mode lets in is judged by its token as
// on the TCP listener. There is no Host check: no browser reaches a unix socket.
func (s *Server) ServeUnix(ln net.Listener) error {
	s.init()
	h := s.Handler()
	if s.Wrap != nil {
		h = s.Wrap(h)
	}
	trust := s.TrustPeer
	if trust == nil {
		uid := uint32(os.Getuid())
		trust = func(p adminsock.Peer) bool { return adminsock.Trusted(p, uid) }
	}
	inner := h
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := adminsock.PeerFrom(r.Context())
		if !ok {
			writeError(w, http.StatusForbidden, "admin socket: the peer's credentials could not be read")
			return
		}
		r2 := r.Clone(r.Context())
		r2.RemoteAddr = p.Name() // names the client in denials
		if trust(p) {
			r2 = r2.WithContext(auth.WithPeerIdentity(r2.Context(), auth.Identity{Name: p.Name(), Role: auth.RoleAdmin}))
		}
		inner.ServeHTTP(w, r2)
	})
	lim := AdminSocketLimits
	gl := netguard.Wrap(ln, netguard.Options{Name: "admin socket", Limits: netguard.Limits{MaxConns: lim.MaxConnections},
		FDs: s.FDs, Priority: true, Refusal: netguard.HTTP503, Logger: s.Logger, Clock: s.Clock})
	hs := &http.Server{Handler: h, ReadHeaderTimeout: lim.HeaderTimeout.D(), IdleTimeout: lim.IdleTimeout.D(),
		ConnState: gl.ConnState, ConnContext: adminsock.ConnContext, ErrorLog: slog.NewLogLogger(s.logger().Handler(), slog.LevelWarn)}
	if !s.start(hs) {
		return nil
	}
	err := hs.Serve(gl)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve the admin socket: %w", err)
}

// Shutdown stops accepting, ends event streams and waits for in-flight requests within ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init() // a Shutdown before Serve: later Serve calls return at once
	s.mu.Lock()
	select {
	case <-s.stop:
		s.mu.Unlock()
		return nil
	default:
	}
	close(s.stop)
	servers := s.servers
	s.mu.Unlock()
	var err error
	for _, hs := range servers {
		err = errors.Join(err, hs.Shutdown(ctx))
	}
	s.bg.Wait()
	return err
}

// StatusDoc is the body of GET /v1/status.
type StatusDoc struct {
	Version  string                    `json:"version"`
	Time     time.Time                 `json:"time"`
	Services []supervise.ServiceStatus `json:"services"`
	Proxies  []proxy.Stats             `json:"proxies,omitempty"`
	// Dependencies are the outbound dependency listeners: breaker state, calls by outcome, latency.
	Dependencies []egress.Stats `json:"dependencies,omitempty"`
	// Audit is the audit log's health: degraded (appends fail, remediation
	// paused) with the reason, records held and lost.
	Audit audit.Health `json:"audit"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	doc := StatusDoc{Version: medic.Version, Time: s.Clock.Now(), Services: s.Supervisor.Status()}
	if s.Traffic != nil {
		doc.Proxies = s.Traffic.Stats()
	}
	if s.Dependencies != nil {
		doc.Dependencies = s.Dependencies()
	}
	if s.AuditHealth != nil {
		doc.Audit = s.AuditHealth()
	}
	writeJSON(w, http.StatusOK, doc)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}

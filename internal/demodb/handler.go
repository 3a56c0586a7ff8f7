package demodb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Store is what the handler needs from the database.
type Store interface {
	// Write commits row id in one transaction and returns nil only once the
	// commit is acknowledged. Writing an existing id succeeds.
	Write(ctx context.Context, id int64) error
	// Ready returns nil when a writable primary answers, ErrReadOnly when
	// the server reached is in recovery or read-only, another error when
	// none is reached.
	Ready(ctx context.Context) error
}

// ErrReadOnly reports a server that cannot take writes (a replica, or a
// demoted primary).
var ErrReadOnly = errors.New("demodb: server is read-only")

// Handler serves the endpoints of the package doc over a Store. Create it
// with New.
type Handler struct {
	store        Store
	writeTimeout time.Duration
	readyTimeout time.Duration
	log          *slog.Logger
	mux          *http.ServeMux

	mu    sync.Mutex
	ready *bool // last readiness answer, to log changes only; nil before the first
}

var _ http.Handler = (*Handler)(nil)

// New returns the handler of s, with o's timeouts and logger (o.Listen and
// o.DSN are not used).
func New(s Store, o Options) *Handler {
	h := &Handler{store: s, writeTimeout: o.WriteTimeout, readyTimeout: o.ReadyTimeout, log: o.Logger}
	if h.writeTimeout <= 0 {
		h.writeTimeout = DefaultWriteTimeout
	}
	if h.readyTimeout <= 0 {
		h.readyTimeout = DefaultReadyTimeout
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.mux = http.NewServeMux()
	h.mux.HandleFunc("/write", h.write)
	h.mux.HandleFunc("/healthz/live", h.live)
	h.mux.HandleFunc("/healthz/ready", h.readyz)
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) write(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	raw := r.URL.Query().Get("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		http.Error(w, fmt.Sprintf("id: want an integer, got %q", raw), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.writeTimeout)
	defer cancel()
	if err := h.store.Write(ctx, id); err != nil {
		http.Error(w, fmt.Sprintf("write %d: %v", id, err), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "committed %d\n", id)
}

func (h *Handler) live(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	// Liveness never touches the database: a database outage must not get
	// a healthy process restarted (readiness takes it out of rotation).
	w.Write([]byte("ok\n"))
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.readyTimeout)
	defer cancel()
	err := h.store.Ready(ctx)
	h.logChange(err)
	if err != nil {
		http.Error(w, fmt.Sprintf("not ready: %v", err), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}

// logChange logs readiness edges only: probes ask every few hundred ms.
func (h *Handler) logChange(err error) {
	ok := err == nil
	h.mu.Lock()
	changed := h.ready == nil || *h.ready != ok
	h.ready = &ok
	h.mu.Unlock()
	switch {
	case !changed:
	case ok:
		h.log.Info("demodb ready: a writable primary answers")
	default:
		h.log.Warn("demodb not ready", "err", err)
	}
}

// allow answers 405 unless r's method is one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, fmt.Sprintf("method %s not allowed", r.Method), http.StatusMethodNotAllowed)
	return false
}

package demoapp

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// Identity is the body of GET /: which instance and process answered.
// Benchmarks and drills compare PID across a restart.
type Identity struct {
	Instance string `json:"instance"`
	PID      int    `json:"pid"`
	// Error is set only on an injected 500.
	Error string `json:"error,omitempty"`
}

// Bounds of the fault parameters: wide enough for any drill, narrow enough that
// a typo cannot wedge the service for a day or exhaust the host in a second.
const (
	maxSlowMS   = 600_000
	maxLeakRate = 1024 // MiB/s
	crashDelay  = 10 * time.Millisecond
)

func (a *App) routes() *http.ServeMux {
	// Method patterns give 405 with an Allow header for wrong methods.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.root)
	mux.HandleFunc("GET /healthz/live", a.live)
	mux.HandleFunc("GET /metrics", a.metrics)
	mux.HandleFunc("GET /healthz/ready", a.ready)
	mux.HandleFunc("GET /fault", a.state)
	mux.HandleFunc("POST /fault/crash", a.crash)
	mux.HandleFunc("POST /fault/hang", a.hang)
	mux.HandleFunc("POST /fault/unready", a.unready)
	mux.HandleFunc("POST /fault/leak", a.leak)
	mux.HandleFunc("POST /fault/slow", a.slow)
	mux.HandleFunc("POST /fault/error", a.errorRate)
	mux.HandleFunc("POST /fault/reset", a.reset)
	mux.HandleFunc("GET /dep/{name}", a.dependency)
	return mux
}

func (a *App) root(w http.ResponseWriter, r *http.Request) {
	s := a.faults.state()
	if a.latency > 0 {
		d := a.latency
		if a.latencySpread > 0 {
			d = time.Duration(float64(d) * math.Exp(a.latencySpread*rand.NormFloat64()))
		}
		if !a.sleep(r.Context(), d) {
			http.Error(w, "request ended during its latency", http.StatusServiceUnavailable)
			return
		}
	}
	if s.SlowMS > 0 && !a.sleep(r.Context(), time.Duration(s.SlowMS)*time.Millisecond) {
		http.Error(w, "request ended during injected delay", http.StatusServiceUnavailable)
		return
	}
	id := Identity{Instance: a.id, PID: a.pid}
	if a.ownErrorRate > 0 && rand.Float64() < a.ownErrorRate || s.ErrorRate > 0 && rand.Float64() < s.ErrorRate {
		id.Error = "injected error"
		writeJSON(w, http.StatusInternalServerError, id)
		return
	}
	if a.eventRate > 0 && rand.Float64() < a.eventRate {
		a.events.Add(1)
	}
	writeJSON(w, http.StatusOK, id)
}

// metrics serves the instance's own counter in the Prometheus text format.
func (a *App) metrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintf(w, "# HELP demo_backend_errors_total GET / requests that met a (simulated) backend error and still answered 200.\n"+
		"# TYPE demo_backend_errors_total counter\ndemo_backend_errors_total %d\n", a.events.Load())
}

func (a *App) live(w http.ResponseWriter, r *http.Request) {
	writeText(w, http.StatusOK, "ok")
}

func (a *App) ready(w http.ResponseWriter, r *http.Request) {
	if a.faults.state().Unready {
		writeText(w, http.StatusServiceUnavailable, "not ready")
		return
	}
	writeText(w, http.StatusOK, "ready")
}

func (a *App) state(w http.ResponseWriter, r *http.Request) {
	if _, ok := params(w, r); ok {
		writeJSON(w, http.StatusOK, a.faults.state())
	}
}

// crash answers 202, flushes the response onto the wire, then exits with
// CrashExitCode: no deferred cleanup runs, as in a real crash.
func (a *App) crash(w http.ResponseWriter, r *http.Request) {
	if _, ok := params(w, r); !ok {
		return
	}
	body := "crashing\n"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprint(w, body)
	if err := http.NewResponseController(w).Flush(); err != nil {
		a.log.Warn("demoapp: flush before crash failed", "err", err)
	}
	a.log.Warn("demoapp: fault crash: exiting", "code", CrashExitCode, "pid", a.pid)
	// A short pause lets the kernel send the flushed bytes before the socket dies with us.
	a.sleep(r.Context(), crashDelay)
	a.exit(CrashExitCode)
}

func (a *App) hang(w http.ResponseWriter, r *http.Request) {
	if _, ok := params(w, r); !ok {
		return
	}
	a.log.Warn("demoapp: fault hang: every request blocks from now on; only a restart clears it", "pid", a.pid)
	a.faults.hung.Store(true)
	writeText(w, http.StatusAccepted, "hung")
}

func (a *App) unready(w http.ResponseWriter, r *http.Request) {
	if _, ok := params(w, r); !ok {
		return
	}
	a.log.Info("demoapp: fault unready")
	writeJSON(w, http.StatusOK, a.faults.update(func(f *faults) { f.unready = true }))
}

func (a *App) leak(w http.ResponseWriter, r *http.Request) {
	q, ok := params(w, r, "mb_per_s")
	if !ok {
		return
	}
	rate, err := floatParam(q, "mb_per_s", 10, 0, maxLeakRate)
	if err == nil && rate == 0 {
		err = fmt.Errorf("parameter mb_per_s: must be above 0 (POST /fault/reset stops the leak)")
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.log.Info("demoapp: fault leak", "mb_per_s", rate, "limit_bytes", a.leakLimit)
	writeJSON(w, http.StatusOK, a.faults.startLeak(rate))
}

func (a *App) slow(w http.ResponseWriter, r *http.Request) {
	q, ok := params(w, r, "ms")
	if !ok {
		return
	}
	ms, err := floatParam(q, "ms", -1, 0, maxSlowMS)
	if err == nil && ms != math.Trunc(ms) {
		err = fmt.Errorf("parameter ms: %q is not a whole number of milliseconds", q.Get("ms"))
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.log.Info("demoapp: fault slow", "ms", int(ms))
	writeJSON(w, http.StatusOK, a.faults.update(func(f *faults) { f.slowMS = int(ms) }))
}

func (a *App) errorRate(w http.ResponseWriter, r *http.Request) {
	q, ok := params(w, r, "rate")
	if !ok {
		return
	}
	rate, err := floatParam(q, "rate", -1, 0, 1)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.log.Info("demoapp: fault error", "rate", rate)
	writeJSON(w, http.StatusOK, a.faults.update(func(f *faults) { f.errorRate = rate }))
}

func (a *App) reset(w http.ResponseWriter, r *http.Request) {
	if _, ok := params(w, r); !ok {
		return
	}
	a.log.Info("demoapp: fault reset")
	writeJSON(w, http.StatusOK, a.faults.reset())
}

// params parses the query and answers 400 for a malformed query or a parameter
// not in allowed: a typo such as ?msec=5 must not pass silently as "no delay".
func params(w http.ResponseWriter, r *http.Request, allowed ...string) (url.Values, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		http.Error(w, fmt.Sprintf("malformed query: %v", err), http.StatusBadRequest)
		return nil, false
	}
	for name := range q {
		if !slices.Contains(allowed, name) {
			msg := fmt.Sprintf("unknown parameter %q", name)
			if len(allowed) > 0 {
				msg += fmt.Sprintf(" (allowed: %v)", allowed)
			}
			http.Error(w, msg, http.StatusBadRequest)
			return nil, false
		}
	}
	return q, true
}

// floatParam reads one number in [lo, hi]. A negative def means required.
func floatParam(q url.Values, name string, def, lo, hi float64) (float64, error) {
	vs, ok := q[name]
	if !ok {
		if def < 0 {
			return 0, fmt.Errorf("parameter %s: missing", name)
		}
		return def, nil
	}
	if len(vs) != 1 {
		return 0, fmt.Errorf("parameter %s: given %d times", name, len(vs))
	}
	v, err := strconv.ParseFloat(vs[0], 64)
	if err != nil || math.IsNaN(v) {
		return 0, fmt.Errorf("parameter %s: %q is not a number", name, vs[0])
	}
	if v < lo || v > hi {
		return 0, fmt.Errorf("parameter %s: %v is outside [%v, %v]", name, v, lo, hi)
	}
	return v, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only plain structs are written: unreachable
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeText(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	w.Write([]byte(s + "\n"))
}

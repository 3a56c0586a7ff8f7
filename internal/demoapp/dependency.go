package demoapp

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Bounds of the dependency client, the shape of a typical application's:
const (
	// depPoolSize: connections to one dependency at once, like a 20-connection client pool. 20.
	depPoolSize = 20
	// depBodyLimit: bytes of the dependency's answer relayed. 64 KiB.
	depBodyLimit = 64 << 10
)

// WorkersEnv, when set to N > 0, makes the app serve at most N requests at
// once, every endpoint included, like a thread-pool server (gunicorn's
// threads, a servlet pool): a dependency that hangs then freezes the whole
// app unless its calls are bounded. Unset, requests are not limited.
const WorkersEnv = "DEMOAPP_WORKERS"

// dependency answers GET /dep/{name}: one call to the dependency at
// DEP_<NAME>_URL (the listener medic injects, or any URL), with no timeout
// of its own, as a naive application makes it; it relays the status, the
// X-Medic-* headers and the body.
func (a *App) dependency(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	key := "DEP_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_URL"
	base := a.getenv(key)
	if base == "" {
		writeText(w, http.StatusNotFound, "no dependency "+name+": "+key+" is not set")
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, strings.TrimSuffix(base, "/")+"/", nil)
	if err != nil {
		writeText(w, http.StatusInternalServerError, err.Error())
		return
	}
	start := time.Now()
	resp, err := a.depClient.Do(req)
	if err != nil {
		writeText(w, http.StatusBadGateway, "dependency "+name+": "+err.Error())
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		if strings.HasPrefix(k, "X-Medic-") {
			w.Header()[k] = v
		}
	}
	w.Header().Set("X-Dependency-Seconds", strconv.FormatFloat(time.Since(start).Seconds(), 'f', 6, 64))
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, depBodyLimit))
}

// newDepClient is a client with a bounded pool and no timeout: what an
// application does when nobody told it to set one.
func newDepClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxConnsPerHost: depPoolSize, MaxIdleConnsPerHost: depPoolSize}}
}

// workers limits the requests served at once (see WorkersEnv); nil: no limit.
func workers(getenv func(string) string) chan struct{} {
	n, err := strconv.Atoi(getenv(WorkersEnv))
	if err != nil || n <= 0 {
		return nil
	}
	return make(chan struct{}, n)
}

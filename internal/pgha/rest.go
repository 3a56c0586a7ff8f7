package pgha

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// RESTHandler serves Patroni's health endpoints for load balancers, so that
// an existing HAProxy configuration (option httpchk OPTIONS /primary,
// http-check expect status 200) keeps working. Every endpoint answers GET,
// HEAD and OPTIONS with 200 or 503 and a JSON body describing the member:
//
//	/primary /master /leader /read-write   the running primary holding the lease
//	/replica[?lag=N]                       a running replica (at most N behind: bytes, or 16MB, 1GB …)
//	/read-only                             a running primary or replica
//	/sync /synchronous, /async             the synchronous standby, another replica
//	/health                                postgres is up, whatever its role
//	/liveness                              the member's loop ran within the lease TTL (2 × TTL on replicas)
//	/readiness                             the leader, or a replica that is up and streaming
//	/ /patroni                             status only (200)
func (a *Agent) RESTHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		a.mu.Lock()
		l, v, leading, loopAt, sync := a.local, a.view, a.election != nil, a.loopAt, a.view.Sync
		a.mu.Unlock()
		now := a.clock.Now()
		primary := l.Running && l.Ready && !l.InRecovery && leading
		replica := l.Running && l.Ready && l.InRecovery
		lagBytes := uint64(0)
		if v.Optime > l.LSN && replica {
			lagBytes = v.Optime - l.LSN
		}
		var ok bool
		switch strings.TrimSuffix(r.URL.Path, "/") {
		case "", "/patroni":
			ok = true
		case "/primary", "/master", "/leader", "/read-write":
			ok = primary
		case "/replica":
			ok = replica
			if q := r.URL.Query().Get("lag"); q != "" && ok {
				max, err := parseLag(q)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				ok = lagBytes <= max
			}
		case "/read-only":
			ok = primary || replica
		case "/sync", "/synchronous":
			ok = replica && sync.Standby == a.o.Member
		case "/async":
			ok = replica && sync.Standby != a.o.Member
		case "/health":
			ok = l.Running && l.Ready
		case "/liveness":
			limit := 2 * a.pol.TTL
			if leading {
				limit = a.pol.TTL
			}
			ok = !loopAt.IsZero() && now.Sub(loopAt) <= limit
		case "/readiness":
			ok = primary || (replica && l.Streaming)
		default:
			http.NotFound(w, r)
			return
		}
		code := http.StatusOK
		if !ok {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if r.Method == http.MethodGet {
			json.NewEncoder(w).Encode(a.patroniDoc(l, leading, lagBytes))
		}
	})
}

// patroniDoc is the subset of Patroni's status document tools read.
func (a *Agent) patroniDoc(l Local, leading bool, lag uint64) map[string]any {
	role, state := "replica", "running"
	switch {
	case !l.Running:
		state = "stopped"
	case !l.Ready:
		state = "starting"
	case !l.InRecovery:
		role = "master"
		if !leading {
			role = "demoted"
		}
	}
	xlog := map[string]any{"location": l.LSN}
	if l.InRecovery {
		xlog = map[string]any{"received_location": l.LSN, "replayed_location": l.ReplayLSN, "lag": lag}
	}
	return map[string]any{
		"state": state, "role": role, "timeline": l.Timeline, "xlog": xlog,
		"patroni": map[string]string{"scope": a.o.Cluster, "name": a.o.Member, "version": "medic"},
	}
}

// parseLag reads ?lag= as bytes, or with a unit (B, kB, MB, GB, TB; KiB … also).
func parseLag(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') {
		i--
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("lag %q: want bytes or a size such as 16MB", s)
	}
	mult := map[string]uint64{"": 1, "b": 1, "kb": 1 << 10, "kib": 1 << 10, "mb": 1 << 20, "mib": 1 << 20,
		"gb": 1 << 30, "gib": 1 << 30, "tb": 1 << 40, "tib": 1 << 40}[strings.ToLower(s[i:])]
	if mult == 0 {
		return 0, fmt.Errorf("lag %q: unknown unit %q", s, s[i:])
	}
	return n * mult, nil
}

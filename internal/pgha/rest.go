package pgha

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// RESTHandler serves Patroni's health endpoints for load balancers, as
// Patroni documents them, so that Patroni's shipped HAProxy sample
// (option httpchk OPTIONS /master, http-check expect status 200) works
// unchanged. Every endpoint answers GET, HEAD and OPTIONS with 200 or 503
// and a JSON body describing the member:
//
//	/ /primary /master /read-write   the running primary holding the lease
//	/leader                          the member holds the lease (whatever postgres does)
//	/standby-leader                  never: medic has no standby clusters (503)
//	/replica[?lag=N]                 a running replica that streams from the primary (at most N behind)
//	/read-only[?lag=N]               a running primary or such a replica
//	/sync /synchronous               the synchronous standby
//	/async /asynchronous[?lag=N]     another streaming replica
//	/health                          postgres is up, whatever its role
//	/liveness                        the member's loop ran within the lease TTL (2 × TTL on replicas)
//	/readiness[?lag=N]               the leader, or a replica that is up and streaming
//	/patroni                         status only (200)
//	/metrics                         the agent's Prometheus metrics (GET), when Options.MetricsHandler is set
//	POST /failsafe                   a leader in failsafe asks this member to confirm it (HMAC-signed, failsafe.go)
//	POST /failsafe/release           a member the failsafe key does not list asks whether this one is done with its leader (HMAC-signed)
//
// lag is bytes or a size (16MB, 1GB …); ?replication_state=streaming on
// the replica endpoints asks for a streaming WAL receiver (always the case
// here). A replica that does not stream from the primary on its timeline
// within the stream bound is not a replica for these endpoints: it may
// hold data the primary lacks, or lack data it has.
func (a *Agent) RESTHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" && a.o.MetricsHandler != nil && r.Method == http.MethodGet {
			a.o.MetricsHandler.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == "/failsafe" && r.Method == http.MethodPost {
			a.serveFailsafe(w, r)
			return
		}
		if r.URL.Path == "/failsafe/release" && r.Method == http.MethodPost {
			a.serveRelease(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		a.mu.Lock()
		l, v, leading, loopAt, sync, problem := a.local, a.view, a.election != nil, a.loopAt, a.view.Sync, a.member.Problem()
		a.mu.Unlock()
		now := a.clock.Now()
		primary := l.Running && l.Ready && !l.InRecovery && leading
		replica := l.Running && l.Ready && l.InRecovery && l.Streaming && problem == ""
		lagBytes := uint64(0)
		if v.Optime > l.LSN && l.InRecovery {
			lagBytes = v.Optime - l.LSN
		}
		lagOK := true
		if q := r.URL.Query().Get("lag"); q != "" {
			max, err := parseLag(q)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			lagOK = lagBytes <= max
		}
		var ok bool
		switch strings.TrimSuffix(r.URL.Path, "/") {
		case "", "/primary", "/master", "/read-write":
			ok = primary
		case "/leader":
			ok = leading
		case "/standby-leader":
			ok = false
		case "/patroni":
			ok = true
		case "/replica":
			ok = replica && lagOK
		case "/read-only":
			ok = primary || (replica && lagOK)
		case "/sync", "/synchronous":
			ok = replica && sync.Standby == a.o.Member && a.pol.Sync
		case "/async", "/asynchronous":
			ok = replica && lagOK && (sync.Standby != a.o.Member || !a.pol.Sync)
		case "/health":
			ok = l.Running && l.Ready
		case "/liveness":
			limit := 2 * a.pol.TTL
			if leading {
				limit = a.pol.TTL
			}
			ok = !loopAt.IsZero() && now.Sub(loopAt) <= limit
		case "/readiness":
			ok = primary || (replica && lagOK)
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
			doc := a.patroniDoc(l, leading, lagBytes)
			if problem != "" {
				doc["problem"] = problem
			}
			json.NewEncoder(w).Encode(doc)
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

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/auth"
	"github.com/medic-dev/medic/internal/drill"
	drillreport "github.com/medic-dev/medic/internal/drill/report"
)

// demoDrillScenarios is the demo's short suite: one drill per kind of
// reaction (restart, liveness, readiness, the proxy's passive health).
var demoDrillScenarios = []string{"kill", "hang", "unready", "reset"}

// demoDrillToken writes dir/tokens.yaml holding one operator token for the
// demo's own drills, and returns the token. The demo config names the file
// (api.tokens_file), since the API refuses mutations without tokens.
func demoDrillToken(dir string) (string, error) {
	tok, err := auth.AddToken(filepath.Join(dir, "tokens.yaml"), "demo", auth.RoleOperator)
	if err != nil {
		return "", fmt.Errorf("demo: make a token for the drills: %w", err)
	}
	return tok, nil
}

// demoDrills runs the drill suite against the demo's agent at addr (each
// drill under open-loop load through service's proxy), prints a line per
// drill and then the table, and fails when a drill failed.
func demoDrills(ctx context.Context, addr, token, service string) error {
	cl := &client{base: "http://" + addr, token: token, http: &http.Client{}}
	fmt.Printf("\n== drills: inject each fault under 50 requests/s through the proxy, measure from medic's own events\n")
	var results []drill.Result
	for _, sc := range demoDrillScenarios {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A drill passes once its instance is back; the others may still be
		// getting back (a loaded machine's probes): the next drill starts at
		// full capacity, as the disruption budget would demand anyway.
		if err := waitFullCapacity(ctx, cl, service, 60*time.Second); err != nil {
			return fmt.Errorf("demo drill %s: %w", sc, err)
		}
		body, _ := json.Marshal(drill.Request{Scenario: sc, Service: service, LoadRPS: 50})
		var res drill.Result
		if err := cl.postJSON("/v1/drills", string(body), 30*time.Second, &res); err != nil {
			return fmt.Errorf("demo drill %s: %w", sc, err)
		}
		res, err := waitDrill(ctx, cl, res.ID, true)
		if err != nil {
			return fmt.Errorf("demo drill %s: %w", sc, err)
		}
		fmt.Printf("  %-8s %s\n", sc, trim(res.Summary, 110))
		results = append(results, res)
	}
	fmt.Println("\n== drill table")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tFAILURE MODE\tINSTANCE\tDETECTED\tRECOVERED\tFULL CAPACITY\tCLIENT ERRORS\tP99 DURING\tRESULT")
	failed := 0
	for _, r := range results {
		if !r.Passed {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d of %d\t%.1fms\t%s\n", r.Scenario, r.FailureMode, targetOf(r),
			drillreport.Secs(r.TTD), drillreport.Secs(r.TTR), drillreport.Secs(r.FullCapacity), r.ClientErrors, r.Requests,
			r.Latency.During.P99*1000, strings.ToUpper(r.State))
	}
	tw.Flush()
	fmt.Printf("  reports: %s/v1/drills/ID/report.html while the demo runs (--keep)\n", cl.web)
	if failed > 0 {
		return fmt.Errorf("demo: %d of %d drills failed", failed, len(results))
	}
	return nil
}

// waitFullCapacity waits until every desired instance of service is ready.
func waitFullCapacity(ctx context.Context, cl *client, service string, within time.Duration) error {
	deadline := time.Now().Add(within)
	last := "no status"
	for {
		var st api.StatusDoc
		if err := cl.getJSON(http.MethodGet, "/v1/status", 5*time.Second, &st); err != nil {
			last = err.Error()
		} else {
			for _, s := range st.Services {
				if s.Name == service {
					if s.Ready >= s.Desired {
						return nil
					}
					last = fmt.Sprintf("%d of %d instances ready", s.Ready, s.Desired)
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not back at full capacity within %v: %s", service, within, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/ui/scorecard"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files")

// runMedic runs the CLI with args and returns its output and error.
func runMedic(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

const checkConfig = `data_dir: ./data
services:
  web:
    command: [./web]
    instances: 3
    port: 9100
    probes:
      liveness:  {http: {path: /healthz/live}}
      readiness: {http: {path: /healthz/ready}, period: 1s, timeout: 200ms}
    proxy: {listen: 127.0.0.1:8080}
  api:
    command: [./api]
    port: 9200
`

// TestScorecardOfflineGolden pins `medic check --offline` (rewrite with -rewrite):
// web passes the config questions, api (one instance, no proxy, no
// readiness) fails the required ones, so the command exits 1.
func TestScorecardOfflineGolden(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "medic.yaml")
	if err := os.WriteFile(cfg, []byte(checkConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runMedic(t, "check", "--offline", "-c", cfg)
	if !errors.Is(err, errReported) {
		t.Fatalf("medic check: err = %v, want the exit-1 error (required items fail)\n%s", err, out)
	}
	golden := filepath.Join("testdata", "check-offline.golden")
	if *rewrite {
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -rewrite to create it)", err)
	}
	if out != string(want) {
		t.Fatalf("medic check output changed (rerun with -rewrite and review the diff):\n%s", out)
	}
	// Offline, timeouts is unknown (it is answered from the calls a running
	// agent saw, never from the config): unknown does not fail the gate.
	if out, err := runMedic(t, "check", "--offline", "-c", cfg, "--require", "timeouts"); err != nil || !strings.Contains(out, "UNKNOWN Is every outbound call bounded") {
		t.Fatalf("--require timeouts: err = %v\n%s", err, out)
	}
	if _, err := runMedic(t, "check", "--offline", "-c", cfg, "--require", "none"); err != nil {
		t.Fatalf("--require none: %v", err)
	}
	var ue usageError
	if _, err := runMedic(t, "check", "--offline", "-c", cfg, "--require", "uptime"); !errors.As(err, &ue) {
		t.Fatalf("--require uptime: err = %v, want a usage error", err)
	}
}

// TestScorecardFromAgent reads the card from GET /v1/scorecard.
func TestScorecardFromAgent(t *testing.T) {
	card := scorecard.Card{Time: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), Yes: 1, Passed: true, Items: []scorecard.Item{{
		ID: scorecard.Readiness, N: 3, Question: "Do readiness checks verify that the instance can serve?", Answer: scorecard.Yes, Required: true,
		Subjects: []scorecard.Subject{{Name: "web", Answer: scorecard.Yes, Evidence: []string{"readiness: http /healthz/ready"}}}}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/scorecard" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(card)
	}))
	defer srv.Close()
	out, err := runMedic(t, "scorecard", "--addr", srv.URL, "--json")
	if err != nil {
		t.Fatalf("medic scorecard --json: %v\n%s", err, out)
	}
	var got scorecard.Card
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Yes != 1 || len(got.Items) != 1 {
		t.Fatalf("--json output %q: %v", out, err)
	}
	out, err = runMedic(t, "scorecard", "--addr", srv.URL)
	if err != nil || !bytes.Contains([]byte(out), []byte("3. YES     Do readiness checks")) {
		t.Fatalf("text output (%v):\n%s", err, out)
	}
}

package config_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/medic-dev/medic/internal/config"
)

func TestLint(t *testing.T) {
	cfg := mustParse(t, `
services:
  web:
    command: [./web]
    port: 9100
    instances: 3
    min_available: 0
    probes:
      liveness: {http: {path: /healthz}, period: 1s, timeout: 1s}
      readiness: {http: {path: /healthz, port: 9100}}
  worker:
    command: [./worker]
    probes:
      liveness: {exec: {command: [./check, --db]}}
      readiness: {exec: {command: [./check, --db]}}
  ok:
    command: [./ok]
    port: 9200
    instances: 2
    probes:
      liveness: {http: {path: /live}}
      readiness: {http: {path: /ready}}
`)
	var got []string
	for _, w := range config.Lint(cfg) {
		got = append(got, fmt.Sprint(w))
	}
	want := []string{
		"test.yaml:7:5: warning: services.web.min_available: is 0 with 3 instances: a rolling restart may stop every instance at once",
		"test.yaml:9:7: warning: services.web.probes.liveness: checks the same endpoint (GET /healthz) as readiness: a dependency outage must not restart every instance; let liveness check only that the process itself works",
		"test.yaml:9:54: warning: services.web.probes.liveness.timeout: 1s is not shorter than the period (1s): a slow probe runs into the next one",
		"test.yaml:14:7: warning: services.worker.probes.liveness: checks the same command (./check --db) as readiness: a dependency outage must not restart every instance; let liveness check only that the process itself works",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Lint:\n%s\nwant:\n%s", join(got), join(want))
	}
}

func TestLintEmpty(t *testing.T) {
	ws := config.Lint(mustParse(t, "# nothing\n"))
	if len(ws) != 1 || ws[0].String() != "test.yaml:1:1: warning: services: no services defined: medic has nothing to supervise" {
		t.Errorf("Lint(empty) = %v", ws)
	}
	// A config built in code has no positions.
	ws = config.Lint(config.Default())
	if len(ws) != 1 || ws[0].String() != "warning: services: no services defined: medic has nothing to supervise" {
		t.Errorf("Lint(Default()) = %v", ws)
	}
}

func join(lines []string) string {
	s := ""
	for _, l := range lines {
		s += "  " + l + "\n"
	}
	return s
}

package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

func TestDrillsConfig(t *testing.T) {
	cfg, err := config.Parse("d.yaml", []byte(`
services:
  web: {command: [./web], port: 9100, instances: 2, drills: {allow: true}}
drills:
  disk_paths: [/var/tmp/app]
  scenarios:
    slow-db:
      fault: {kind: proxy, params: {latency: 2s}}
      detect: [{kind: observed.failing}]
      recover: [{kind: observed.out_of_rotation|observed.avoided}]
  schedule:
    - {scenario: slow-db, service: web, cron: "0 3 * * 1-5"}
    - {scenario: kill, service: web, cron: "@every 6h", load_rps: 5}
`))
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.Drills.Scenarios["slow-db"]
	if sc.Deadline.D() != 30*time.Second || sc.Scope != "instance" || sc.FailureMode != "slow-db" || *sc.MaxErrorRate != 0.01 {
		t.Fatalf("defaults: %+v", sc)
	}
	if cfg.Drills.Schedule[0].LoadRPS != 20 || cfg.Drills.Schedule[1].LoadRPS != 5 {
		t.Fatalf("schedule load: %+v", cfg.Drills.Schedule)
	}
}

func TestDrillsConfigErrors(t *testing.T) {
	_, err := config.Parse("d.yaml", []byte(`
services:
  web: {command: [./web], port: 9100}
  db: {command: [./db], port: 9200, drills: {allow: true}}
drills:
  disk_paths: [relative/dir, /]
  scenarios:
    Bad_Name:
      fault: {kind: ""}
      detect: []
      forbid: [{kind: "", on: elsewhere}]
      max_error_rate: 2
      requires: [kubernetes]
  schedule:
    - {scenario: nope, service: web, cron: "61 * * * *"}
    - {scenario: kill, service: ghost, cron: "@daily"}
    - {scenario: kill, service: db, cron: "@daily", load_rps: 20000}
`))
	if err == nil {
		t.Fatal("invalid drills were accepted")
	}
	for _, want := range []string{
		`drills.scenarios.Bad_Name: scenario name "Bad_Name": use [a-z0-9][a-z0-9_-]*`,
		"drills.scenarios.Bad_Name.fault.kind: required",
		"drills.scenarios.Bad_Name.detect: required",
		"drills.scenarios.Bad_Name.forbid[0].kind: required",
		`drills.scenarios.Bad_Name.forbid[0].on: "elsewhere": want target, service, dependency or any`,
		"drills.scenarios.Bad_Name.max_error_rate",
		`drills.scenarios.Bad_Name.requires: "kubernetes": want remedy or database`,
		`drills.schedule[0].cron: cron "61 * * * *": minute`,
		`drills.schedule[0].scenario: unknown scenario "nope"`,
		`drills.schedule[0].service: service "web" does not allow drills`,
		`drills.schedule[1].service: unknown service "ghost"`,
		"drills.schedule[2].load_rps: 20000: want 0 to 10000",
		`drills.disk_paths[0]: "relative/dir": want an absolute directory other than /`,
		`drills.disk_paths[1]: "/": want an absolute directory other than /`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%s", want, err)
		}
	}
}

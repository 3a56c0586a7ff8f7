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

// TestFleetDrillSchedule: a scheduled host-kill names the host (another
// host's), and the fleet must be configured; etcd-member-loss takes a
// member, not a host; a non-fleet scenario takes neither.
func TestFleetDrillSchedule(t *testing.T) {
	const fleet = `
name: h1
etcd: {endpoints: [127.0.0.1:2379]}
fleet: {name: prod, address: 10.0.0.1}
services:
  web: {command: [./web], port: 9100, fleet: {instances: 3}, drills: {allow: true}}
  solo: {command: [./solo], port: 9200, drills: {allow: true}}
`
	cfg, err := config.Parse("d.yaml", []byte(fleet+`
drills:
  schedule:
    - {scenario: host-kill, service: web, host: h3, cron: "@daily"}
    - {scenario: etcd-member-loss, service: web, member: e2, cron: "@weekly"}
    - {scenario: etcd-member-loss, service: web, cron: "@weekly"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Drills.Schedule[0]; s.Host != "h3" || s.Scenario != "host-kill" {
		t.Fatalf("schedule: %+v", s)
	}
	if cfg.Drills.Schedule[1].Member != "e2" {
		t.Fatalf("schedule: %+v", cfg.Drills.Schedule[1])
	}
	_, err = config.Parse("d.yaml", []byte(fleet+`
drills:
  schedule:
    - {scenario: host-kill, service: web, cron: "@daily"}
    - {scenario: host-partition, service: web, host: h1, cron: "@daily"}
    - {scenario: kill, service: web, host: h2, cron: "@daily"}
    - {scenario: etcd-member-loss, service: web, host: h2, cron: "@daily"}
    - {scenario: host-kill, service: solo, host: h2, cron: "@daily"}
    - {scenario: kill, service: web, member: e1, cron: "@daily"}
    - {scenario: host-kill, service: web, host: "h 2", cron: "@daily"}
`))
	if err == nil {
		t.Fatal("invalid fleet drill schedules were accepted")
	}
	for _, want := range []string{
		"drills.schedule[0].host: required for host-kill",
		`drills.schedule[1].host: "h1" is this host`,
		"drills.schedule[2].host: kill does not take a host",
		"drills.schedule[3].host: etcd-member-loss does not take a host",
		`drills.schedule[4].service: service "solo" has no fleet section`,
		"drills.schedule[5].member: kill does not take an etcd member",
		`drills.schedule[6].host: "h 2" is not a host name`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%s", want, err)
		}
	}
	_, err = config.Parse("d.yaml", []byte(`
services:
  web: {command: [./web], port: 9100, drills: {allow: true}}
drills:
  schedule:
    - {scenario: host-kill, service: web, host: h2, cron: "@daily"}
`))
	if err == nil || !strings.Contains(err.Error(), "drills.schedule[0].scenario: host-kill is a fleet drill: it needs the top-level fleet section") {
		t.Fatalf("a fleet drill scheduled without a fleet: %v", err)
	}
}

// TestFleetEtcdMemberAndJitter: fleet.etcd_member and fleet.join_jitter,
// their defaults and their bounds.
func TestFleetEtcdMemberAndJitter(t *testing.T) {
	const base = `
name: h1
etcd: {endpoints: [127.0.0.1:2379]}
fleet:
  name: prod
  address: 10.0.0.1
`
	cfg, err := config.Parse("d.yaml", []byte(base+`  etcd_member: {name: e1, stop: [systemctl, stop, etcd], start: [systemctl, start, etcd]}
`))
	if err != nil {
		t.Fatal(err)
	}
	f := *cfg.Fleet
	f.SetDefaults()
	if f.Jitter() != 2*time.Second || f.EtcdMember.Timeout.D() != 30*time.Second || f.EtcdMember.Name != "e1" {
		t.Fatalf("defaults: jitter %v, etcd member %+v", f.Jitter(), f.EtcdMember)
	}
	cfg, err = config.Parse("d.yaml", []byte(base+"  join_jitter: 0s\n"))
	if err != nil || cfg.Fleet.Jitter() != 0 {
		t.Fatalf("join_jitter 0: %v, %v", err, cfg)
	}
	_, err = config.Parse("d.yaml", []byte(base+`  join_jitter: 2m
  etcd_member: {name: "", stop: [], start: [""], timeout: 10m}
`))
	if err == nil {
		t.Fatal("a bad etcd_member and join_jitter were accepted")
	}
	for _, want := range []string{
		"fleet.join_jitter: 2m0s: want 0 (join at once) to 1m0s",
		"fleet.etcd_member.name: required",
		"fleet.etcd_member.stop: required",
		"fleet.etcd_member.start[0]: empty program name",
		"fleet.etcd_member.timeout: 10m0s: want 1s to 5m0s",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%s", want, err)
		}
	}
}

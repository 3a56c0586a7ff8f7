package config_test

import (
	"reflect"
	"testing"

	"github.com/medic-dev/medic/internal/config"
)

func mustParse(tb testing.TB, src string) *config.Config {
	tb.Helper()
	cfg, err := config.Parse("test.yaml", []byte(src))
	if err != nil {
		tb.Fatalf("Parse:\n%v", err)
	}
	return cfg
}

func TestDiff(t *testing.T) {
	old := mustParse(t, `
services:
  web: {command: [./web], port: 9100, probes: {liveness: {http: {path: /live}}}}
  db: {command: [./db]}
  cron: {command: [./cron]}
  same: {command: [./same], instances: 1}
`)
	next := mustParse(t, `
data_dir: ./elsewhere
api: {listen: 127.0.0.1:7071}
services:
  web: {command: [./web], port: 9100, probes: {liveness: {http: {path: /live}, period: 5s}}}
  db: {command: [./db]}
  same: {command: [./same]}   # instances 1 is the default: no change
  queue: {command: [./queue]}
`)
	got := config.Diff(old, next)
	want := config.Change{
		Added:      []string{"queue"},
		Removed:    []string{"cron"},
		Changed:    []string{"web"},
		Unchanged:  []string{"db", "same"},
		APIChanged: true,
		Sections:   []string{"data_dir"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff = %+v, want %+v", got, want)
	}
	if got.Empty() {
		t.Errorf("Empty() = true for a change")
	}
	if same := config.Diff(old, old); !same.Empty() || len(same.Unchanged) != 4 {
		t.Errorf("Diff(old, old) = %+v", same)
	}
	if fromNil := config.Diff(nil, config.Default()); !fromNil.Empty() {
		t.Errorf("Diff(nil, Default()) = %+v", fromNil)
	}
	if fromNil := config.Diff(nil, old); len(fromNil.Added) != 4 || fromNil.APIChanged {
		t.Errorf("Diff(nil, old) = %+v", fromNil)
	}
}

// TestDiffDeep: a change anywhere in a service's spec counts, down to a
// probe header or an env value.
func TestDiffDeep(t *testing.T) {
	base := `services: {web: {command: [./web], port: 1, env: {A: "1"}, probes: {readiness: {http: {headers: {X: a}}}}}}`
	for _, src := range []string{
		`services: {web: {command: [./web], port: 1, env: {A: "2"}, probes: {readiness: {http: {headers: {X: a}}}}}}`,
		`services: {web: {command: [./web], port: 1, env: {A: "1"}, probes: {readiness: {http: {headers: {X: b}}}}}}`,
		`services: {web: {command: [./web, -v], port: 1, env: {A: "1"}, probes: {readiness: {http: {headers: {X: a}}}}}}`,
		`services: {web: {command: [./web], port: 1, env: {A: "1"}, probes: {readiness: {http: {headers: {X: a}}}}, drills: {allow: true}}}`,
	} {
		ch := config.Diff(mustParse(t, base), mustParse(t, src))
		if !reflect.DeepEqual(ch.Changed, []string{"web"}) {
			t.Errorf("%s: Changed = %v, want [web]", src, ch.Changed)
		}
	}
}

package config_test

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

func ptr[T any](v T) *T { return &v }

func d(s string) config.Duration {
	v, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return config.Duration(v)
}

func TestDefault(t *testing.T) {
	c := config.Default()
	if c.DataDir != "./.medic" || c.API.Listen != "127.0.0.1:7070" || c.API.TokensFile != "" || len(c.Services) != 0 {
		t.Errorf("Default() = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

// TestServiceDefaults pins every documented default of a service and its
// probes.
func TestServiceDefaults(t *testing.T) {
	c := &config.Config{Services: map[string]*config.Service{
		"web": {Command: []string{"./web"}, Port: 9100, Probes: config.Probes{
			Startup:   &config.Probe{Exec: &config.ExecProbe{Command: []string{"true"}}},
			Liveness:  &config.Probe{TCP: &config.TCPProbe{}},
			Readiness: &config.Probe{HTTP: &config.HTTPProbe{}, GRPC: nil},
		}},
		"three": {Command: []string{"./x"}, Instances: 3},
	}}
	c.SetDefaults()
	want := &config.Service{
		Command:   []string{"./web"},
		Instances: 1,
		Port:      9100,
		Restart: config.Restart{Policy: "always", Initial: d("1s"), Multiplier: 2, Max: d("5m"), Jitter: ptr(0.2),
			ResetAfter: d("10m"), CrashLoop: config.CrashLoop{Restarts: 5, Window: d("1m")}},
		Stop: config.Stop{Signal: "TERM", Grace: d("10s")},
		Probes: config.Probes{
			Startup:   &config.Probe{Exec: &config.ExecProbe{Command: []string{"true"}}, Period: d("10s"), Timeout: d("1s"), SuccessThreshold: 1, FailureThreshold: 3},
			Liveness:  &config.Probe{TCP: &config.TCPProbe{Host: "127.0.0.1"}, Period: d("10s"), Timeout: d("1s"), SuccessThreshold: 1, FailureThreshold: 3},
			Readiness: &config.Probe{HTTP: &config.HTTPProbe{Path: "/", Host: "127.0.0.1", Scheme: "http", Status: "200-399"}, Period: d("10s"), Timeout: d("1s"), SuccessThreshold: 1, FailureThreshold: 3},
		},
		MinAvailable: ptr(0),
		Logs:         config.Logs{MaxSize: 10 << 20, MaxFiles: 3, Mode: "0640"},
	}
	if got := c.Services["web"]; !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if m := c.Services["three"].MinAvailable; m == nil || *m != 2 {
		t.Errorf("min_available of 3 instances = %v, want 2", m)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// Idempotent.
	before := *c.Services["web"]
	c.SetDefaults()
	if !reflect.DeepEqual(&before, c.Services["web"]) {
		t.Errorf("second SetDefaults changed the service")
	}
}

// TestExplicitZeroKept: a value written in the file is never replaced by
// the default, even when it is zero.
func TestExplicitZeroKept(t *testing.T) {
	cfg, err := config.Parse("z.yaml", []byte(`
services:
  web:
    command: [./web]
    instances: 2
    restart: {jitter: 0}
    stop: {grace: 0}
    min_available: 0
    logs: {max_files: 0}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Services["web"]
	if *s.Restart.Jitter != 0 || s.Stop.Grace != 0 || *s.MinAvailable != 0 || s.Logs.MaxFiles != 0 {
		t.Errorf("explicit zeros replaced: jitter %v grace %v min_available %v max_files %v",
			*s.Restart.Jitter, s.Stop.Grace, *s.MinAvailable, s.Logs.MaxFiles)
	}
	if s.Stop.Signal != "TERM" || s.Logs.MaxSize != 10<<20 {
		t.Errorf("unset siblings not defaulted: %+v %+v", s.Stop, s.Logs)
	}
	// Validate and SetDefaults again keep them too (the source is remembered).
	cfg.SetDefaults()
	if s.Stop.Grace != 0 || s.Logs.MaxFiles != 0 {
		t.Errorf("SetDefaults after Parse replaced explicit zeros")
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "conf", "medic.yaml")
	cfg, err := config.Parse(path, []byte(`
data_dir: state
api: {tokens_file: tokens.yaml}
services:
  web: {command: [./web], dir: ../web}
  abs: {command: [./abs], dir: /srv/abs}
  here: {command: [./here]}
`))
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "conf")
	for got, want := range map[string]string{
		cfg.DataDir:              base + "/state",
		cfg.API.TokensFile:       base + "/tokens.yaml",
		cfg.Services["web"].Dir:  dir + "/web",
		cfg.Services["abs"].Dir:  "/srv/abs",
		cfg.Services["here"].Dir: base,
		config.Default().DataDir: "./.medic",
	} {
		if got != want {
			t.Errorf("path = %q, want %q", got, want)
		}
	}
	if cfg.Path != path {
		t.Errorf("Path = %q, want %q", cfg.Path, path)
	}
}

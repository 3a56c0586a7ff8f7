package probe_test

import (
	"context"
	"strings"
	"testing"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/probe"
)

func TestNewCheckerRejects(t *testing.T) {
	tests := []struct {
		name string
		p    *config.Probe
		t    probe.Target
		want string
	}{
		{"nil probe", nil, probe.Target{}, "no probe"},
		{"no kind", &config.Probe{}, probe.Target{Port: 80}, "exactly one"},
		{"two kinds", &config.Probe{HTTP: &config.HTTPProbe{}, TCP: &config.TCPProbe{}}, probe.Target{Port: 80}, "got 2"},
		{"http without any port", &config.Probe{HTTP: &config.HTTPProbe{Path: "/"}}, probe.Target{}, "no port"},
		{"tcp port out of range", &config.Probe{TCP: &config.TCPProbe{Port: 70000}}, probe.Target{}, "no port"},
		{"grpc without any port", &config.Probe{GRPC: &config.GRPCProbe{}}, probe.Target{}, "no port"},
		{"http bad status range", &config.Probe{HTTP: &config.HTTPProbe{Status: "300-200"}}, probe.Target{Port: 80}, "status range"},
		{"http bad scheme", &config.Probe{HTTP: &config.HTTPProbe{Scheme: "ftp"}}, probe.Target{Port: 80}, "scheme"},
		{"exec empty command", &config.Probe{Exec: &config.ExecProbe{}}, probe.Target{}, "empty command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := probe.NewChecker(tt.p, tt.t)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewChecker = %v, %v; want an error containing %q", c, err, tt.want)
			}
		})
	}
}

func TestParseStatusRange(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi int
		ok     bool
	}{
		{"", 200, 399, true},
		{"200-299", 200, 299, true},
		{" 200 - 204 ", 200, 204, true},
		{"204", 204, 204, true},
		{"100-599", 100, 599, true},
		{"299-200", 0, 0, false},
		{"99-200", 0, 0, false},
		{"200-600", 0, 0, false},
		{"2xx", 0, 0, false},
		{"200-", 0, 0, false},
	}
	for _, tt := range tests {
		lo, hi, err := probe.ParseStatusRange(tt.in)
		if (err == nil) != tt.ok || lo != tt.lo || hi != tt.hi {
			t.Errorf("ParseStatusRange(%q) = %d, %d, %v; want %d, %d, ok=%v", tt.in, lo, hi, err, tt.lo, tt.hi, tt.ok)
		}
	}
}

func TestCheckerFunc(t *testing.T) {
	var c probe.Checker = probe.CheckerFunc(func(ctx context.Context) probe.Outcome { return probe.Fail("HTTP 503") })
	if o := c.Check(context.Background()); o.Health != medic.HealthFailure || o.Detail != "HTTP 503" {
		t.Fatalf("Check = %+v", o)
	}
}

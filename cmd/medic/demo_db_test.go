package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemoDBFailover runs the demo's database part for real: etcd, two
// agents of the medic binary keeping PostgreSQL 15 in sync mode, demodb
// under load while the primary's host is lost. The other member must take
// over, the client-visible outage stay under 10 s, and no acknowledged
// write be lost.
func TestDemoDBFailover(t *testing.T) {
	if missing := demoDBMissing(); len(missing) > 0 {
		msg := strings.Join(missing, " and ") + " not found (install the Debian packages postgresql-15 and etcd-server)"
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if testing.Short() {
		t.Skip("starts PostgreSQL and etcd (about 30 s)")
	}
	bin := filepath.Join(t.TempDir(), "medic")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build medic: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out strings.Builder
	res, err := demoDB(ctx, bin, false, &out)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.OldPrimary != "node-a" || res.NewPrimary != "node-b" {
		t.Errorf("primary %s → %s, want node-a → node-b", res.OldPrimary, res.NewPrimary)
	}
	if res.Outage <= 0 || res.Outage >= 10*time.Second {
		t.Errorf("client-visible outage %v, want between 0 and 10s", res.Outage)
	}
	if res.Acked < 400 {
		t.Errorf("%d writes acknowledged, want at least 400 (200 before the kill, 200 after)", res.Acked)
	}
	if res.Lost != 0 {
		t.Errorf("%d of %d acknowledged writes lost in sync mode", res.Lost, res.Acked)
	}
	if res.Restarts != 0 {
		t.Errorf("demodb restarted %d times during the failover: liveness must not depend on the database", res.Restarts)
	}
}

// The outage is the longest gap between acknowledgments, in time order,
// ending after the fault; acknowledgments arrive out of order.
func TestLongestGap(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms ...int) []time.Time {
		ts := make([]time.Time, len(ms))
		for i, m := range ms {
			ts[i] = t0.Add(time.Duration(m) * time.Millisecond)
		}
		return ts
	}
	tests := []struct {
		name               string
		acks               []time.Time
		from               time.Duration
		gap, before, after int // ms
	}{
		{"no acks", nil, 0, 0, 0, 0},
		{"steady", at(0, 10, 20, 30), 0, 10, 0, 10},
		{"outage after the fault", at(0, 10, 20, 4220, 4230), 15 * time.Millisecond, 4200, 20, 4220},
		{"out of order", at(10, 0, 4220, 20, 4230), 15 * time.Millisecond, 4200, 20, 4220},
		{"a longer gap before from is not the outage", at(0, 5000, 5010, 6000, 6010), 5005 * time.Millisecond, 990, 5010, 6000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gap, before, after := longestGap(tt.acks, t0.Add(tt.from))
			if gap != time.Duration(tt.gap)*time.Millisecond {
				t.Fatalf("gap %v, want %dms", gap, tt.gap)
			}
			if gap > 0 && (before.Sub(t0) != time.Duration(tt.before)*time.Millisecond || after.Sub(t0) != time.Duration(tt.after)*time.Millisecond) {
				t.Fatalf("gap from +%v to +%v, want +%dms to +%dms", before.Sub(t0), after.Sub(t0), tt.before, tt.after)
			}
		})
	}
}

package probe_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/probe"
)

// mustChecker builds a checker or fails the test.
func mustChecker(tb testing.TB, p *config.Probe, t probe.Target) probe.Checker {
	tb.Helper()
	c, err := probe.NewChecker(p, t)
	if err != nil {
		tb.Fatalf("NewChecker: %v", err)
	}
	return c
}

// portOf returns the port of a loopback listener address.
func portOf(tb testing.TB, a net.Addr) int {
	tb.Helper()
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		tb.Fatalf("address %v is not TCP", a)
	}
	return ta.Port
}

// closedPort returns a loopback port that nothing listens on (it was just
// released; nothing else in the test binds ports it did not ask for).
func closedPort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	port := portOf(tb, l.Addr())
	l.Close()
	return port
}

// eventually polls cond until it holds or the deadline passes.
func eventually(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantTimeout checks that o is a failure saying "timeout after D" with D at
// most budget and not far below it. A caller's deadline is measured from
// before Check began, so under load D may read a little short.
func wantTimeout(tb testing.TB, o probe.Outcome, budget time.Duration) {
	tb.Helper()
	rest, ok := strings.CutPrefix(o.Detail, "timeout after ")
	d, err := time.ParseDuration(rest)
	if o.Health != medic.HealthFailure || !ok || err != nil || d > budget || d < budget-budget/5 {
		tb.Fatalf("got %v %q, want failure \"timeout after %v\"", o.Health, o.Detail, budget)
	}
}

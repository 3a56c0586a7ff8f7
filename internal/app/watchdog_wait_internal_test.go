package app

import (
	"context"
	"testing"
	"time"
)

// TestWatchdogWaitsWithoutSystemd: outside systemd the watchdog member of the
// run group must not return before its context ends, or medic stops at once.
func TestWatchdogWaitsWithoutSystemd(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- watchdog(ctx, nil) }()
	select {
	case err := <-done:
		t.Fatalf("watchdog returned %v before its context ended", err)
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("watchdog did not return after its context ended")
	}
}

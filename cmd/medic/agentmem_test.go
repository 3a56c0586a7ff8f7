package main

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestAgentMemoryDefaults(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })

	t.Setenv("GOGC", "") // restores the variable afterwards
	os.Unsetenv("GOGC")
	agentMemoryDefaults()
	if got := debug.SetGCPercent(100); got != agentGCPercent {
		t.Errorf("GOGC unset: GC percent %d, want the agent default %d", got, agentGCPercent)
	}

	// The operator's GOGC wins: the runtime read it at start; medic must not override it.
	t.Setenv("GOGC", "200")
	debug.SetGCPercent(200)
	agentMemoryDefaults()
	if got := debug.SetGCPercent(100); got != 200 {
		t.Errorf("GOGC=200 set: GC percent %d, want 200 kept", got)
	}
}

package main

import (
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/medic-dev/medic/internal/selfmem"
)

// agentGCPercent is the agent's default GOGC: a collection starts when the
// heap has grown by half the live data instead of Go's default of all of it.
// Measured with 50 instances × three http probes every second
// (docs/benchmarks.md): about 2.8 MiB less anonymous memory (17.8 → 15.0 MiB)
// for no CPU difference within the noise. $GOGC, when set, wins.
const agentGCPercent = 50

// agentMemoryDefaults applies the agent's GC setting unless the operator set
// GOGC. GOMEMLIMIT is left unset (no limit) unless the operator sets it: a
// limit below the agent's live heap turns into back-to-back collections.
func agentMemoryDefaults() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(agentGCPercent)
	}
}

// trimExecAfter is when the agent gives back the pages of its executable
// that only its start touched (internal/selfmem): by then the config is
// loaded, every subsystem built and the first probes have run. Measured
// with 50 instances (docs/benchmarks.md): the binary's resident pages go
// from about 29 MiB to the 17 MiB the running agent touches again.
const trimExecAfter = 30 * time.Second

// trimAfterStart trims the executable's pages once, trimExecAfter from now,
// unless MEDIC_TRIM_EXEC=0: measuring which pages the agent touches at all
// (docs/benchmarks.md) needs the trim off.
func trimAfterStart(log *slog.Logger) {
	if os.Getenv("MEDIC_TRIM_EXEC") == "0" {
		return
	}
	time.AfterFunc(trimExecAfter, func() {
		if r, err := selfmem.Trim(); err != nil {
			log.Warn("could not give back the executable's start-up pages", "err", err)
		} else {
			log.Debug("gave back the executable's start-up pages", "mappings", r.Mappings, "mib", r.Bytes>>20)
		}
	})
}

// cpuProfile starts a CPU profile of the agent into $MEDIC_CPUPROFILE, when
// set, and returns the function that ends it (a no-op otherwise): the
// benchmarks' way to see where the agent's CPU goes under a flood
// (bench/README.md), since perf cannot resolve the agent's symbols in every
// container. The profile is written when the agent exits.
func cpuProfile(log *slog.Logger) func() {
	path := os.Getenv("MEDIC_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Warn("cannot write the CPU profile", "path", path, "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Warn("cannot start the CPU profile", "path", path, "err", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Warn("cannot write the CPU profile", "path", path, "err", err)
		}
	}
}

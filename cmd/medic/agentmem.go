package main

import (
	"log/slog"
	"os"
	"runtime/debug"
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

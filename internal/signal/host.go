package signal

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"

	"github.com/medic-dev/medic/internal/clock"
)

// Host collects the host's disk usage for each configured path and its
// memory usage (signals host_disk_* and host_memory_*; see the package
// comment).
type Host struct {
	Paths  []string      // each path's filesystem is measured (a file system mount or any directory on it)
	Period time.Duration // default DefaultPeriod
	Clock  clock.Clock   // default clock.Real
	Store  Appender      // required
	Log    *slog.Logger  // default slog.Default

	// Seams for tests; nil means gopsutil.
	DiskUsage func(ctx context.Context, path string) (*disk.UsageStat, error)
	Memory    func(ctx context.Context) (*mem.VirtualMemoryStat, error)

	mu     sync.Mutex
	errs   map[string]string // last error per source, so a failure is logged once, not every period
	missed atomic.Int64
}

// Serve collects every period until ctx ends, then returns nil.
func (h *Host) Serve(ctx context.Context) error {
	period := h.Period
	if period <= 0 {
		period = DefaultPeriod
	}
	every(ctx, clock.Or(h.Clock), period, slot("host", period),
		func(n int) { h.missed.Add(int64(n)) },
		func(now time.Time) {
			for _, s := range h.Collect(ctx, now) {
				h.Store.Add(s.Name, s.Labels, s.T, s.V)
			}
		})
	return nil
}

// Collect measures once and returns the samples stamped now. A path that
// cannot be measured yields no samples; its error is logged when it first
// appears and when it clears.
func (h *Host) Collect(ctx context.Context, now time.Time) []Sample {
	usage, memory := h.DiskUsage, h.Memory
	if usage == nil {
		usage = disk.UsageWithContext
	}
	if memory == nil {
		memory = mem.VirtualMemoryWithContext
	}
	var out []Sample
	for _, p := range h.Paths {
		u, err := usage(ctx, p)
		if err == nil && u.Total == 0 {
			err = fmt.Errorf("filesystem reports a size of 0")
		}
		if h.note("disk "+p, err) {
			continue
		}
		l := Labels{"path": p}
		out = append(out,
			Sample{HostDiskUsedPercent, l, now, u.UsedPercent},
			Sample{HostDiskFreeBytes, l, now, float64(u.Free)},
			Sample{HostDiskTotalBytes, l, now, float64(u.Total)},
			Sample{HostDiskInodesUsedPercent, l, now, u.InodesUsedPercent},
		)
	}
	m, err := memory(ctx)
	if !h.note("memory", err) {
		out = append(out,
			Sample{HostMemoryUsedPercent, nil, now, m.UsedPercent},
			Sample{HostMemoryAvailableBytes, nil, now, float64(m.Available)},
		)
	}
	return out
}

// note logs err for source when it differs from the last one and reports
// whether there was an error.
func (h *Host) note(source string, err error) bool {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	h.mu.Lock()
	if h.errs == nil {
		h.errs = map[string]string{}
	}
	prev := h.errs[source]
	h.errs[source] = msg
	h.mu.Unlock()
	log := h.Log
	if log == nil {
		log = slog.Default()
	}
	switch {
	case msg != "" && msg != prev:
		log.Warn("host signal unavailable", "source", source, "err", msg)
	case msg == "" && prev != "":
		log.Info("host signal available again", "source", source)
	}
	return err != nil
}

// Missed returns how many periods were skipped because a collection ran past them.
func (h *Host) Missed() int64 { return h.missed.Load() }

package supervise

import (
	"context"
	"time"

	ps "github.com/shirou/gopsutil/v4/process"
)

// gopsutil reads the boot time (/proc/stat, and its virtualisation probes)
// for every process sampled unless told to keep it: 3.6 % of the agent's
// CPU with 50 instances (perf, docs/benchmarks.md). The boot time does not
// change while medic runs, and RSS, CPU seconds and FDs do not depend on it.
func init() { ps.EnableBootTimeCache(true) }

// CollectStats samples RSS, CPU seconds and open FDs of every running
// instance's main process every period until ctx ends.
func (s *Supervisor) CollectStats(ctx context.Context, period time.Duration) error {
	t := s.env.Clock.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
		}
		for _, in := range s.Instances() {
			in.sample(ctx)
		}
		t.Reset(period)
	}
}

func (in *Instance) sample(ctx context.Context) {
	pid := in.Status().PID
	if pid == 0 {
		return
	}
	p, err := ps.NewProcessWithContext(ctx, int32(pid))
	if err != nil {
		return
	}
	var rss uint64
	var cpu float64
	var fds int32
	if m, err := p.MemoryInfoWithContext(ctx); err == nil {
		rss = m.RSS
	}
	if c, err := p.TimesWithContext(ctx); err == nil {
		cpu = c.User + c.System
	}
	if n, err := p.NumFDsWithContext(ctx); err == nil {
		fds = n
	}
	in.mu.Lock()
	if in.st.PID == pid { // still the same process
		in.st.RSSBytes, in.st.CPU, in.st.FDs = rss, cpu, fds
	}
	in.mu.Unlock()
}

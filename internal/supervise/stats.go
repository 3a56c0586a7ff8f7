package supervise

import (
	"context"
	"time"

	"github.com/medic-dev/medic/internal/procstat"
)

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

// sample reads the main process's usage from /proc (procstat.ReadUsage: one
// read of stat and a listing of fd; through gopsutil it was three reads and
// 10 % of the agent's CPU with 50 instances, docs/benchmarks.md).
func (in *Instance) sample(ctx context.Context) {
	pid := in.Status().PID
	if pid == 0 {
		return
	}
	u, err := procstat.ReadUsage(pid)
	if err != nil {
		return
	}
	rss, cpu, fds := u.RSSBytes, u.CPUSeconds, u.FDs
	in.mu.Lock()
	if in.st.PID == pid { // still the same process
		in.st.RSSBytes, in.st.CPU, in.st.FDs = rss, cpu, fds
	}
	in.mu.Unlock()
}

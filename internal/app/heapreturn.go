package app

import (
	"context"
	"time"

	"github.com/medic-dev/medic/internal/selfmem"
)

// returnHeap gives the memory a flood of connections grew back to the
// operating system once the connections are gone (selfmem.HeapReturn),
// asking every selfmem.ReturnEvery until ctx ends.
func (m *Main) returnHeap(ctx context.Context) {
	var h selfmem.HeapReturn
	t := m.Clock.NewTimer(selfmem.ReturnEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		if h.Due(m.fds.Open()) {
			start := time.Now()
			selfmem.ReturnHeap()
			m.Logger.Debug("returned the heap a flood of connections left", "open_descriptors", m.fds.Open(), "took", time.Since(start))
		}
		t.Reset(selfmem.ReturnEvery)
	}
}

package selfmem

import (
	"runtime"
	"runtime/debug"
	"time"
)

// After a flood of connections the heap keeps what served them: the
// proxy's per-connection buffers go back to their pools (sync.Pool, emptied
// only by two collections), and a collection comes only when the heap grows
// by GOGC percent past the flood's high mark, which a quiet agent never
// reaches; the scavenger then returns only what the heap goal leaves over.
// Measured in bench/flood.sh: 100–160 MiB resident after the HTTP-proxy
// phase, and it stayed. HeapReturn decides when to give it back: once the
// descriptors open (FDs.Open: client connections and medic's own) have
// fallen by ReturnAfterDrop and to at most half of their high mark since
// the last return.

// ReturnAfterDrop is the fall in open descriptors that makes a return due:
// about 32 MiB of 32 KiB read buffers, far more than the cost of the
// collections (a few milliseconds of CPU for the agent's live heap).
const ReturnAfterDrop = 1024

// ReturnEvery is how often the agent asks HeapReturn (and so the bound, with
// the time the connections take to close, on how long the memory stays).
const ReturnEvery = 10 * time.Second

// HeapReturn is the decision; the zero value is ready.
type HeapReturn struct {
	High int // most descriptors open since the last return
}

// Due reports whether to return memory now, with open descriptors open.
func (h *HeapReturn) Due(open int) bool {
	if open > h.High {
		h.High = open
		return false
	}
	if h.High-open >= ReturnAfterDrop && open <= h.High/2 {
		h.High = open
		return true
	}
	return false
}

// ReturnHeap empties the pools (two collections: a pooled object survives
// the first in the pool's victim cache) and returns the free heap to the
// operating system at once.
func ReturnHeap() {
	runtime.GC()
	debug.FreeOSMemory() // a second collection, then the scavenger's whole work
}

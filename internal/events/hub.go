// Package events fans typed medic events out to live subscribers (the SSE
// stream, the CLI's `events -f`) and keeps a short in-memory history.
// A slow subscriber never blocks the publisher: its oldest events are
// dropped and counted. (The audit log is not a subscriber: it must never drop.)
package events

import (
	"sync"

	"github.com/medic-dev/medic"
)

// Hub is safe for concurrent use. The zero value is not usable; use New.
type Hub struct {
	mu      sync.Mutex
	subs    map[*Sub]struct{}
	history []medic.Event
	keep    int
	dropped uint64
	seq     uint64
}

// Sub is one subscription; read C until Close.
type Sub struct {
	C       chan medic.Event
	hub     *Hub
	dropped uint64
}

// New returns a hub keeping the last keep events.
func New(keep int) *Hub { return &Hub{subs: map[*Sub]struct{}{}, keep: keep} }

// Publish delivers ev to every subscriber without blocking.
func (h *Hub) Publish(ev medic.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	h.history = append(h.history, ev)
	if len(h.history) > h.keep {
		h.history = append(h.history[:0], h.history[len(h.history)-h.keep:]...)
	}
	for s := range h.subs {
		for {
			select {
			case s.C <- ev:
			default:
				// Full: drop the oldest queued event to make room (newest wins).
				select {
				case <-s.C:
					s.dropped++
					h.dropped++
				default:
				}
				continue
			}
			break
		}
	}
}

// Subscribe returns a subscription with a buffer of n events, and the history
// as of the moment of subscribing (so nothing falls between the two).
func (h *Hub) Subscribe(n int) (*Sub, []medic.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &Sub{C: make(chan medic.Event, n), hub: h}
	h.subs[s] = struct{}{}
	return s, append([]medic.Event(nil), h.history...)
}

// Close ends the subscription.
func (s *Sub) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	delete(s.hub.subs, s)
}

// Dropped returns how many events all subscribers lost to slowness.
func (h *Hub) Dropped() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dropped
}

// History returns the kept events, oldest first.
func (h *Hub) History() []medic.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]medic.Event(nil), h.history...)
}

package events_test

import (
	"testing"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/events"
)

func TestSlowSubscriberDropsOldest(t *testing.T) {
	h := events.New(3)
	s, hist := h.Subscribe(2)
	defer s.Close()
	if len(hist) != 0 {
		t.Fatalf("history = %d, want 0", len(hist))
	}
	for _, r := range []string{"a", "b", "c", "d"} {
		h.Publish(medic.Event{Reason: r}) // never blocks
	}
	if got := (<-s.C).Reason + (<-s.C).Reason; got != "cd" {
		t.Fatalf("subscriber got %q, want the newest two %q", got, "cd")
	}
	if h.Dropped() != 2 {
		t.Fatalf("dropped = %d, want 2", h.Dropped())
	}
	if hist := h.History(); len(hist) != 3 || hist[0].Reason != "b" {
		t.Fatalf("history = %v, want last 3 starting at b", hist)
	}
}

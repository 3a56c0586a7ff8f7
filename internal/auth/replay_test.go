package auth

import (
	"errors"
	"testing"
	"time"
)

func sigAt(t *testing.T, target string, at time.Time) Signature {
	t.Helper()
	s, err := ParseSignature([]byte(Sign("bot", "secret", "GET", target, at)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A signature is good once within its window, forgotten once its window is
// over (when VerifySigned calls it stale), and the clock is the caller's.
func TestSeenSignaturesReplayWithinWindow(t *testing.T) {
	const window = 60 * time.Second
	t0 := time.Unix(1_800_000_000, 0)
	c := NewSeenSignatures(window, 10)
	s := sigAt(t, "/orders?id=7", t0)
	if err := c.Use(s, t0); err != nil {
		t.Fatalf("first use: %v", err)
	}
	for _, d := range []time.Duration{0, time.Second, 30 * time.Second, window, window + 999*time.Millisecond} {
		if err := c.Use(s, t0.Add(d)); !errors.Is(err, ErrSignatureReplayed) {
			t.Errorf("replay %v later (window %v): %v, want ErrSignatureReplayed", d, window, err)
		}
	}
	// Another target, another time: other signatures.
	if err := c.Use(sigAt(t, "/orders?id=8", t0), t0); err != nil {
		t.Errorf("another target: %v", err)
	}
	if err := c.Use(sigAt(t, "/orders?id=7", t0.Add(time.Second)), t0.Add(time.Second)); err != nil {
		t.Errorf("the same target a second later: %v", err)
	}
	// Past the window the signature is stale for VerifySigned, and forgotten.
	late := t0.Add(window + time.Second)
	if _, err := (&ClientKeys{}).VerifySigned(s, []byte("GET"), []byte("/orders?id=7"), late, window); !errors.Is(err, ErrSignatureStale) {
		t.Fatalf("VerifySigned %v after: %v, want stale (else forgetting it would let it through)", window+time.Second, err)
	}
	c.Use(sigAt(t, "/x", late), late) // sweeps
	if n := c.Len(); n != 2 {
		t.Errorf("%d remembered after the first window ended, want 2 (the id=8 one is gone too, the later id=7 one and /x stay)", n)
	}
}

// A signature dated ahead of the clock (within the window) is kept until its
// own window ends, not the clock's.
func TestSeenSignaturesFutureTime(t *testing.T) {
	const window = 10 * time.Second
	t0 := time.Unix(1_800_000_000, 0)
	c := NewSeenSignatures(window, 10)
	s := sigAt(t, "/", t0.Add(window)) // the client's clock is 10 s ahead
	if err := c.Use(s, t0); err != nil {
		t.Fatal(err)
	}
	if err := c.Use(s, t0.Add(2*window)); !errors.Is(err, ErrSignatureReplayed) {
		t.Fatalf("replayed 20 s later, still within its own window: %v", err)
	}
}

// Full, it refuses new signatures instead of forgetting one that could then
// be replayed, and takes them again once the old ones' window is over.
func TestSeenSignaturesFullRefuses(t *testing.T) {
	const window = 5 * time.Second
	t0 := time.Unix(1_800_000_000, 0)
	c := NewSeenSignatures(window, 3)
	var first Signature
	for i, p := range []string{"/a", "/b", "/c"} {
		s := sigAt(t, p, t0)
		if i == 0 {
			first = s
		}
		if err := c.Use(s, t0); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Use(sigAt(t, "/d", t0), t0); !errors.Is(err, ErrSeenFull) {
		t.Fatalf("a fourth signature with room for 3: %v, want ErrSeenFull", err)
	}
	if err := c.Use(first, t0.Add(time.Second)); !errors.Is(err, ErrSignatureReplayed) {
		t.Fatalf("a replay while full: %v, want ErrSignatureReplayed (not forgotten)", err)
	}
	if got := c.RetryAfter(t0.Add(time.Second)); got != window {
		t.Errorf("RetryAfter 1 s in: %v, want %v (the oldest is forgotten at t0+%v+1s)", got, window, window)
	}
	later := t0.Add(window + time.Second)
	if err := c.Use(sigAt(t, "/d", later), later); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if n := c.Len(); n != 1 {
		t.Errorf("%d remembered, want 1", n)
	}
}

// The clock going back forgets nothing.
func TestSeenSignaturesClockBack(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	c := NewSeenSignatures(time.Minute, 10)
	s := sigAt(t, "/", t0)
	c.Use(s, t0)
	if err := c.Use(s, t0.Add(-time.Hour)); !errors.Is(err, ErrSignatureReplayed) {
		t.Fatalf("replay with the clock an hour back: %v", err)
	}
}

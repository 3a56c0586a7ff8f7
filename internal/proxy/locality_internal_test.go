package proxy

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// TestPreferLocal: a fleet proxy sends every try to its own host's
// instances while one is in rotation, retries on another local one first,
// and uses the other hosts' instances only when no local one can take it
// (not ready, ejected, or already tried).
func TestPreferLocal(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	two, ratio, floor := 2, 1.0, 100.0
	cfg := config.Proxy{Listen: "127.0.0.1:0", Retries: config.ProxyRetries{Max: &two, Budget: &ratio, MinPerSecond: &floor}}
	cfg.SetDefaults()
	d := NewDecision(cfg)
	d.Set("web/0", "127.0.0.1:1", true)
	d.Set("web/1", "127.0.0.1:2", true)
	d.SetRemote("h2/web/0", "10.0.0.2:1", true)
	d.SetRemote("h2/web/1", "10.0.0.2:2", true)
	get := Traits{Idempotent: true, Replayable: true, Untouched: true}
	picks := map[string]int{}
	for range 200 {
		p := d.First(t0)
		picks[p.Instance()]++
		d.Done(p.backend)
	}
	if picks["h2/web/0"]+picks["h2/web/1"] != 0 || picks["web/0"] == 0 || picks["web/1"] == 0 {
		t.Fatalf("with both local instances in rotation: picks %v", picks)
	}
	// A failed try is retried on the other local instance, then remotely.
	first := d.First(t0)
	r := d.Retry(t0, OutcomeConnect, 0, get, 1, []*backend{first.backend})
	if r.Next.backend == nil || r.Next.backend.remote || r.Next.backend == first.backend {
		t.Fatalf("first retry after %s went to %q, want the other local one", first.Instance(), r.Next.Instance())
	}
	r2 := d.Retry(t0, OutcomeConnect, 0, get, 2, []*backend{first.backend, r.Next.backend})
	if r2.Next.backend == nil || !r2.Next.backend.remote {
		t.Fatalf("second retry went to %q, want a remote one", r2.Next.Instance())
	}
	d.Done(first.backend)
	d.Done(r.Next.backend)
	d.Done(r2.Next.backend)
	// No local instance ready: the remote ones take every try.
	d.Set("web/0", "127.0.0.1:1", false)
	d.Set("web/1", "127.0.0.1:2", false)
	for range 20 {
		p := d.First(t0)
		if p.backend == nil || !p.backend.remote {
			t.Fatalf("with no local instance ready the pick is %q", p.Instance())
		}
		d.Done(p.backend)
	}
	// One local back: it gets every try again.
	d.Set("web/1", "127.0.0.1:2", true)
	for range 20 {
		p := d.First(t0)
		if p.Instance() != "web/1" {
			t.Fatalf("with web/1 back the pick is %q", p.Instance())
		}
		d.Done(p.backend)
	}
}

package app

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/medic-dev/medic/internal/discovery"
	"github.com/medic-dev/medic/internal/pmap"
)

// TestFollowAgainstRebuild applies a random sequence of publications put
// and removed (and a Reset now and then: a fresh read after a lost watch)
// to follow, which touches only the hosts that changed, and compares its
// ready counts, remote backends and peers after every delivery with what
// the whole set of publications gives (peers: the last non-empty set; no
// remote backend while a drill runs, all of them back when it ends).
func TestFollowAgainstRebuild(t *testing.T) {
	const self = "h0"
	fs := &fleetServices{m: &Main{traffic: &traffic{}}, ready: map[string]map[string]int{}, remote: map[string]map[string][]string{},
		peers: map[string]map[string][]string{}, peersStale: map[string]bool{}, pubs: map[string]pmap.Map[discovery.Publication]{}, self: self}
	r := rand.New(rand.NewPCG(7, 8))
	var all pmap.Map[discovery.Publication]
	var lastPeers []string
	for step := range 2000 {
		if step == 600 { // the end of the drill alone gives the backends back
			fs.setDrill("")
			if got, want := ids(fs), remoteIDs(all, self); !slices.Equal(got, want) {
				t.Fatalf("after the drill: remote backends %v, want %v", got, want)
			}
		}
		u := discovery.Update{}
		if step == 0 || r.IntN(40) == 0 {
			for range r.IntN(3) {
				all = all.Delete(fmt.Sprintf("h%d", r.IntN(8)))
			}
			u.Reset = true
		} else {
			for range 1 + r.IntN(2) {
				h := fmt.Sprintf("h%d", r.IntN(8))
				if r.IntN(3) == 0 {
					all = all.Delete(h)
				} else {
					p := discovery.Publication{Host: h}
					for i := range r.IntN(3) {
						p.Instances = append(p.Instances, discovery.Instance{ID: fmt.Sprintf("web/%d", i),
							Addr: fmt.Sprintf("%s:%d", h, 8000+i), Ready: r.IntN(2) == 0})
					}
					all = all.Set(h, p)
				}
				u.Changed = append(u.Changed, h)
			}
			slices.Sort(u.Changed)
			u.Changed = slices.Compact(u.Changed)
		}
		u.All = all
		if step == 500 { // a drill: the proxy sends to no peer until it ends
			fs.setDrill("host-partition")
		}
		drilled := step >= 500 && step < 600
		fs.follow("web", self, u)

		wantReady := map[string]int{}
		var wantIDs, peers []string
		for h, p := range all.All() {
			wantReady[h] = p.Ready()
			if h == self {
				continue
			}
			for _, in := range p.Instances {
				if !drilled {
					wantIDs = append(wantIDs, discovery.Remote(h, in.ID))
				}
				peers = append(peers, in.Addr)
			}
		}
		if len(peers) > 0 {
			lastPeers = peers
		}
		if got := fs.readyOf("web"); !maps.Equal(got, wantReady) {
			t.Fatalf("step %d: ready %v, want %v", step, got, wantReady)
		}
		gotIDs := ids(fs)
		var gotPeers []string
		for _, a := range fs.peers["web"] {
			gotPeers = append(gotPeers, a...)
		}
		slices.Sort(wantIDs)
		slices.Sort(gotPeers)
		slices.Sort(lastPeers)
		if !slices.Equal(gotIDs, wantIDs) {
			t.Fatalf("step %d: remote backends %v, want %v", step, gotIDs, wantIDs)
		}
		if !slices.Equal(gotPeers, lastPeers) {
			t.Fatalf("step %d: peers %v, want %v", step, gotPeers, lastPeers)
		}
	}
}

func ids(fs *fleetServices) []string {
	var out []string
	for _, ids := range fs.remote["web"] {
		out = append(out, ids...)
	}
	slices.Sort(out)
	return out
}

func remoteIDs(all pmap.Map[discovery.Publication], self string) []string {
	var out []string
	for h, p := range all.All() {
		for _, in := range p.Instances {
			if h != self {
				out = append(out, discovery.Remote(h, in.ID))
			}
		}
	}
	slices.Sort(out)
	return out
}

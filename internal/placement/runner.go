package placement

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/etcd"
)

// Key is where a fleet service's assignment lives in etcd (no lease: the
// desired state outlives every agent).
func Key(prefix, fleet, service string) string {
	return prefix + "/fleet/" + fleet + "/placement/" + service
}

// Record is the assignment as stored in etcd.
type Record struct {
	Assign Assignment `json:"assign"`
	Why    string     `json:"why"`
	By     string     `json:"by"` // the host that wrote it
	At     time.Time  `json:"at"`
}

// View is what the runner needs of the membership, read locally.
type View struct {
	Hosts []Host
	// Coordinator: this host writes the assignment: it is joined (its lease
	// is within its safe time) and it is the first up host by name in its
	// own view. Every other host only follows.
	Coordinator bool
	// Fence, when set, is the coordinator's membership: its key (MemberKey)
	// must still be held under Lease in etcd for a write of the assignment
	// to succeed. A host whose lease expired while its local clock still
	// counted it joined (a pause, a cut it has not yet noticed) writes
	// nothing: the write and the membership are checked in one transaction.
	MemberKey string
	Lease     int64
}

// Runner keeps one fleet service placed: every host follows the assignment
// in etcd (a watch) and runs its share; the coordinator computes Next and
// writes it with a compare-and-swap on the key's revision, so that two
// hosts that both believe they coordinate never overwrite each other's
// step.
type Runner struct {
	Spec Spec
	// SpecNow, when set, is asked for the spec at every evaluation instead
	// of Spec: a reload that changes services.X.fleet takes effect at once.
	SpecNow func() Spec
	Service string
	Self    string
	Key     string
	Etcd    *etcd.Client
	View    func() View
	Ready   func() map[string]int // ready instances by host (discovery)
	// Apply makes this host run n instances (n ≥ 0); called when its share
	// changes, and again every Period while it fails.
	Apply func(ctx context.Context, n int) error
	// Changed is called (outside any lock) with each assignment this host wrote.
	Changed func(ctx context.Context, prev, next Assignment, st Step)
	Period  time.Duration // how often the coordinator evaluates (local state only); default 250ms
	Clock   clock.Clock
	Logger  *slog.Logger
}

// Run keeps the service placed until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	clk := clock.Or(r.Clock)
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	period := r.Period
	if period <= 0 {
		period = 250 * time.Millisecond
	}
	type cur struct {
		rec Record
		rev int64 // mod revision; 0: absent
		ok  bool  // read at least once
	}
	latest := make(chan cur, 1)
	// The watch of the key (its prefix holds other services' keys too, such
	// as web2 beside web: only r.Key's own changes are parsed and sent).
	go r.Etcd.WatchChanges(ctx, r.Key, clk, func(u etcd.Update) {
		var kv etcd.KV
		found := false
		if u.Reset {
			kv, found = u.KVs[r.Key]
		} else {
			mine := false
			for _, ch := range u.Changes {
				if ch.Key == r.Key {
					mine, kv, found = true, ch.KV, !ch.Deleted
				}
			}
			if !mine {
				return
			}
		}
		c := cur{ok: true}
		if found {
			if err := json.Unmarshal(kv.Value, &c.rec); err != nil {
				log.Warn("placement: the stored assignment is not valid; treating it as empty", "key", r.Key, "err", err)
			}
			c.rev = kv.ModRev
		}
		select {
		case <-latest:
		default:
		}
		latest <- c
	})
	var state cur
	applied := -1
	for {
		t := clk.NewTimer(period)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case c := <-latest:
			state = c
		case <-t.C():
		}
		t.Stop()
		if !state.ok {
			continue
		}
		if share, ok := state.rec.Assign[r.Self]; state.rev != 0 && (ok || state.rec.Assign != nil) && share != applied {
			if err := r.Apply(ctx, share); err != nil {
				if ctx.Err() == nil {
					log.Warn("placement: cannot run this host's share", "service", r.Service, "share", share, "err", err)
				}
			} else {
				applied = share
			}
		}
		v := r.View()
		if !v.Coordinator {
			continue
		}
		spec := r.Spec
		if r.SpecNow != nil {
			spec = r.SpecNow()
		}
		st := Next(spec, v.Hosts, state.rec.Assign, r.Ready())
		if !st.Changed {
			continue
		}
		rec := Record{Assign: st.Assign, Why: st.Why, By: r.Self, At: clk.Now()}
		b, err := json.Marshal(rec)
		if err != nil {
			panic(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := r.Etcd.Raw().Txn(wctx).
			If(fence(r.Key, state.rev, v)...).
			Then(clientv3.OpPut(r.Key, string(b))).Commit()
		cancel()
		switch {
		case err != nil:
			if ctx.Err() == nil {
				log.Warn("placement: cannot write the assignment", "service", r.Service, "err", err)
			}
		case resp.Succeeded:
			prev := state.rec.Assign
			// The watch delivers the new revision; until then, do not write again.
			state.rec, state.rev = rec, resp.Header.Revision
			if r.Changed != nil {
				r.Changed(ctx, prev, rec.Assign, st)
			}
		}
	}
}

// fence is what a write of the assignment at key requires: the key still at
// rev (no other coordinator wrote meanwhile) and, when v names it, the
// coordinator's membership key held under its lease.
func fence(key string, rev int64, v View) []clientv3.Cmp {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)}
	if v.MemberKey != "" {
		cmps = append(cmps, clientv3.Compare(clientv3.LeaseValue(v.MemberKey), "=", v.Lease))
	}
	return cmps
}

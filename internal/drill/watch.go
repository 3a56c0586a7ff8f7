package drill

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/events"
	"github.com/medic-dev/medic/internal/proxy"
)

// maxTimeline bounds a drill's timeline; a drill that produces more events
// than this is flooding, and the report says it was cut.
const maxTimeline = 20000

// relevant keeps the events about the drilled service, its dependency, the
// drill itself, and the remediation and database components; for a fleet
// drill, the fleet's events too (the hosts' states, the storm brake).
func relevant(o Observation, s Subject, actor string) bool {
	return belongs(o.Target, s.Service) || belongs(o.Target, s.Dependency) || o.Actor == actor ||
		strings.HasPrefix(o.Kind, "remedy.") || strings.HasPrefix(o.Kind, "db.") ||
		s.Host != "" && strings.HasPrefix(o.Kind, "fleet.")
}

func fromEvent(ev medic.Event) Observation {
	return Observation{Time: ev.Time, Kind: string(ev.Kind), Target: ev.Target, Actor: ev.Actor, Reason: ev.Reason, Fields: ev.Fields}
}

func fromRecord(r audit.Record) Observation {
	return Observation{Time: r.Time, Seq: r.Seq, Kind: r.Kind, Target: r.Target, Actor: r.Actor, Reason: r.Reason, Fields: r.Fields}
}

// watcher builds the live timeline from the event stream and from polling
// the supervisor and proxies; kick wakes whoever waits on it.
type watcher struct {
	d       *Deps
	sub     *events.Sub
	subject Subject
	actor   string

	mu   sync.Mutex
	obs  []Observation
	cut  int
	prev snapshot
	use  usage
	kick chan struct{}
}

func newWatcher(d *Deps, s Subject, actor string) *watcher {
	w := &watcher{d: d, subject: s, actor: actor, use: usage{}, kick: make(chan struct{}, 1)}
	// Subscribe before anything happens, so no event falls between.
	w.sub, _ = d.Events.Subscribe(4096)
	w.poll(d.Clock.Now())
	return w
}

// serve runs until ctx ends, then closes the subscription.
func (w *watcher) serve(ctx context.Context) {
	defer w.sub.Close()
	t := w.d.Clock.NewTimer(w.d.PollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-w.sub.C:
			if o := fromEvent(ev); relevant(o, w.subject, w.actor) {
				w.add(o)
				// An event often moves traffic (readiness, a stop): look at
				// once rather than up to one poll period later.
				w.poll(w.d.Clock.Now())
			}
		case <-t.C():
			w.poll(w.d.Clock.Now())
			t.Reset(w.d.PollEvery)
		}
	}
}

func (w *watcher) poll(now time.Time) {
	sn := takeSnapshot(w.d.Sup.Status(), stats(w.d.Traffic), w.subject.Service, w.subject.Dependency)
	w.mu.Lock()
	obs := append(changes(w.prev, sn, now), w.use.observe(sn, now)...)
	w.prev = sn
	w.mu.Unlock()
	for _, o := range obs {
		w.add(o)
	}
}

func stats(t Traffic) []proxy.Stats {
	if t == nil {
		return nil
	}
	return t.Stats()
}

func (w *watcher) add(o Observation) {
	w.mu.Lock()
	if len(w.obs) < maxTimeline {
		w.obs = append(w.obs, o)
	} else {
		w.cut++
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// timeline returns the observations so far, in time order.
func (w *watcher) timeline() []Observation {
	w.mu.Lock()
	out := append([]Observation(nil), w.obs...)
	w.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// receiving reports whether the proxy has been sending instance id requests
// lately (not avoided).
func (w *watcher) receiving(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	u := w.use[id]
	return u != nil && !u.avoided && u.req > 0
}

// full reports whether the drilled service is at full capacity now.
func (w *watcher) full() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.prev.full[w.subject.Service] == ""
}

// durable rebuilds the timeline from the audit log (every record after
// afterSeq that concerns the drill) plus the drill's own observations, so
// that each event carries its sequence number. On error it returns the live
// timeline and the error.
func (w *watcher) durable(ctx context.Context, afterSeq int64) ([]Observation, error) {
	live := w.timeline()
	if w.d.Audit == nil {
		return live, nil
	}
	recs, err := w.d.Audit.List(ctx, audit.Filter{AfterSeq: afterSeq, Limit: maxTimeline})
	if err != nil {
		return live, err
	}
	var out []Observation
	for _, r := range recs {
		if o := fromRecord(r); relevant(o, w.subject, w.actor) {
			out = append(out, o)
		}
	}
	for _, o := range live {
		if strings.HasPrefix(o.Kind, "observed.") {
			out = append(out, o)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

package drill

import (
	"fmt"
	"sort"
	"time"

	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/supervise"
)

// rotation is one instance as traffic sees it.
type rotation struct {
	in       bool
	why      string // why it is out: "not ready", "ejected (breaker open)", "draining"
	service  string
	requests uint64 // tries the proxy sent it so far (0 without a proxy)
	failures uint64 // of which failed (connect, reset, timeout, 5xx)
}

// snapshot is the polled state of the watched services.
type snapshot struct {
	instances map[string]rotation // by instance id
	full      map[string]string   // by service: "" when at full capacity, else why not
	requests  map[string]uint64   // by service: client requests the proxy took so far
	// refused counts each client class's refusals (429 and 503), by classKey;
	// refusing marks the classes whose count grew since the snapshot before.
	refused  map[classKey]uint64
	refusing map[classKey]bool
}

type classKey struct{ service, class string }

// takeSnapshot reads the watched services' instances: in rotation per the
// service's proxy when it has one, else per readiness.
func takeSnapshot(services []supervise.ServiceStatus, proxies []proxy.Stats, watch ...string) snapshot {
	sn := snapshot{instances: map[string]rotation{}, full: map[string]string{}, requests: map[string]uint64{},
		refused: map[classKey]uint64{}, refusing: map[classKey]bool{}}
	byService := map[string]*proxy.Stats{}
	for i := range proxies {
		byService[proxies[i].Service] = &proxies[i]
	}
	for _, st := range services {
		if !contains(watch, st.Name) {
			continue
		}
		px := byService[st.Name]
		if px != nil {
			sn.requests[st.Name] = px.Requests
			for _, c := range px.Classes {
				sn.refused[classKey{st.Name, c.Name}] = c.Shed + c.RateLimited
			}
		}
		in := 0
		for _, is := range st.Instances {
			r := rotation{in: is.Ready}
			if !is.Ready {
				r.why = "not ready (" + is.State.String() + ")"
			}
			if px != nil && is.Ready {
				r = rotation{why: "not in the proxy's pool"}
				for _, ps := range px.Instances {
					if ps.ID != is.ID {
						continue
					}
					r.in, r.requests, r.failures = ps.InRotation, ps.Requests, ps.Errors
					switch {
					case ps.InRotation:
						r.why = ""
					case ps.Draining:
						r.why = "draining"
					case ps.Breaker == proxy.Open:
						r.why = "ejected by the proxy (breaker open)"
					default:
						r.why = "not ready in the proxy"
					}
				}
			}
			r.service = st.Name
			if r.in {
				in++
			}
			sn.instances[is.ID] = r
		}
		if in < st.Desired {
			sn.full[st.Name] = fmt.Sprintf("%d of %d instances in rotation", in, st.Desired)
		} else {
			sn.full[st.Name] = ""
		}
	}
	return sn
}

// changes returns the observations between two snapshots, in a stable order.
// The first snapshot of a drill is the baseline: compared with an empty one,
// it reports nothing.
func changes(prev, next snapshot, now time.Time) []Observation {
	var out []Observation
	if prev.instances == nil {
		return nil
	}
	ids := make([]string, 0, len(next.instances))
	for id := range next.instances {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		r := next.instances[id]
		was, known := prev.instances[id]
		if known && was.in == r.in {
			continue
		}
		if !known && r.in {
			continue // a new instance joining is reported by capacity
		}
		if r.in {
			out = append(out, Observation{Time: now, Kind: ObservedIn, Target: id, Reason: "back in rotation"})
		} else {
			out = append(out, Observation{Time: now, Kind: ObservedOut, Target: id, Reason: r.why})
		}
	}
	svcs := make([]string, 0, len(next.full))
	for s := range next.full {
		svcs = append(svcs, s)
	}
	sort.Strings(svcs)
	for _, s := range svcs {
		why, was := next.full[s], prev.full[s]
		switch {
		case why == "" && was != "":
			out = append(out, Observation{Time: now, Kind: ObservedFull, Target: s, Reason: "every instance ready and in rotation"})
		case why != "" && was == "":
			out = append(out, Observation{Time: now, Kind: ObservedDegraded, Target: s, Reason: why})
		}
	}
	keys := make([]classKey, 0, len(next.refused))
	for k := range next.refused {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].service < keys[j].service || keys[i].service == keys[j].service && keys[i].class < keys[j].class
	})
	for _, k := range keys {
		was, known := prev.refused[k]
		n := next.refused[k]
		if !known || n <= was {
			continue
		}
		next.refusing[k] = true
		if !prev.refusing[k] { // the edge: it was not refused at the poll before
			out = append(out, Observation{Time: now, Kind: ObservedClassRefused, Target: k.service, Fields: map[string]string{"class": k.class},
				Reason: fmt.Sprintf("the proxy refuses client class %s (%d requests since the last look)", k.class, n-was)})
		}
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x && x != "" {
			return true
		}
	}
	return false
}

// Thresholds of "avoided": the balancer sends an in-rotation instance no
// request for avoidAfter while the service takes at least avoidMin.
const (
	avoidAfter = time.Second
	avoidMin   = 20
)

// failQuiet separates failing episodes: failed tries after this long without
// any make a new observed.failing.
const failQuiet = 2 * time.Second

// use follows one instance's share of the traffic and its failed tries.
type use struct {
	req, svc uint64    // its tries and the service's requests when it was last used
	at       time.Time // when it was last used
	avoided  bool
	fails    uint64    // failed tries seen
	failAt   time.Time // when they last grew
}

// usage notices the balancer steering around an instance without ejecting
// it: power-of-two-choices never picks the slowest of three instances, so a
// slow or failing instance can lose its traffic before any breaker opens.
// That is the proxy reacting, and the drill reports it as observed.avoided
// (and observed.used when traffic returns).
type usage map[string]*use

func (u usage) observe(sn snapshot, now time.Time) []Observation {
	var out []Observation
	ids := make([]string, 0, len(sn.instances))
	for id := range sn.instances {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		r := sn.instances[id]
		svc, ok := sn.requests[r.service]
		if !ok {
			continue // no proxy: nothing to steer
		}
		x := u[id]
		if x == nil || r.requests < x.req || r.failures < x.fails { // new, or its counters restarted
			u[id] = &use{req: r.requests, svc: svc, at: now, fails: r.failures}
			continue
		}
		if r.failures > x.fails {
			if now.Sub(x.failAt) >= failQuiet {
				out = append(out, Observation{Time: now, Kind: ObservedFailing, Target: id,
					Reason: fmt.Sprintf("the proxy counted %d failed tries (of %d)", r.failures-x.fails, r.requests-x.req)})
			}
			x.fails, x.failAt = r.failures, now
		}
		if r.requests > x.req || !r.in {
			if x.avoided && r.requests > x.req {
				out = append(out, Observation{Time: now, Kind: ObservedUsed, Target: id, Reason: "the proxy sends it requests again"})
			}
			x.req, x.svc, x.at, x.avoided = r.requests, svc, now, false
			continue
		}
		if !x.avoided && now.Sub(x.at) >= avoidAfter && svc-x.svc >= avoidMin {
			x.avoided = true
			out = append(out, Observation{Time: now, Kind: ObservedAvoided, Target: id,
				Reason: fmt.Sprintf("in rotation, but the proxy sent it none of the last %d requests (%v)", svc-x.svc, now.Sub(x.at).Round(10*time.Millisecond))})
		}
	}
	return out
}

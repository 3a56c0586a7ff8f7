package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/audit"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/fleetview"
	"github.com/medic-dev/medic/internal/ui/scorecard"
)

func init() { register(37, "fleet view", buildFleetView) }

// scorecardEvery is how often the summary's scorecard answers are evaluated
// again (they read the recorded drills from the store).
const scorecardEvery = 30 * time.Second

// buildFleetView publishes this host's summary for the fleet's one view,
// follows every host's, anchors this host's audit head in etcd, and serves
// /v1/fleet/status, /v1/fleet/events, /v1/fleet/scorecard and
// /v1/fleet/audit/anchors (docs/fleet.md, One view).
func buildFleetView(m *Main) (*component, error) {
	if m.cfg.Fleet == nil || m.fleetAgent == nil {
		return nil, nil
	}
	cli, err := dialEtcd(m, m.fleetCut)
	if err != nil {
		return nil, err
	}
	f := *m.cfg.Fleet
	f.SetDefaults()
	a, self := m.fleetAgent, m.fleetHost
	apiURL := fleetAPI(m.cfg.API.Listen, f.Address)
	sums := fleetview.SummariesPrefix(m.cfg.Etcd.Prefix, f.Name)
	anchors := fleetview.AnchorsPrefix(m.cfg.Etcd.Prefix, f.Name)
	var cur atomic.Pointer[config.Config]
	cur.Store(m.cfg)
	m.onReload(func(_ context.Context, cfg *config.Config) error { cur.Store(cfg); return nil })
	cache := &fleetview.Cache{}

	var cardMu sync.Mutex
	var card []fleetview.Answer
	var cardAt time.Time
	answers := func(ctx context.Context) []fleetview.Answer {
		cardMu.Lock()
		defer cardMu.Unlock()
		now := m.Clock.Now()
		if card != nil && now.Sub(cardAt) < scorecardEvery {
			return card
		}
		in, err := m.scorecardInput(ctx, cur.Load())
		if err != nil {
			return card // unknown until it can be read
		}
		c := scorecard.Evaluate(in, now)
		out := make([]fleetview.Answer, 0, len(c.Items))
		for _, it := range c.Items {
			why := ""
			for _, s := range it.Subjects {
				if s.Answer == it.Answer && len(s.Evidence) > 0 {
					why = s.Name + ": " + s.Evidence[0]
					break
				}
			}
			out = append(out, fleetview.Answer{ID: it.ID, Answer: string(it.Answer), Why: why})
		}
		card, cardAt = out, now
		return card
	}
	build := func(ctx context.Context) fleetview.Summary {
		s := fleetview.Summary{Host: self, API: apiURL, Audit: m.audit.Head(), Scorecard: answers(ctx)}
		cfg := cur.Load()
		for _, st := range m.sup.Status() {
			running := 0
			for _, in := range st.Instances {
				if in.PID != 0 {
					running++
				}
			}
			sc := cfg.Services[st.Name]
			s.Services = append(s.Services, fleetview.Service{Name: st.Name, Desired: st.Desired, Running: running,
				Ready: st.Ready, Fleet: sc != nil && sc.Fleet != nil})
		}
		hist := m.hub.History()
		if len(hist) > fleetview.MaxEvents {
			hist = hist[len(hist)-fleetview.MaxEvents:]
		}
		for _, ev := range hist {
			s.Events = append(s.Events, fleetview.Event{Time: ev.Time, Kind: string(ev.Kind), Target: ev.Target, Actor: ev.Actor, Reason: ev.Reason})
		}
		return s
	}
	pub := &fleetview.Publisher{Etcd: cli, Key: sums + "/" + self, Lease: a.Lease, Build: build,
		Clock: m.Clock, Logger: m.Logger.With("component", "fleet")}
	an := &fleetview.Anchorer{Etcd: cli, Key: anchors + "/" + self, Host: self, API: apiURL, Head: m.audit.Head,
		At: m.audit.At, Clock: m.Clock, Logger: m.Logger.With("component", "fleet"),
		Refused: func(ctx context.Context, err error) {
			m.Record(ctx, medic.Event{Kind: medic.EventAnchorRefused, Target: "audit", Actor: "fleet",
				Reason: err.Error() + "; the anchor in etcd is kept and this host's audit is no longer anchored"})
		}}
	status := func() fleetview.Status {
		s, watching := cache.Summaries()
		return fleetview.Combine(a.Status(), s, watching, m.Clock.Now())
	}
	return &component{
		serve: func(ctx context.Context) error {
			defer cli.Close()
			var wg sync.WaitGroup
			wg.Add(3)
			go func() { defer wg.Done(); pub.Run(ctx) }()
			go func() { defer wg.Done(); an.Run(ctx) }()
			go func() { defer wg.Done(); _ = cache.Follow(ctx, cli, sums, m.Clock, m.Logger) }()
			wg.Wait()
			return nil
		},
		mount: func(mux *http.ServeMux, g api.Guards) {
			mux.Handle("GET /v1/fleet/status", g.View(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				api.WriteJSON(w, http.StatusOK, status())
			})))
			mux.Handle("GET /v1/fleet/events", g.View(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				st := status()
				ev := st.Events()
				if ev == nil {
					ev = []fleetview.HostEvent{}
				}
				api.WriteJSON(w, http.StatusOK, map[string]any{"fleet": st.Fleet, "self": st.Self, "watching": st.Watching, "events": ev})
			})))
			mux.Handle("GET /v1/fleet/scorecard", g.View(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				api.WriteJSON(w, http.StatusOK, fleetview.FleetCard(status(), scorecard.IDs, m.Clock.Now()))
			})))
			// Unauthenticated on purpose, like the health endpoints: `medic
			// audit verify --fleet` reads every host's chain here without the
			// operator's token (an address read from etcd must never receive
			// it). Only seq and hashes, no content; rate limited.
			chainLimit := rate.NewLimiter(chainRate, chainBurst)
			mux.Handle("GET /v1/fleet/audit/chain", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				serveChain(w, r, m, self, chainLimit)
			}))
			mux.Handle("GET /v1/fleet/audit/anchors", g.View(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
				defer cancel()
				an, err := fleetview.ReadAnchors(ctx, cli, anchors)
				if err != nil {
					api.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
					return
				}
				api.WriteJSON(w, http.StatusOK, map[string]any{"fleet": f.Name, "self": self, "anchors": an,
					"hosts": a.Status().Hosts, "head": m.audit.Head()})
			})))
		},
	}, nil
}

// The chain endpoint's bounds: requests per second over all callers, its
// burst, and the most links per page (fleetview.PageRecords).
const (
	chainRate  = rate.Limit(5)
	chainBurst = 10
)

// serveChain answers GET /v1/fleet/audit/chain?after=N&limit=M: the links
// (seq, prev, stored hash, hash recomputed from the content) of the
// records after N, oldest first, at most M (default and most
// fleetview.PageRecords). 429 with Retry-After past chainRate.
func serveChain(w http.ResponseWriter, r *http.Request, m *Main, self string, lim *rate.Limiter) {
	if !lim.Allow() {
		w.Header().Set("Retry-After", "1")
		api.WriteJSON(w, http.StatusTooManyRequests, map[string]string{"error": fmt.Sprintf("at most %v chain pages a second (burst %d): retry after 1s", float64(chainRate), chainBurst)})
		return
	}
	q := r.URL.Query()
	after, limit := int64(0), fleetview.PageRecords
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			api.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("after %q: want a sequence number", v)})
			return
		}
		after = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > fleetview.PageRecords {
			api.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("limit %q: want 1 to %d", v, fleetview.PageRecords)})
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	recs, err := m.audit.List(ctx, audit.Filter{AfterSeq: after, Forward: true, Limit: limit})
	if err != nil {
		api.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "read the audit log: " + err.Error()})
		return
	}
	links := make([]fleetview.Link, 0, len(recs))
	for _, rec := range recs {
		links = append(links, fleetview.LinkOf(rec))
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"host": self, "links": links})
}

// fleetAPI is the base URL the other hosts reach this agent's API at: the
// listen address's port on the fleet address when the API listens on every
// address, the listen address when it names one. An API on loopback is
// reachable only from this machine: its URL is given only when the fleet
// address is loopback too (every "host" on one machine: tests, the demo);
// otherwise "" (the others cannot read this host's audit then).
func fleetAPI(listen, address string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	loopback := func(h string) bool {
		ip, err := netip.ParseAddr(h)
		return h == "localhost" || err == nil && ip.IsLoopback()
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case loopback(host) && !loopback(address):
		return ""
	case host == "" || err == nil && ip.IsUnspecified():
		host = address
	}
	if host == "" {
		return ""
	}
	return "http://" + net.JoinHostPort(host, port)
}

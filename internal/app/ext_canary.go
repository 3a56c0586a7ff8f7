package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/canary"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/drill"
	"github.com/medic-dev/medic/internal/proxy"
	"github.com/medic-dev/medic/internal/release"
	"github.com/medic-dev/medic/internal/signal"
	"github.com/medic-dev/medic/internal/supervise"
	"github.com/medic-dev/medic/internal/verdict"
)

func init() { register(5, "canary", buildCanary) }

// buildCanary routes the deploys of services whose strategy is canary
// through the canary runner: the release manager's supervisor is wrapped,
// so medic deploy and POST /v1/services/S/deploy start a canary beside the
// stable instances instead of a rolling replacement. Rollbacks and reloads
// stay rolling. It stops first among the components (order 5): a canary
// under way when medic stops is rolled back (traffic to stable, groups
// stopped) while the supervisor and the proxies still run.
func buildCanary(m *Main) (*component, error) {
	if m.releases == nil || m.sup == nil {
		return nil, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	cd := &canaryDeployer{
		inner: m.releases.Supervisor, // the supervisor, or the router of the other strategies
		runner: &canary.Runner{
			Groups:   canaryGroups{m.sup},
			Traffic:  canaryTraffic{m.traffic},
			Promoter: canaryPromoter{m.sup},
			Prober:   newCanaryProber(m.sup),
			Scraper:  newCanaryScraper(m.sup, m.Logger.Warn),
			Emit:     m.Record,
			Clock:    m.Clock,
		},
		ctx: ctx,
		current: func(service string) string {
			list, err := m.releases.List(context.Background(), service)
			if err != nil {
				return ""
			}
			for _, r := range list {
				if r.Outcome == release.Live {
					return r.Version
				}
			}
			return ""
		},
	}
	m.releases.Supervisor = cd
	m.canaries, m.canaryDeploys = cd.runner, cd
	serve := func(run context.Context) error {
		<-run.Done()
		cancel()
		cd.wg.Wait()
		return nil
	}
	return &component{serve: serve, mount: cd.mount}, nil
}

// canaryDeployer is release.Supervisor: a deploy of a canary service runs a
// canary, anything else the supervisor's rolling rollout.
type canaryDeployer struct {
	inner  release.Supervisor
	runner *canary.Runner
	ctx    context.Context // ends when medic stops: the canaries roll back
	wg     sync.WaitGroup
	// current is the version of the service's newest live release (the
	// label of the baseline when the spec carries none).
	current func(service string) string
}

func (c *canaryDeployer) Spec(service string) *config.Service { return c.inner.Spec(service) }

// CanaryConfig returns the canary settings of a service's deploy section.
func CanaryConfig(d *config.Deploy) canary.Config {
	return canary.Config{
		Steps: d.Steps, Instances: d.CanaryInstances, StepMinRequests: d.StepMinRequests,
		StepMaxDuration: d.StepMaxDuration.D(), ReadyTimeout: d.ReadyTimeout.D(), MaxRestarts: d.MaxRestarts,
		Approve: d.Trust == "propose", Verdict: canaryVerdict(d),
		Synthetic: canary.Synthetic{Path: syntheticPath(d.Synthetic), Rate: d.Synthetic.RateOrDefault()},
		Metrics:   canaryMetrics(d),
	}
}

// CanaryConfig's verdict carries the scraped counters (verdict.Counters)
// under the names the runner scrapes (canary.Config.Metrics).
func canaryMetrics(d *config.Deploy) []canary.Metric {
	var out []canary.Metric
	for _, m := range d.Metrics {
		out = append(out, canary.Metric{Name: m.Name, Path: m.PathOrDefault()})
	}
	return out
}

// Bounds of one scrape of a canary or baseline instance's counters.
const (
	canaryScrapeTimeout = time.Second
	canaryScrapeMaxBody = 1 << 20
)

// canaryScraper is canary.Scraper: a GET of the metrics path on each of the
// group's ready instances (canaryScrapeTimeout, canaryScrapeMaxBody), the
// named families' series summed per instance.
type canaryScraper struct {
	s      *supervise.Supervisor
	client *http.Client
	log    func(msg string, args ...any)
}

func newCanaryScraper(s *supervise.Supervisor, log func(string, ...any)) *canaryScraper {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
	return &canaryScraper{s: s, log: log, client: &http.Client{Transport: tr, Timeout: canaryScrapeTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *canaryScraper) Scrape(ctx context.Context, service, group, path string, names []string) []canary.InstanceCounters {
	var out []canary.InstanceCounters
	for _, in := range c.s.GroupInstances(service, group) {
		if !in.Ready || in.Port <= 0 {
			continue
		}
		vals, err := c.one(ctx, in.Port, path, names)
		if err != nil {
			c.log("canary: scrape of an instance's counters failed", "instance", in.ID, "path", path, "err", err)
			continue
		}
		out = append(out, canary.InstanceCounters{ID: in.ID, Values: vals})
	}
	return out
}

func (c *canaryScraper) one(ctx context.Context, port int, path string, names []string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(port)+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "medic-canary-scrape")
	req.Header.Set("Accept", "text/plain")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	samples, err := signal.ParseText(io.LimitReader(resp.Body, canaryScrapeMaxBody+1), names, nil, canaryScrapeMaxBody)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	vals := map[string]float64{}
	for _, sm := range samples {
		if slices.Contains(names, sm.Name) {
			vals[sm.Name] += sm.V
		}
	}
	return vals, nil
}

func canaryVerdict(d *config.Deploy) verdict.Config {
	v := d.Verdict.VerdictConfig()
	v.Counters = d.VerdictCounters()
	return v
}

func syntheticPath(s *config.DeploySynthetic) string {
	if s == nil {
		return ""
	}
	return s.Path
}

// canaryProber is canary.Prober: a GET straight to one of the group's ready
// instances (round robin), timed to the response headers like the proxy
// times a try, its body read to a bound and dropped.
type canaryProber struct {
	s      *supervise.Supervisor
	client *http.Client
	mu     sync.Mutex
	next   int
}

func newCanaryProber(s *supervise.Supervisor) *canaryProber {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second, DisableCompression: true}
	return &canaryProber{s: s, client: &http.Client{Transport: tr, Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (p *canaryProber) Get(ctx context.Context, service, group, path string) verdict.Outcome {
	var ports []int
	for _, in := range p.s.GroupInstances(service, group) {
		if in.Ready && in.Port > 0 {
			ports = append(ports, in.Port)
		}
	}
	if len(ports) == 0 {
		return verdict.Outcome{} // no ready instance: no response
	}
	p.mu.Lock()
	port := ports[p.next%len(ports)]
	p.next++
	p.mu.Unlock()
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(port)+path, nil)
	if err != nil {
		return verdict.Outcome{}
	}
	req.Header.Set("User-Agent", "medic-canary-synthetic")
	resp, err := p.client.Do(req)
	if err != nil {
		return verdict.Outcome{Latency: time.Since(start)}
	}
	lat := time.Since(start)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	return verdict.Outcome{Status: resp.StatusCode, Latency: lat}
}

// Deploy runs a canary when the new spec's strategy is canary and this is
// a deploy (not a rollback to a release); done gets nil when the canary was
// promoted, else the reason it was rolled back.
func (c *canaryDeployer) Deploy(ctx context.Context, service string, spec *config.Service, actor, why string, done func(error)) error {
	old := c.inner.Spec(service)
	if old == nil || spec.Deploy == nil || spec.Deploy.Strategy != config.StrategyCanary || strings.HasPrefix(why, "rollback") {
		return c.inner.Deploy(ctx, service, spec, actor, why, done)
	}
	if c.ctx.Err() != nil {
		return fmt.Errorf("deploy %s: medic is stopping", service)
	}
	if rep, ok := c.runner.Status(service); ok && rep.Outcome == "" {
		return fmt.Errorf("deploy %s: %w", service, canary.ErrRunning)
	}
	if old.Version == "" && c.current != nil {
		labelled := *old
		labelled.Version = c.current(service)
		old = &labelled
	}
	finished := make(chan struct{})
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(finished)
		rep, err := c.runner.Run(c.ctx, service, CanaryConfig(spec.Deploy), old, spec, actor)
		var res error
		switch {
		case rep.Outcome == "promoted" && err == nil:
		case rep.Outcome == "":
			res = fmt.Errorf("canary: %w", err)
		default:
			res = fmt.Errorf("canary %s: %s", rep.Outcome, rep.State.Reason)
			if err != nil {
				res = fmt.Errorf("%w (%v)", res, err)
			}
		}
		if done != nil {
			done(res)
		}
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("deploy %s: %w (%v)", service, supervise.ErrInProgress, ctx.Err())
	}
}

var _ release.Supervisor = (*canaryDeployer)(nil)

// mount adds the canary routes: its report, and the answer to a promotion
// that waits for an approval.
func (c *canaryDeployer) mount(mux *http.ServeMux, g api.Guards) {
	h := func(f http.HandlerFunc) http.Handler { return f }
	mux.Handle("GET /v1/services/{name}/canary", g.View(h(func(w http.ResponseWriter, r *http.Request) {
		rep, ok := c.runner.Status(r.PathValue("name"))
		if !ok {
			api.WriteError(w, http.StatusNotFound, "service %s: no canary since medic started", r.PathValue("name"))
			return
		}
		api.WriteJSON(w, http.StatusOK, newCanaryView(rep))
	})))
	// Every service's canary (running or last) in one document: the
	// dashboard's deploys panel reads it instead of asking each service
	// (a service without a canary would be a 404 per refresh).
	mux.Handle("GET /v1/canaries", g.View(h(func(w http.ResponseWriter, r *http.Request) {
		reps := c.runner.Reports()
		out := make([]canaryView, 0, len(reps))
		for _, rep := range reps {
			out = append(out, newCanaryView(rep))
		}
		api.WriteJSON(w, http.StatusOK, map[string]any{"canaries": out})
	})))
	answer := func(ok bool) http.Handler {
		return g.Operate(h(func(w http.ResponseWriter, r *http.Request) {
			var body struct{}
			if err := api.DecodeBody(r, &body); err != nil {
				api.WriteError(w, http.StatusBadRequest, "%v", err)
				return
			}
			if err := c.runner.Answer(r.PathValue("name"), api.ActorOf(r), ok); err != nil {
				api.WriteError(w, http.StatusConflict, "%v", err)
				return
			}
			rep, _ := c.runner.Status(r.PathValue("name"))
			api.WriteJSON(w, http.StatusOK, canaryView{Report: rep, Text: rep.Text()})
		}))
	}
	mux.Handle("POST /v1/services/{name}/canary/approve", answer(true))
	mux.Handle("POST /v1/services/{name}/canary/deny", answer(false))
}

func newCanaryView(rep canary.Report) canaryView {
	return canaryView{Report: rep, Text: rep.Text(),
		TimeToVerdictSeconds: rep.TimeToVerdict().Seconds(), TimeToRollbackSeconds: rep.TimeToRollback().Seconds()}
}

// canaryView is the API's answer about a canary.
type canaryView struct {
	canary.Report
	Text                  string  `json:"text"`
	TimeToVerdictSeconds  float64 `json:"time_to_verdict_seconds,omitempty"`
	TimeToRollbackSeconds float64 `json:"time_to_rollback_seconds,omitempty"`
}

// canaryGroups is canary.Groups on the supervisor.
type canaryGroups struct{ s *supervise.Supervisor }

func (g canaryGroups) StartGroup(ctx context.Context, service, group string, spec *config.Service, n int) error {
	return g.s.StartGroup(ctx, service, group, spec, n)
}

func (g canaryGroups) GroupStatus(service, group string) canary.GroupStatus {
	st := g.s.GroupStatus(service, group)
	return canary.GroupStatus{Want: st.Want, Ready: st.Ready, Restarts: st.Restarts}
}

func (g canaryGroups) StopGroup(ctx context.Context, service, group string) error {
	return g.s.StopGroup(ctx, service, group)
}

// canaryPromoter rolls the stable instances out with the supervisor's
// rolling rollout and waits for it.
type canaryPromoter struct{ s *supervise.Supervisor }

func (p canaryPromoter) Promote(ctx context.Context, service string, spec *config.Service, actor, why string) error {
	ended := make(chan error, 1)
	if err := p.s.Deploy(ctx, service, spec, actor, why, func(err error) { ended <- err }); err != nil && !errors.Is(err, supervise.ErrInProgress) {
		return err
	}
	select {
	case err := <-ended:
		return err
	case <-ctx.Done():
		return fmt.Errorf("promote %s: %w", service, ctx.Err())
	}
}

// canaryTraffic is canary.Traffic on the services' proxies.
type canaryTraffic struct{ t *traffic }

func (c canaryTraffic) SetWeights(service string, w map[string]int) error {
	p := c.t.get(service)
	if p == nil {
		return fmt.Errorf("service %s has no proxy", service)
	}
	if w == nil {
		p.ClearWeights()
		return nil
	}
	ws := proxy.Weights{Retry: canary.Stable}
	for _, g := range []string{canary.Stable, canary.Canary, canary.Baseline} {
		ws.Groups = append(ws.Groups, proxy.GroupWeight{Group: g, Weight: w[g]})
	}
	if w[canary.Stable] == 0 {
		ws.Retry = "" // the heaviest group: a retry goes where there is traffic
	}
	return p.SetWeights(ws)
}

// Cursor is the sequence number of the group's next try (its counters may
// hold a previous canary's tries).
func (c canaryTraffic) Cursor(service, group string) uint64 {
	if p := c.t.get(service); p != nil {
		for _, g := range p.GroupStats() {
			if g.Group == group {
				return g.Seq
			}
		}
	}
	return 0
}

// Outcomes reads the group's tries from cursor on.
func (c canaryTraffic) Outcomes(service, group string, cursor uint64) ([]verdict.Outcome, uint64) {
	p := c.t.get(service)
	if p == nil {
		return nil, cursor
	}
	got, next, _ := p.GroupOutcomes(nil, group, cursor)
	out := make([]verdict.Outcome, len(got))
	for i, o := range got {
		out[i] = verdict.Outcome{Status: o.Status, Latency: o.Latency}
	}
	return out, next
}

func (c canaryTraffic) Counts(service string) (uint64, uint64, bool) { return c.t.Counts(service) }

// Grouped implements supervise.GroupHooks: a group's instance joins its
// proxy group before it can become ready.
func (t *traffic) Grouped(id medic.InstanceID, group string) {
	if p := t.get(id.Service); p != nil {
		// The names are medic's own (canary, baseline, green) and at most a
		// few: SetGroup refuses only an empty or long name or a 17th group.
		_ = p.SetGroup(id.String(), group)
	}
}

// inject is the deploy drills' injector (kind "canary"): it deploys a bad
// release of the drilled service as a canary, on behalf of drill:<id>.
// Params: command (a shell command replacing the service's, "exit 3" for a
// crash loop), latency_factor (scales the value of the command's --latency,
// the demo service's), args (words appended to the command). Restore waits
// for the canary to end and, should the bad release have been promoted,
// rolls the service back to the release before it.
func (c *canaryDeployer) inject(m *Main) func(ctx context.Context, t *drill.Target) (drill.Restore, error) {
	return func(ctx context.Context, t *drill.Target) (drill.Restore, error) {
		spec := c.inner.Spec(t.Service)
		if spec == nil || spec.Deploy == nil || spec.Deploy.Strategy != config.StrategyCanary {
			return nil, fmt.Errorf("deploy drills need a service whose deploy.strategy is canary; %s's is not", t.Service)
		}
		argv := append([]string(nil), spec.Command...)
		if cmd := t.Params["command"]; cmd != "" {
			argv = []string{"/bin/sh", "-c", cmd}
		}
		if f := t.Params["latency_factor"]; f != "" {
			factor, err := strconv.ParseFloat(f, 64)
			if err != nil || factor <= 0 || factor > 100 {
				return nil, fmt.Errorf("latency_factor %q: want a number above 0", f)
			}
			i := slices.Index(argv, "--latency")
			if i < 0 || i+1 >= len(argv) {
				return nil, fmt.Errorf("deploy-slow-canary scales the command's --latency (the demo service's); %s's command has none", t.Service)
			}
			d, err := time.ParseDuration(argv[i+1])
			if err != nil {
				return nil, fmt.Errorf("the command's --latency %q: %v", argv[i+1], err)
			}
			argv[i+1] = time.Duration(float64(d) * factor).String()
		}
		argv = append(argv, strings.Fields(t.Params["args"])...)
		cmd, _ := json.Marshal(argv)
		actor := fmt.Sprintf("drill:%d", t.Drill)
		done := make(chan struct{})
		go func() {
			defer close(done)
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Minute)
			defer cancel()
			rel, err := m.releases.Deploy(dctx, t.Service, release.Changes{Version: fmt.Sprintf("drill-%d", t.Drill), Set: map[string]string{"command": string(cmd)}}, actor)
			if err == nil && rel.Outcome == release.Live {
				// The bad release passed: never leave it running after a drill.
				if _, err := m.releases.Rollback(dctx, t.Service, "", actor); err != nil {
					m.Logger.Error("deploy drill: the bad release was promoted and the rollback failed", "service", t.Service, "err", err)
				}
			}
		}()
		return func(rctx context.Context) error {
			select {
			case <-done:
				return nil
			case <-rctx.Done():
				return fmt.Errorf("the drill's canary of %s did not end: %w", t.Service, rctx.Err())
			}
		}, nil
	}
}

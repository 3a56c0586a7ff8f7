package signal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/medic-dev/medic/internal/clock"
)

// Defaults of Scraper.
const (
	DefaultScrapeTimeout = 5 * time.Second
	// DefaultMaxBody bounds what one scrape reads. Prometheus' own default is
	// unlimited; a service with a runaway label must not exhaust medic.
	DefaultMaxBody = 16 << 20
	// DefaultMaxSamples bounds the samples one scrape keeps.
	DefaultMaxSamples = 10_000
	// maxLine bounds one exposition line.
	maxLine = 64 << 10
)

// Scraper reads a service's Prometheus endpoint every period and keeps only
// the metric families named in Metrics, so that a service exposing ten
// thousand series costs medic the few its conditions use. It adds
// scrape_up and scrape_duration_seconds for every scrape.
type Scraper struct {
	URL     string        // http://127.0.0.1:PORT/metrics; required
	Metrics []string      // family names to keep (as in # TYPE lines); none keeps only scrape_up
	Labels  Labels        // target labels added to every sample: service, instance
	Period  time.Duration // default DefaultPeriod
	Timeout time.Duration // per scrape; default DefaultScrapeTimeout, at most Period
	MaxBody int64         // bytes read at most; default DefaultMaxBody
	Client  *http.Client  // default http.DefaultClient
	Clock   clock.Clock   // default clock.Real
	Store   Appender      // required
	Log     *slog.Logger  // default slog.Default

	missed   atomic.Int64
	failures atomic.Int64
	lastErr  atomic.Value // string
}

// Serve scrapes every period until ctx ends, then returns nil.
func (s *Scraper) Serve(ctx context.Context) error {
	period := s.Period
	if period <= 0 {
		period = DefaultPeriod
	}
	clk := clock.Or(s.Clock)
	every(ctx, clk, period, slot(s.URL, period),
		func(n int) { s.missed.Add(int64(n)) },
		func(now time.Time) { s.Step(ctx, now) })
	return nil
}

// Step scrapes once at now and adds the samples (and scrape_up) to the store.
func (s *Scraper) Step(ctx context.Context, now time.Time) {
	clk := clock.Or(s.Clock)
	samples, err := s.Scrape(ctx)
	took := clk.Now().Sub(now)
	up := 1.0
	if err != nil {
		up = 0
		s.failures.Add(1)
		if prev, _ := s.lastErr.Load().(string); prev != err.Error() {
			log := s.Log
			if log == nil {
				log = slog.Default()
			}
			log.Warn("scrape failed", "url", s.URL, "err", err)
		}
		s.lastErr.Store(err.Error())
	} else {
		s.lastErr.Store("")
	}
	for _, x := range samples {
		s.Store.Add(x.Name, x.Labels, now, x.V)
	}
	s.Store.Add(ScrapeUp, s.Labels, now, up)
	s.Store.Add(ScrapeDurationSeconds, s.Labels, now, took.Seconds())
}

// Scrape fetches and parses the endpoint once and returns the samples of
// the configured families, with T unset. Timestamps in the exposition are
// ignored: the samples belong to the time of the scrape.
func (s *Scraper) Scrape(ctx context.Context) ([]Sample, error) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultScrapeTimeout
	}
	if s.Period > 0 && timeout > s.Period {
		timeout = s.Period
	}
	ctx, cancel := context.WithCancelCause(ctx)
	t := clock.Or(s.Clock).AfterFunc(timeout, func() {
		cancel(fmt.Errorf("scrape timed out after %v", timeout))
	})
	defer t.Stop()
	defer cancel(nil)

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", s.URL, err)
	}
	// Ask for the text format: protobuf and OpenMetrics are not parsed here.
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		if c := context.Cause(ctx); c != nil && ctx.Err() != nil {
			err = c
		}
		return nil, fmt.Errorf("scrape %s: %w", s.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: status %s", s.URL, resp.Status)
	}
	maxBody := s.MaxBody
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	out, err := ParseText(io.LimitReader(resp.Body, maxBody+1), s.Metrics, s.Labels, maxBody)
	if err != nil {
		if c := context.Cause(ctx); c != nil && ctx.Err() != nil {
			err = c
		}
		return nil, fmt.Errorf("scrape %s: %w", s.URL, err)
	}
	return out, nil
}

// Failures returns how many scrapes failed.
func (s *Scraper) Failures() int64 { return s.failures.Load() }

// Missed returns how many periods were skipped because a scrape ran past them.
func (s *Scraper) Missed() int64 { return s.missed.Load() }

// ErrTooLarge is returned by ParseText for an exposition over its size limit.
var ErrTooLarge = errors.New("signal: exposition too large")

// ParseText parses the Prometheus text format from r, keeping only the
// families named in keep, and returns their samples with target labels
// added (an exposed label clashing with one is renamed exported_<name>).
// Reading more than maxBody bytes is an error (ErrTooLarge). Lines of other
// families are skipped before parsing, so they cost no memory.
func ParseText(r io.Reader, keep []string, target Labels, maxBody int64) ([]Sample, error) {
	want := make(map[string]bool, len(keep))
	for _, k := range keep {
		want[k] = true
	}
	if len(want) == 0 {
		_, err := io.Copy(io.Discard, r)
		return nil, err
	}
	var filtered bytes.Buffer
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	var read int64
	for sc.Scan() {
		line := sc.Bytes()
		if read += int64(len(line)) + 1; read > maxBody {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxBody)
		}
		if keepLine(line, want) {
			filtered.Write(line)
			filtered.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read exposition: %w", err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(&filtered)
	if err != nil {
		return nil, fmt.Errorf("parse exposition: %w", err)
	}
	var out []Sample
	for name, f := range fams {
		if want[name] {
			out = appendFamily(out, f, target)
		}
		if len(out) > DefaultMaxSamples {
			return nil, fmt.Errorf("%w: more than %d samples in the kept families", ErrTooLarge, DefaultMaxSamples)
		}
	}
	return out, nil
}

// keepLine reports whether a line of the exposition belongs to a wanted
// family: its # HELP or # TYPE line, or a sample named after the family
// (with _bucket, _sum or _count for histograms and summaries).
func keepLine(line []byte, want map[string]bool) bool {
	s := strings.TrimLeft(string(line), " \t")
	if rest, ok := strings.CutPrefix(s, "#"); ok {
		f := strings.Fields(rest)
		return len(f) >= 2 && (f[0] == "HELP" || f[0] == "TYPE") && want[f[1]]
	}
	end := strings.IndexAny(s, "{ \t")
	if end <= 0 {
		return false
	}
	name := s[:end]
	if want[name] {
		return true
	}
	for _, suf := range [...]string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok && want[base] {
			return true
		}
	}
	return false
}

func appendFamily(out []Sample, f *dto.MetricFamily, target Labels) []Sample {
	name := f.GetName()
	for _, m := range f.GetMetric() {
		l := make(Labels, len(m.GetLabel())+len(target))
		for _, lp := range m.GetLabel() {
			k := lp.GetName()
			if _, clash := target[k]; clash {
				k = "exported_" + k
			}
			l[k] = lp.GetValue()
		}
		for k, v := range target {
			l[k] = v
		}
		with := func(k, v string) Labels { return l.With(Labels{k: v}) }
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			out = append(out, Sample{Name: name, Labels: l, V: m.GetCounter().GetValue()})
		case dto.MetricType_GAUGE:
			out = append(out, Sample{Name: name, Labels: l, V: m.GetGauge().GetValue()})
		case dto.MetricType_UNTYPED:
			out = append(out, Sample{Name: name, Labels: l, V: m.GetUntyped().GetValue()})
		case dto.MetricType_SUMMARY:
			sm := m.GetSummary()
			for _, q := range sm.GetQuantile() {
				out = append(out, Sample{Name: name, Labels: with("quantile", formatFloat(q.GetQuantile())), V: q.GetValue()})
			}
			out = append(out,
				Sample{Name: name + "_sum", Labels: l, V: sm.GetSampleSum()},
				Sample{Name: name + "_count", Labels: l, V: float64(sm.GetSampleCount())})
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			h := m.GetHistogram()
			for _, b := range h.GetBucket() {
				out = append(out, Sample{Name: name + "_bucket", Labels: with("le", formatFloat(b.GetUpperBound())), V: float64(b.GetCumulativeCount())})
			}
			out = append(out,
				Sample{Name: name + "_sum", Labels: l, V: h.GetSampleSum()},
				Sample{Name: name + "_count", Labels: l, V: float64(h.GetSampleCount())})
		}
	}
	return out
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

package config

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/invopop/jsonschema"

	"github.com/medic-dev/medic"
)

// Condition turns a signal, an event or a pushed alert into alerts that go
// pending → firing → resolved, one per label set. A condition is exactly one
// kind, chosen by the keys it sets: a threshold (signal with above, below, or
// op and value), a trend (signal with trend), an anomaly (signal with
// anomaly), an event condition (event: the supervisor's events, such as
// instance.crashloop) or an alert condition (alert: alerts pushed by
// Alertmanager or the generic webhook). Thresholds, trends and anomalies are
// evaluated per series: each instance gets its own alert, carrying the
// series' labels. Numbers may carry a unit: 200MiB (bytes), 250ms (seconds).
type Condition struct {
	// Signal the condition watches, e.g. host_disk_used_percent (the signal names are listed in the docs).
	// Required for a threshold, trend or anomaly; not allowed for event and alert.
	Signal string `yaml:"signal" json:"signal,omitempty"`
	// Label matchers: a series (or event target) must carry each label with this value; an
	// empty value matches a series without the label. Event conditions take service and instance.
	Labels map[string]string `yaml:"labels" json:"labels,omitempty"`
	// Threshold: how the latest values of the matching series combine. each (default): every
	// series is its own alert. max, min, avg, sum, count: one alert per group of by, labelled with
	// the matchers and the by labels.
	Aggregate string `yaml:"aggregate" json:"aggregate,omitempty" jsonschema:"enum=each,enum=max,enum=min,enum=avg,enum=sum,enum=count"`
	// Threshold with an aggregate: label names that split the series into groups, as in PromQL's by.
	By []string `yaml:"by" json:"by,omitempty"`
	// Threshold: active while the value is above (>) this, e.g. 90, 200MiB or 250ms.
	Above *Quantity `yaml:"above" json:"above,omitempty"`
	// Threshold: active while the value is below (<) this.
	Below *Quantity `yaml:"below" json:"below,omitempty"`
	// Threshold, general form: the operator comparing the value with value: >, >=, <, <=, == or !=.
	Op string `yaml:"op" json:"op,omitempty" jsonschema:"enum=>,enum=>=,enum=<,enum=<=,enum===,enum=!="`
	// Threshold, general form: the right-hand side of op.
	Value *Quantity `yaml:"value" json:"value,omitempty"`
	// Hysteresis of an above (>, >=) threshold: once firing, it resolves only when the value falls
	// below this. Default: the threshold itself.
	ClearBelow *Quantity `yaml:"clear_below" json:"clear_below,omitempty"`
	// Hysteresis of a below (<, <=) threshold: once firing, it resolves only when the value rises
	// above this. Default: the threshold itself.
	ClearAbove *Quantity `yaml:"clear_above" json:"clear_above,omitempty"`
	// Trend: the slope of each series over a window.
	Trend *ConditionTrend `yaml:"trend" json:"trend,omitempty"`
	// Anomaly: each series against its own learned baseline.
	Anomaly *ConditionAnomaly `yaml:"anomaly" json:"anomaly,omitempty"`
	// Event condition: the event kind that makes the target's alert active, e.g. instance.crashloop,
	// instance.exited, instance.unready. The alert's labels are service and instance of the target.
	Event string `yaml:"event" json:"event,omitempty"`
	// Event condition: event kinds that resolve the target's alert. Default [instance.ready].
	ResolveOn []string `yaml:"resolve_on" json:"resolve_on,omitempty"`
	// Alert condition: which pushed alerts it follows. Each distinct label set is its own alert.
	Alert *ConditionAlert `yaml:"alert" json:"alert,omitempty"`
	// Event and alert conditions: an alert not resolved by a message resolves this long after
	// the last message that made it active. Default 0: only a message (or ends_at) resolves it.
	ResolveAfter Duration `yaml:"resolve_after" json:"resolve_after,omitempty"`
	// The condition must hold this long before it fires (pending until then): a transient
	// breach resolves without firing. Default 0: fire at once.
	For Duration `yaml:"for" json:"for,omitempty"`
	// Once firing, keep firing this long after the condition stops holding (flapping input).
	// Default 0.
	KeepFiringFor Duration `yaml:"keep_firing_for" json:"keep_firing_for,omitempty"`
	// Threshold, trend and anomaly: a series whose newest sample is older than this is ignored
	// (its alert resolves). Default 5m.
	StaleAfter Duration `yaml:"stale_after" json:"stale_after,omitempty"`
}

// ConditionTrend fires while the least-squares slope of a series over the
// window is steeper than a rate per hour: a leak long before the limit.
type ConditionTrend struct {
	// Span of samples the slope is fitted over. Default 30m.
	Window Duration `yaml:"window" json:"window,omitempty"`
	// Active while the series grows faster than this per hour (e.g. 200MiB). Set this or below_per_hour.
	AbovePerHour *Quantity `yaml:"above_per_hour" json:"above_per_hour,omitempty"`
	// Active while the slope per hour is below this (e.g. -10GiB for free space falling fast).
	BelowPerHour *Quantity `yaml:"below_per_hour" json:"below_per_hour,omitempty"`
	// Samples in the window needed for a fit; the samples must also span half the window. Default 10.
	MinPoints int `yaml:"min_points" json:"min_points,omitempty"`
}

// ConditionAnomaly fires when a series departs from its own robust baseline:
// an exponentially weighted mean of its level and of its absolute deviation
// (outliers clipped, so a spike does not teach the baseline), giving a robust
// z-score per sample, turned into the confidence that the sample does not
// belong to the baseline's normal variation within one window.
type ConditionAnomaly struct {
	// Fire when the confidence reaches this, between 0 and 1 exclusive. Default 0.99: by
	// construction, noise that matches the baseline exceeds it about once per 100 windows.
	Confidence *float64 `yaml:"confidence" json:"confidence,omitempty"`
	// Hysteresis: once firing, the alert resolves only when the confidence falls below this.
	// Default 0.5, which for the default confidence is a z-score about 1.2 lower.
	ClearConfidence *float64 `yaml:"clear_confidence" json:"clear_confidence,omitempty"`
	// Time constant of the baseline: how fast it forgets (and adapts to a new normal). Default 30m.
	Window Duration `yaml:"window" json:"window,omitempty"`
	// No firing until the baseline has learnt from this much data (and 10 samples). Default: window.
	Warmup Duration `yaml:"warmup" json:"warmup,omitempty"`
	// Which departures count: both (default), up or down.
	Direction string `yaml:"direction" json:"direction,omitempty" jsonschema:"enum=both,enum=up,enum=down"`
	// Smallest deviation treated as a standard deviation, so a nearly constant series does not
	// turn every change into an anomaly. Default 0 (and 0.1% of the level).
	MinDeviation *Quantity `yaml:"min_deviation" json:"min_deviation,omitempty"`
	// Seasonality: the period of a repeating pattern, such as 24h. The baseline is then learnt
	// per phase of the period (season_buckets of them), so warm-up takes a whole season. Default 0: none.
	Season Duration `yaml:"season" json:"season,omitempty"`
	// Phases the season is split into. Default 24.
	SeasonBuckets int `yaml:"season_buckets" json:"season_buckets,omitempty"`
}

// ConditionAlert follows alerts pushed to medic (Alertmanager's webhook or
// the generic one): the alert is active while its status is firing and its
// ends_at, if any, has not passed.
type ConditionAlert struct {
	// Labels the pushed alert must carry with these values, e.g. {alertname: DiskFull}.
	Match map[string]string `yaml:"match" json:"match"`
}

// Condition kinds, as Kind reports them.
const (
	KindThreshold = "threshold"
	KindTrend     = "trend"
	KindAnomaly   = "anomaly"
	KindEvent     = "event"
	KindAlert     = "alert"
)

// kindKey is the key that selects each kind (a threshold has three; above
// stands for them).
var kindKey = map[string]string{KindThreshold: "above", KindTrend: "trend", KindAnomaly: "anomaly",
	KindEvent: "event", KindAlert: "alert"}

// Defaults of conditions.
const (
	DefaultStaleAfter             = 5 * time.Minute
	DefaultTrendWindow            = 30 * time.Minute
	DefaultTrendMinPoints         = 10
	DefaultAnomalyConfidence      = 0.99
	DefaultAnomalyClearConfidence = 0.5
	DefaultAnomalyWindow          = 30 * time.Minute
	DefaultSeasonBuckets          = 24
	DefaultAggregate              = "each"
	DefaultAnomalyDirection       = "both"
	minConditionWindow            = time.Second
	// SignalRetention is how much history the signal store keeps per series
	// (internal/signal.Options.Retention; medic builds its store with this).
	// A window reaching further back than this would never hold enough
	// samples to fire, so validation refuses it.
	SignalRetention           = time.Hour
	maxConditionSeasonBuckets = 1440
)

var (
	signalName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	aggregates = []string{"each", "max", "min", "avg", "sum", "count"}
	operators  = []string{">", ">=", "<", "<=", "==", "!="}
	// eventKinds are the events an event condition may name.
	eventKinds = []medic.EventKind{medic.EventStarted, medic.EventExited, medic.EventRestart, medic.EventCrashLoop,
		medic.EventGiveUp, medic.EventStopping, medic.EventStopped, medic.EventReady, medic.EventUnready,
		medic.EventScaled, medic.EventRolledBack, medic.EventOOMKilled}
	eventLabels = []string{"service", "instance"}
)

// Kind names the condition's kind from the keys set: threshold, trend,
// anomaly, event or alert; "" when none is set. When several are set (an
// error Validate reports) the first in that order wins.
func (c *Condition) Kind() string {
	switch k := c.kinds(); len(k) {
	case 0:
		return ""
	default:
		return k[0]
	}
}

func (c *Condition) kinds() []string {
	var k []string
	if c.Above != nil || c.Below != nil || c.Op != "" || c.Value != nil {
		k = append(k, KindThreshold)
	}
	if c.Trend != nil {
		k = append(k, KindTrend)
	}
	if c.Anomaly != nil {
		k = append(k, KindAnomaly)
	}
	if c.Event != "" {
		k = append(k, KindEvent)
	}
	if c.Alert != nil {
		k = append(k, KindAlert)
	}
	return k
}

// Threshold returns the threshold's operator and value, and the value at
// which a firing alert clears (the threshold itself without hysteresis).
// ok is false when the condition is not a threshold.
func (c *Condition) Threshold() (op string, value, clear float64, ok bool) {
	switch {
	case c.Above != nil:
		op, value = ">", float64(*c.Above)
	case c.Below != nil:
		op, value = "<", float64(*c.Below)
	case c.Op != "" && c.Value != nil:
		op, value = c.Op, float64(*c.Value)
	default:
		return "", 0, 0, false
	}
	clear = value
	if c.ClearBelow != nil && (op == ">" || op == ">=") {
		clear = float64(*c.ClearBelow)
	}
	if c.ClearAbove != nil && (op == "<" || op == "<=") {
		clear = float64(*c.ClearAbove)
	}
	return op, value, clear, true
}

// SetDefaults fills the unset fields of the condition's kind with their
// documented defaults. It is idempotent.
func (c *Condition) SetDefaults() {
	if c.Signal != "" {
		if c.Aggregate == "" {
			c.Aggregate = DefaultAggregate
		}
		if c.StaleAfter == 0 {
			c.StaleAfter = Duration(DefaultStaleAfter)
		}
	}
	if t := c.Trend; t != nil {
		if t.Window == 0 {
			t.Window = Duration(DefaultTrendWindow)
		}
		if t.MinPoints == 0 {
			t.MinPoints = DefaultTrendMinPoints
		}
	}
	if a := c.Anomaly; a != nil {
		if a.Confidence == nil {
			v := DefaultAnomalyConfidence
			a.Confidence = &v
		}
		if a.ClearConfidence == nil {
			v := min(DefaultAnomalyClearConfidence, *a.Confidence)
			a.ClearConfidence = &v
		}
		if a.Window == 0 {
			a.Window = Duration(DefaultAnomalyWindow)
		}
		if a.Warmup == 0 {
			a.Warmup = a.Window
		}
		if a.Direction == "" {
			a.Direction = DefaultAnomalyDirection
		}
		if a.Season > 0 && a.SeasonBuckets == 0 {
			a.SeasonBuckets = DefaultSeasonBuckets
		}
	}
	if c.Event != "" && c.ResolveOn == nil {
		c.ResolveOn = []string{string(medic.EventReady)}
	}
}

// Validate reports semantic problems with field paths relative to the
// condition ("above", "trend.window", "labels.path"); call it after
// SetDefaults.
func (c *Condition) Validate() []FieldIssue {
	var is []FieldIssue
	bad := func(field, format string, args ...any) {
		is = append(is, FieldIssue{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	kinds := c.kinds()
	switch len(kinds) {
	case 0:
		field := "" // the condition itself
		if c.Signal != "" {
			field = "signal"
		}
		bad(field, "set one kind: above, below or op (a threshold), trend, anomaly, event or alert")
		return is
	case 1:
	default:
		// Point at the key of the second kind: the first is taken as meant.
		bad(kindKey[kinds[1]], "is both %s; set exactly one kind of condition", strings.Join(kinds, " and "))
		return is
	}
	kind := kinds[0]
	onSignal := kind == KindThreshold || kind == KindTrend || kind == KindAnomaly
	switch {
	case onSignal && c.Signal == "":
		bad("signal", "required for a %s: the signal name, e.g. host_disk_used_percent", kind)
	case onSignal && !signalName.MatchString(c.Signal):
		bad("signal", "invalid signal name %q: use letters, digits, _ and :, not starting with a digit", c.Signal)
	case !onSignal && c.Signal != "":
		bad("signal", "an %s condition watches no signal; remove signal", kind)
	}
	for _, k := range sortedKeys(c.Labels) {
		switch {
		case !labelName.MatchString(k):
			bad("labels."+k, "invalid label name %q: use letters, digits and _, not starting with a digit", k)
		case kind == KindEvent && !slices.Contains(eventLabels, k):
			bad("labels."+k, "an event condition matches only service and instance, not %q", k)
		case kind == KindAlert:
			bad("labels."+k, "an alert condition matches pushed alerts with alert.match; move it there")
		}
	}
	if !onSignal {
		for _, f := range []struct {
			name string
			set  bool
		}{{"aggregate", c.Aggregate != ""}, {"by", c.By != nil}, {"stale_after", c.StaleAfter != 0}} {
			if f.set {
				bad(f.name, "applies to thresholds, trends and anomalies, not to an %s condition", kind)
			}
		}
	}
	if kind != KindEvent && kind != KindAlert {
		if c.ResolveAfter != 0 {
			bad("resolve_after", "applies to event and alert conditions; a %s resolves when it stops holding", kind)
		}
		if c.ResolveOn != nil {
			bad("resolve_on", "applies to event conditions only")
		}
	}
	if onSignal {
		c.validateSeries(kind, bad)
	}
	if kind == KindThreshold {
		c.validateThreshold(bad)
	} else {
		if c.ClearBelow != nil {
			bad("clear_below", "applies to a threshold (above, below or op), not to a %s", kind)
		}
		if c.ClearAbove != nil {
			bad("clear_above", "applies to a threshold (above, below or op), not to a %s", kind)
		}
	}
	if t := c.Trend; t != nil {
		t.validate(bad)
	}
	if a := c.Anomaly; a != nil {
		a.validate(bad)
	}
	if kind == KindEvent {
		c.validateEvent(bad)
	}
	if a := c.Alert; a != nil && len(a.Match) == 0 {
		bad("alert.match", "required: the labels of the pushed alerts to follow, e.g. {alertname: DiskFull}")
	} else if a != nil {
		for _, k := range sortedKeys(a.Match) {
			if !labelName.MatchString(k) {
				bad("alert.match."+k, "invalid label name %q: use letters, digits and _, not starting with a digit", k)
			}
		}
	}
	return is
}

type badFunc func(field, format string, args ...any)

func (c *Condition) validateSeries(kind string, bad badFunc) {
	if !slices.Contains(aggregates, c.Aggregate) {
		bad("aggregate", "must be one of %s, not %q", strings.Join(aggregates, ", "), c.Aggregate)
	} else if c.Aggregate != "each" && kind != KindThreshold {
		bad("aggregate", "a %s is evaluated per series; aggregate applies to thresholds only", kind)
	}
	if c.By != nil && c.Aggregate == "each" {
		bad("by", "groups series for an aggregate; set aggregate (max, min, avg, sum or count)")
	}
	seen := map[string]bool{}
	for i, b := range c.By {
		switch {
		case !labelName.MatchString(b):
			bad(fmt.Sprintf("by[%d]", i), "invalid label name %q", b)
		case seen[b]:
			bad(fmt.Sprintf("by[%d]", i), "%q is listed twice", b)
		}
		seen[b] = true
	}
	if c.StaleAfter < 0 {
		bad("stale_after", "must not be negative")
	}
}

func (c *Condition) validateThreshold(bad badFunc) {
	var forms []string
	if c.Above != nil {
		forms = append(forms, "above")
	}
	if c.Below != nil {
		forms = append(forms, "below")
	}
	if c.Op != "" || c.Value != nil {
		forms = append(forms, "op")
	}
	if len(forms) > 1 {
		bad(forms[1], "sets %s; a threshold is one of above, below, or op with value", strings.Join(forms, " and "))
		return
	}
	switch {
	case c.Op != "" && !slices.Contains(operators, c.Op):
		bad("op", "must be one of %s, not %q", strings.Join(operators, " "), c.Op)
		return
	case c.Op != "" && c.Value == nil:
		bad("value", "required with op: the number the value is compared with")
		return
	case c.Op == "" && c.Value != nil:
		bad("op", "required with value: one of %s", strings.Join(operators, " "))
		return
	}
	op, v, _, _ := c.Threshold()
	up, down := op == ">" || op == ">=", op == "<" || op == "<="
	if cb := c.ClearBelow; cb != nil {
		switch {
		case !up:
			bad("clear_below", "applies to an above threshold (> or >=); use clear_above with %s", op)
		case float64(*cb) > v:
			bad("clear_below", "%v is above the threshold %v: a firing alert would clear while still breaching", float64(*cb), v)
		}
	}
	if ca := c.ClearAbove; ca != nil {
		switch {
		case !down:
			bad("clear_above", "applies to a below threshold (< or <=); use clear_below with %s", op)
		case float64(*ca) < v:
			bad("clear_above", "%v is below the threshold %v: a firing alert would clear while still breaching", float64(*ca), v)
		}
	}
}

func (t *ConditionTrend) validate(bad badFunc) {
	if t.Window.D() < minConditionWindow {
		bad("trend.window", "must be at least %v, got %v", minConditionWindow, t.Window)
	} else if t.Window.D() > SignalRetention {
		bad("trend.window", "%v is longer than the %v of history the signal store keeps: the fit would never see the window and the condition would never fire", t.Window, SignalRetention)
	}
	switch {
	case t.AbovePerHour == nil && t.BelowPerHour == nil:
		bad("trend", "set above_per_hour (growing faster than) or below_per_hour (falling faster than)")
	case t.AbovePerHour != nil && t.BelowPerHour != nil:
		bad("trend.below_per_hour", "set above_per_hour or below_per_hour, not both")
	}
	if t.MinPoints < 3 {
		bad("trend.min_points", "must be at least 3 for a meaningful fit, got %d", t.MinPoints)
	}
}

func (a *ConditionAnomaly) validate(bad badFunc) {
	if c := a.Confidence; c != nil && !(*c > 0 && *c < 1) {
		bad("anomaly.confidence", "must be between 0 and 1 exclusive, got %v", *c)
	}
	if c := a.ClearConfidence; c != nil && !(*c > 0 && *c < 1) {
		bad("anomaly.clear_confidence", "must be between 0 and 1 exclusive, got %v", *c)
	} else if c != nil && a.Confidence != nil && *c > *a.Confidence {
		bad("anomaly.clear_confidence", "%v is above confidence %v: a firing alert would clear while still anomalous", *c, *a.Confidence)
	}
	if a.Window.D() < minConditionWindow {
		bad("anomaly.window", "must be at least %v, got %v", minConditionWindow, a.Window)
	}
	if a.Warmup < 0 {
		bad("anomaly.warmup", "must not be negative")
	}
	if !slices.Contains([]string{"both", "up", "down"}, a.Direction) {
		bad("anomaly.direction", "must be both, up or down, not %q", a.Direction)
	}
	if m := a.MinDeviation; m != nil && *m < 0 {
		bad("anomaly.min_deviation", "must not be negative")
	}
	switch {
	case a.Season < 0:
		bad("anomaly.season", "must not be negative")
	case a.Season == 0 && a.SeasonBuckets != 0:
		bad("anomaly.season_buckets", "applies only with season")
	case a.Season > 0 && (a.SeasonBuckets < 2 || a.SeasonBuckets > maxConditionSeasonBuckets):
		bad("anomaly.season_buckets", "must be from 2 to %d, got %d", maxConditionSeasonBuckets, a.SeasonBuckets)
	case a.Season > 0 && a.Season.D()/time.Duration(a.SeasonBuckets) < time.Minute:
		bad("anomaly.season", "%v split into %d buckets leaves less than a minute per bucket", a.Season, a.SeasonBuckets)
	}
}

func (c *Condition) validateEvent(bad badFunc) {
	names := make([]string, len(eventKinds))
	for i, k := range eventKinds {
		names[i] = string(k)
	}
	if !slices.Contains(names, c.Event) {
		bad("event", "unknown event %q: want one of %s", c.Event, strings.Join(names, ", "))
	}
	if len(c.ResolveOn) == 0 {
		bad("resolve_on", "must name at least one event kind (or be left out for instance.ready)")
	}
	for i, k := range c.ResolveOn {
		f := fmt.Sprintf("resolve_on[%d]", i)
		switch {
		case !slices.Contains(names, k):
			bad(f, "unknown event %q: want one of %s", k, strings.Join(names, ", "))
		case k == c.Event:
			bad(f, "%s both fires and resolves the condition", k)
		}
	}
}

// Quantity is a number written plain (90, 0.5, -3, 1e6) or with a unit: a
// size in bytes with B, KiB, MiB, GiB or TiB (KB, MB, GB and TB are also
// powers of 1024, as in ByteSize), or a duration such as 250ms or 2m, which
// becomes seconds. So `above: 200MiB` compares a _bytes signal and
// `above: 250ms` a _seconds signal.
type Quantity float64

const quantityPattern = `^ *(-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)? *(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)?|-?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+) *$`

var quantityUnits = []struct {
	suffix string
	m      float64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"TB", 1 << 40}, {"B", 1}}

// UnmarshalText reads a number with an optional unit.
func (q *Quantity) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	num, mult := s, 1.0
	for _, u := range quantityUnits {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.m
			break
		}
	}
	if f, err := strconv.ParseFloat(num, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) &&
		!strings.ContainsAny(num, "xXpP_") && !strings.EqualFold(num, "inf") {
		*q = Quantity(f * mult)
		return nil
	}
	if mult == 1 {
		if d, err := time.ParseDuration(s); err == nil {
			*q = Quantity(d.Seconds())
			return nil
		}
	}
	return fmt.Errorf("invalid quantity %q: want a number, a size such as 200MiB, or a duration such as 250ms", s)
}

// MarshalJSON writes the quantity as a JSON number.
func (q Quantity) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(q), 'g', -1, 64), nil
}

// UnmarshalJSON reads a JSON number or a string with a unit.
func (q *Quantity) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		return q.UnmarshalText([]byte(s))
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("invalid quantity %s: want a number or a string such as 200MiB", b)
	}
	*q = Quantity(f)
	return nil
}

// JSONSchema describes a Quantity for the generated config schema.
func (Quantity) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
		{Type: "number"},
		{Type: "string", Pattern: quantityPattern, Examples: []any{"200MiB", "250ms", "-1GiB"}},
	}}
}

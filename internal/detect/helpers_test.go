package detect_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/detect"
	"github.com/medic-dev/medic/internal/signal"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// mustSpecs parses `name: {…}` lines of a conditions: section through the
// real config loader.
func mustSpecs(tb testing.TB, yml string) map[string]*config.Condition {
	tb.Helper()
	cfg, err := config.Parse("medic.yaml", []byte("conditions:\n"+yml))
	if err != nil {
		tb.Fatalf("config: %v", err)
	}
	return cfg.Conditions
}

// mustCondition builds the single condition c from its YAML flow mapping.
func mustCondition(tb testing.TB, flow string) *detect.Condition {
	tb.Helper()
	c, err := detect.NewCondition("c", mustSpecs(tb, "  c: "+flow+"\n")["c"])
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// summary renders transitions as "from>to{labels}" joined by spaces, for
// compact table expectations.
func summary(trs []detect.Transition) string {
	var parts []string
	for _, tr := range trs {
		s := tr.From.String() + ">" + tr.To.String()
		if len(tr.Labels) > 0 {
			s += tr.Labels.String()
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// step is one row of a timeline table: at +at, add the samples, evaluate,
// and expect these transitions (in summary form; "" for none).
type step struct {
	at      time.Duration
	samples map[string]float64 // labels key (as written by lbl) → value; nil adds nothing
	want    string
}

// runTimeline drives a condition over one signal through the rows.
func runTimeline(t *testing.T, c *detect.Condition, sig string, labels map[string]signal.Labels, rows []step) []detect.Transition {
	t.Helper()
	store := signal.NewStore(signal.Options{})
	var all []detect.Transition
	for _, r := range rows {
		now := t0.Add(r.at)
		for name, v := range r.samples {
			l, ok := labels[name]
			if !ok {
				t.Fatalf("+%v: unknown series %q", r.at, name)
			}
			store.Add(sig, l, now, v)
		}
		trs := c.Eval(now, store)
		if got := summary(trs); got != r.want {
			t.Fatalf("+%v: transitions %q, want %q\n%s", r.at, got, r.want, reasons(trs))
		}
		for _, tr := range trs {
			if !tr.At.Equal(now) {
				t.Errorf("+%v: transition at %v, want the evaluation time", r.at, tr.At.Sub(t0))
			}
		}
		all = append(all, trs...)
	}
	return all
}

func reasons(trs []detect.Transition) string {
	var b strings.Builder
	for _, tr := range trs {
		fmt.Fprintf(&b, "  %s %s>%s: %s\n", tr.Labels, tr.From, tr.To, tr.Reason)
	}
	return b.String()
}

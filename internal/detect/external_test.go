package detect_test

import (
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/detect"
	"github.com/medic-dev/medic/internal/signal"
)

func diskFull(instance string, status detect.AlertStatus) detect.ExternalAlert {
	return detect.ExternalAlert{Source: "alertmanager", Status: status,
		Labels:      signal.Labels{"alertname": "DiskFull", "instance": instance, "severity": "page"},
		Annotations: map[string]string{"summary": "disk almost full"}}
}

// TestExternalLifecycle: a pushed alert's state follows its status, each
// label set is its own alert, and transitions carry the push time.
func TestExternalLifecycle(t *testing.T) {
	c := mustCondition(t, `{alert: {match: {alertname: DiskFull}}}`)
	store := signal.NewStore(signal.Options{})
	const a, b = `{alertname="DiskFull",instance="a",severity="page"}`, `{alertname="DiskFull",instance="b",severity="page"}`
	steps := []struct {
		at   time.Duration
		push []detect.ExternalAlert
		want string
	}{
		{0, nil, ""},
		{1 * time.Second, []detect.ExternalAlert{diskFull("a", detect.AlertFiring)}, "inactive>firing" + a},
		{2 * time.Second, []detect.ExternalAlert{diskFull("a", detect.AlertFiring)}, ""},   // repeated: no change
		{3 * time.Second, []detect.ExternalAlert{diskFull("b", detect.AlertResolved)}, ""}, // resolved, never seen firing
		{4 * time.Second, []detect.ExternalAlert{diskFull("b", detect.AlertFiring), diskFull("a", detect.AlertResolved)},
			"firing>inactive" + a + " inactive>firing" + b}, // same time: by labels
		{5 * time.Second, []detect.ExternalAlert{{Status: detect.AlertFiring, Labels: signal.Labels{"alertname": "Other"}}}, ""},
	}
	for _, s := range steps {
		now := t0.Add(s.at)
		for _, x := range s.push {
			want := x.Labels["alertname"] == "DiskFull"
			if got := c.Push(x, now); got != want {
				t.Errorf("+%v: Push matched = %v, want %v", s.at, got, want)
			}
		}
		trs := c.Eval(now, store)
		if got := summary(trs); got != s.want {
			t.Fatalf("+%v: %q, want %q\n%s", s.at, got, s.want, reasons(trs))
		}
		if s.at == time.Second {
			tr := trs[0]
			if tr.Annotations["summary"] != "disk almost full" || tr.Kind != "alert" || tr.Confidence != 1 ||
				!strings.Contains(tr.Reason, "alert DiskFull firing, pushed by alertmanager: disk almost full") {
				t.Errorf("firing transition %+v", tr)
			}
		}
	}
}

// TestExternalQueuedInOrder: a firing and its resolution pushed between two
// evaluations both appear, at their push times.
func TestExternalQueuedInOrder(t *testing.T) {
	c := mustCondition(t, `{alert: {match: {alertname: DiskFull}}}`)
	c.Push(diskFull("a", detect.AlertFiring), t0.Add(100*time.Millisecond))
	c.Push(diskFull("a", detect.AlertResolved), t0.Add(300*time.Millisecond))
	trs := c.Eval(t0.Add(time.Second), signal.NewStore(signal.Options{}))
	if summary(trs) != `inactive>firing{alertname="DiskFull",instance="a",severity="page"} firing>inactive{alertname="DiskFull",instance="a",severity="page"}` ||
		!trs[0].At.Equal(t0.Add(100*time.Millisecond)) || !trs[1].At.Equal(t0.Add(300*time.Millisecond)) {
		t.Errorf("transitions:\n%s", reasons(trs))
	}
}

// TestExternalEndsAtAndResolveAfter: an alert resolves when its ends_at
// passes, or when resolve_after passes without confirmation.
func TestExternalEndsAtAndResolveAfter(t *testing.T) {
	store := signal.NewStore(signal.Options{})
	c := mustCondition(t, `{alert: {match: {alertname: DiskFull}}}`)
	x := diskFull("a", detect.AlertFiring)
	x.EndsAt = t0.Add(30 * time.Second)
	c.Push(x, t0)
	if got := summary(c.Eval(t0, store)); !strings.HasPrefix(got, "inactive>firing") {
		t.Fatalf("at push: %q", got)
	}
	if got := summary(c.Eval(t0.Add(29*time.Second), store)); got != "" {
		t.Fatalf("before ends_at: %q", got)
	}
	trs := c.Eval(t0.Add(30*time.Second), store)
	if !strings.HasPrefix(summary(trs), "firing>inactive") || !strings.Contains(trs[0].Reason, "passed its ends_at") {
		t.Fatalf("at ends_at:\n%s", reasons(trs))
	}

	ra := mustCondition(t, `{alert: {match: {alertname: DiskFull}}, resolve_after: 1m}`)
	ra.Push(diskFull("a", detect.AlertFiring), t0)
	ra.Eval(t0, store)
	ra.Push(diskFull("a", detect.AlertFiring), t0.Add(50*time.Second)) // confirmed: the minute restarts
	if got := summary(ra.Eval(t0.Add(100*time.Second), store)); got != "" {
		t.Fatalf("within resolve_after of the last push: %q", got)
	}
	if trs := ra.Eval(t0.Add(110*time.Second), store); !strings.HasPrefix(summary(trs), "firing>inactive") ||
		!strings.Contains(trs[0].Reason, "resolve_after") {
		t.Fatalf("after resolve_after:\n%s", reasons(trs))
	}
}

func ev(at time.Duration, kind medic.EventKind, target string) medic.Event {
	return medic.Event{Time: t0.Add(at), Kind: kind, Target: target, Actor: "supervisor", Reason: "5 restarts in 1m"}
}

// TestEventCondition: the condition's event fires the target's alert at the
// event's time; instance.ready of the same target resolves it; other
// targets and services are separate or filtered.
func TestEventCondition(t *testing.T) {
	c := mustCondition(t, `{event: instance.crashloop, labels: {service: web}, for: 0s}`)
	store := signal.NewStore(signal.Options{})
	const w0, w1 = `{instance="web/0",service="web"}`, `{instance="web/1",service="web"}`
	steps := []struct {
		evs  []medic.Event
		eval time.Duration
		want string
	}{
		{[]medic.Event{ev(500*time.Millisecond, medic.EventCrashLoop, "web/0")}, time.Second, "inactive>firing" + w0},
		{[]medic.Event{ev(1500*time.Millisecond, medic.EventReady, "web/1"), ev(1600*time.Millisecond, medic.EventCrashLoop, "db/0")}, 2 * time.Second, ""},
		{[]medic.Event{ev(2500*time.Millisecond, medic.EventCrashLoop, "web/1"), ev(2600*time.Millisecond, medic.EventReady, "web/0")}, 3 * time.Second,
			"inactive>firing" + w1 + " firing>inactive" + w0},
		{[]medic.Event{ev(3500*time.Millisecond, medic.EventExited, "web/1")}, 4 * time.Second, ""}, // not a resolving event
	}
	for i, s := range steps {
		for _, e := range s.evs {
			// Observe reports whether the event concerns the condition: its
			// kinds, and a target its labels select.
			want := e.Target != "db/0" && e.Kind != medic.EventExited
			if got := c.Observe(e); got != want {
				t.Errorf("step %d: Observe(%s %s) = %v, want %v", i, e.Kind, e.Target, got, want)
			}
		}
		trs := c.Eval(t0.Add(s.eval), store)
		if got := summary(trs); got != s.want {
			t.Fatalf("step %d: %q, want %q\n%s", i, got, s.want, reasons(trs))
		}
		for j, tr := range trs {
			if want := s.evs[j].Time; !tr.At.Equal(want) {
				t.Errorf("step %d: transition at %v, want the event's time %v", i, tr.At.Sub(t0), want.Sub(t0))
			}
		}
		if i == 0 && trs[0].Reason != "instance.crashloop on web/0: 5 restarts in 1m" {
			t.Errorf("reason %q", trs[0].Reason)
		}
	}
}

// TestEventConditionResolveOnAndFor: a custom resolving event, and `for`
// measured from the event.
func TestEventConditionResolveOnAndFor(t *testing.T) {
	c := mustCondition(t, `{event: instance.unready, resolve_on: [instance.ready, instance.stopped], for: 10s}`)
	store := signal.NewStore(signal.Options{})
	c.Observe(ev(0, medic.EventUnready, "web/2"))
	if got := summary(c.Eval(t0.Add(time.Second), store)); got != `inactive>pending{instance="web/2",service="web"}` {
		t.Fatalf("after the event: %q", got)
	}
	if got := summary(c.Eval(t0.Add(10*time.Second), store)); got != `pending>firing{instance="web/2",service="web"}` {
		t.Fatalf("10s after the event: %q", got)
	}
	c.Observe(ev(11*time.Second, medic.EventStopped, "web/2"))
	if got := summary(c.Eval(t0.Add(12*time.Second), store)); got != `firing>inactive{instance="web/2",service="web"}` {
		t.Fatalf("after instance.stopped: %q", got)
	}
}

func TestTargetLabels(t *testing.T) {
	for target, want := range map[string]string{
		"web/0":  `{instance="web/0",service="web"}`,
		"web":    `{service="web"}`,
		"config": `{target="config"}`,
		"a b":    `{target="a b"}`,
	} {
		if got := detect.TargetLabels(target).String(); got != want {
			t.Errorf("%q: %s, want %s", target, got, want)
		}
	}
}

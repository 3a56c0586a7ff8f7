package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/notify"
	"github.com/medic-dev/medic/internal/redact"
)

// recorder keeps the events it is given.
type recorder struct {
	mu  sync.Mutex
	evs []medic.Event
}

func (r *recorder) Record(_ context.Context, ev medic.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
}

func (r *recorder) count(kind medic.EventKind, receiver string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ev := range r.evs {
		if ev.Kind == kind && ev.Fields["receiver"] == receiver {
			n++
		}
	}
	return n
}

func (r *recorder) find(kind medic.EventKind, receiver string) (medic.Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.evs {
		if ev.Kind == kind && ev.Fields["receiver"] == receiver {
			return ev, true
		}
	}
	return medic.Event{}, false
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func receiver(rc *config.Receiver) *config.Receiver {
	rc.SetDefaults()
	return rc
}

// start runs a Notifier and stops it (and waits) at the end of the test.
func start(t *testing.T, o notify.Options) *notify.Notifier {
	t.Helper()
	if o.RetryInitial == 0 {
		o.RetryInitial, o.RetryMax = 5*time.Millisecond, 20*time.Millisecond
	}
	o.DrainTimeout = 200 * time.Millisecond
	n, err := notify.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return n
}

func TestFormats(t *testing.T) {
	var mu sync.Mutex
	bodies := map[string][][]byte{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies[r.URL.Path] = append(bodies[r.URL.Path], b)
		mu.Unlock()
		if r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	rec := &recorder{}
	n := start(t, notify.Options{Recorder: rec, Source: "medic@test", Receivers: map[string]*config.Receiver{
		"hook":  receiver(&config.Receiver{Webhook: &config.ReceiverWebhook{URL: srv.URL + "/hook", Headers: map[string]string{"X-Token": "t"}}}),
		"chat":  receiver(&config.Receiver{Slack: &config.ReceiverSlack{URL: srv.URL + "/slack"}}),
		"pager": receiver(&config.Receiver{PagerDuty: &config.ReceiverPagerDuty{RoutingKey: "rk", URL: srv.URL + "/pd"}}),
	}})
	note := notify.Notification{Kind: notify.KindTrigger, Incident: "inc-1", Severity: "critical",
		Summary: "disk_cleanup failed on /var/data", Text: "step 1 delete_files: freed 0 B", Target: "/var/data",
		Actor: "runbook:disk_cleanup", Fields: map[string]string{"runbook": "disk_cleanup"}}
	for _, r := range []string{"hook", "chat", "pager"} {
		if err := n.Send(r, note); err != nil {
			t.Fatal(err)
		}
	}
	resolve := note
	resolve.Kind = notify.KindResolve
	if err := n.Send("pager", resolve); err != nil {
		t.Fatal(err)
	}
	if err := n.Send("nope", note); !errors.Is(err, notify.ErrUnknownReceiver) {
		t.Fatalf("Send to unknown receiver: %v", err)
	}
	eventually(t, "4 notifications sent", func() bool {
		return rec.count(notify.EventSent, "hook")+rec.count(notify.EventSent, "chat")+rec.count(notify.EventSent, "pager") == 4
	})
	mu.Lock()
	defer mu.Unlock()

	var wh notify.WebhookPayload
	if err := json.Unmarshal(bodies["/hook"][0], &wh); err != nil {
		t.Fatal(err)
	}
	if wh.Version != "1" || wh.Incident != "inc-1" || wh.Severity != "critical" || wh.Source != "medic@test" || wh.Fields["runbook"] != "disk_cleanup" {
		t.Errorf("webhook payload = %+v", wh)
	}

	var sl struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(bodies["/slack"][0], &sl); err != nil {
		t.Fatal(err)
	}
	if sl.Text == "" || len(sl.Blocks) != 3 || sl.Blocks[0].Type != "section" || sl.Blocks[2].Type != "context" {
		t.Errorf("slack payload = %s", bodies["/slack"][0])
	}

	var trig, res notify.PagerDutyEvent
	if len(bodies["/pd"]) != 2 {
		t.Fatalf("pagerduty got %d events, want trigger and resolve", len(bodies["/pd"]))
	}
	if err := json.Unmarshal(bodies["/pd"][0], &trig); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(bodies["/pd"][1], &res); err != nil {
		t.Fatal(err)
	}
	if trig.EventAction != "trigger" || trig.DedupKey != "inc-1" || trig.RoutingKey != "rk" || trig.Payload == nil ||
		trig.Payload.Severity != "critical" || trig.Payload.Source != "medic@test" || trig.Payload.Summary == "" {
		t.Errorf("pagerduty trigger = %s", bodies["/pd"][0])
	}
	if res.EventAction != "resolve" || res.DedupKey != "inc-1" || res.Payload != nil {
		t.Errorf("pagerduty resolve = %s", bodies["/pd"][1])
	}
}

// A receiver failing twice with 500 gets the notification on the third try.
func TestRetryThenSent(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	rec := &recorder{}
	n := start(t, notify.Options{Recorder: rec, Receivers: map[string]*config.Receiver{
		"hook": receiver(&config.Receiver{Webhook: &config.ReceiverWebhook{URL: srv.URL}})}})
	if err := n.Send("hook", notify.Notification{Summary: "x", Incident: "inc-2"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "sent", func() bool { return rec.count(notify.EventSent, "hook") == 1 })
	ev, _ := rec.find(notify.EventSent, "hook")
	if ev.Fields["attempts"] != "3" || ev.Fields["incident"] != "inc-2" {
		t.Errorf("sent event fields = %v, want attempts 3 and the incident", ev.Fields)
	}
}

// A 400 is not retried: the receiver rejected the notification itself.
func TestPermanentFailureNotRetried(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "invalid routing key", http.StatusBadRequest)
	}))
	defer srv.Close()
	rec := &recorder{}
	n := start(t, notify.Options{Recorder: rec, Receivers: map[string]*config.Receiver{
		"pager": receiver(&config.Receiver{PagerDuty: &config.ReceiverPagerDuty{RoutingKey: "bad", URL: srv.URL}})}})
	_ = n.Send("pager", notify.Notification{Kind: notify.KindTrigger, Summary: "x"})
	eventually(t, "failed", func() bool { return rec.count(notify.EventFailed, "pager") == 1 })
	if calls.Load() != 1 {
		t.Errorf("receiver called %d times, want 1", calls.Load())
	}
	if ev, _ := rec.find(notify.EventFailed, "pager"); ev.Fields["error"] == "" {
		t.Errorf("failed event without error: %v", ev.Fields)
	}
}

// A dead receiver (nothing listening) fails after retry_for and is audited;
// the live receiver next to it is unaffected.
func TestDeadReceiver(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer live.Close()
	rec := &recorder{}
	deadRC := receiver(&config.Receiver{Webhook: &config.ReceiverWebhook{URL: deadURL}})
	deadRC.RetryFor = config.Duration(100 * time.Millisecond)
	n := start(t, notify.Options{Recorder: rec, Receivers: map[string]*config.Receiver{
		"dead": deadRC,
		"live": receiver(&config.Receiver{Webhook: &config.ReceiverWebhook{URL: live.URL}})}})
	_ = n.Send("dead", notify.Notification{Summary: "x"})
	_ = n.Send("live", notify.Notification{Summary: "x"})
	eventually(t, "live sent", func() bool { return rec.count(notify.EventSent, "live") == 1 })
	eventually(t, "dead failed", func() bool { return rec.count(notify.EventFailed, "dead") == 1 })
	ev, _ := rec.find(notify.EventFailed, "dead")
	if ev.Fields["attempts"] == "1" {
		t.Errorf("dead receiver tried once; want retries: %v", ev.Fields)
	}
}

// A receiver that never answers does not slow Send down: the queue fills,
// the oldest notifications are dropped and counted, and every drop is audited.
func TestSlowReceiverNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	rec := &recorder{}
	slow := receiver(&config.Receiver{Webhook: &config.ReceiverWebhook{URL: srv.URL}, Queue: 4})
	slow.Timeout = config.Duration(time.Minute)
	n := start(t, notify.Options{Recorder: rec, Receivers: map[string]*config.Receiver{"slow": slow}})

	begin := time.Now()
	const total = 1000
	for i := range total {
		if err := n.Send("slow", notify.Notification{Summary: "n", Fields: map[string]string{"i": string(rune('a' + i%26))}}); err != nil {
			t.Fatal(err)
		}
	}
	if el := time.Since(begin); el > time.Second {
		t.Fatalf("%d Sends to a stuck receiver took %v", total, el)
	}
	st := n.Stats()[0]
	// One is in flight (or about to be), at most 4 queued, the rest dropped.
	if st.Dropped < total-5 || st.Queued > 4 {
		t.Fatalf("stats = %+v, want about %d dropped and at most 4 queued", st, total-5)
	}
	eventually(t, "drops audited", func() bool { return uint64(rec.count(notify.EventDropped, "slow")) >= min(st.Dropped, 100) })
}

// Shutdown drains what is queued within the drain timeout and records the rest as dropped.
func TestShutdownDrains(t *testing.T) {
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Add(1) }))
	defer srv.Close()
	rec := &recorder{}
	n, err := notify.New(notify.Options{Recorder: rec, DrainTimeout: 2 * time.Second, Receivers: map[string]*config.Receiver{
		"hook": receiver(&config.Receiver{Webhook: &config.ReceiverWebhook{URL: srv.URL}})}})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_ = n.Send("hook", notify.Notification{Summary: "queued before Serve"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Serve starts already stopping: only the drain runs
	if err := n.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	if got.Load() != 3 || rec.count(notify.EventSent, "hook") != 3 {
		t.Fatalf("drained %d (audited %d), want 3", got.Load(), rec.count(notify.EventSent, "hook"))
	}
}

// TestRedactBeforeSending: evidence with a DSN password, a bearer token and a
// configured env value reaches no receiver (Slack, PagerDuty, webhook) as is.
func TestRedactBeforeSending(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	rec := &recorder{}
	red := redact.New([]string{"envsecret-42"})
	n := start(t, notify.Options{Recorder: rec, Redact: red.String, Receivers: map[string]*config.Receiver{
		"hook":  receiver(&config.Receiver{Webhook: &config.ReceiverWebhook{URL: srv.URL + "/hook"}}),
		"chat":  receiver(&config.Receiver{Slack: &config.ReceiverSlack{URL: srv.URL + "/slack"}}),
		"pager": receiver(&config.Receiver{PagerDuty: &config.ReceiverPagerDuty{RoutingKey: "rk", URL: srv.URL + "/pd"}}),
	}})
	note := notify.Notification{Kind: notify.KindTrigger, Incident: "inc-9", Severity: "critical",
		Summary: "web crash loop: postgres://app:dsnpass99@db/app refused",
		Text:    "stderr: Authorization: Bearer tok.abc.123456\nkey envsecret-42",
		Fields:  map[string]string{"stderr_tail": "password=fieldpass77"}}
	for _, r := range []string{"hook", "chat", "pager"} {
		if err := n.Send(r, note); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "3 sent", func() bool {
		return rec.count(notify.EventSent, "hook")+rec.count(notify.EventSent, "chat")+rec.count(notify.EventSent, "pager") == 3
	})
	mu.Lock()
	defer mu.Unlock()
	for _, b := range bodies {
		for _, secret := range []string{"dsnpass99", "tok.abc.123456", "envsecret-42", "fieldpass77"} {
			if strings.Contains(b, secret) {
				t.Errorf("a receiver got %q:\n%s", secret, b)
			}
		}
	}
}

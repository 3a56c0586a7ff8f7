// Package notify delivers notifications to receivers (a generic JSON
// webhook, a Slack-compatible incoming webhook, PagerDuty Events API v2)
// without ever blocking the caller: Send puts a notification on the
// receiver's bounded queue and returns; one loop per receiver sends it,
// retrying with jittered exponential backoff. A full queue drops its oldest
// notification and counts it (prometheus notifier/sendloop.go). Every
// notification sent, failed or dropped is recorded through the Recorder.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/clock"
	"github.com/medic-dev/medic/internal/config"
)

// Kind says what a notification does to the incident it belongs to.
type Kind string

const (
	// KindTrigger opens (or updates) an incident: PagerDuty "trigger".
	KindTrigger Kind = "trigger"
	// KindResolve closes the incident named by Notification.Incident: PagerDuty "resolve".
	KindResolve Kind = "resolve"
	// KindInfo tells without opening anything: an action taken, a proposal, a summary.
	// PagerDuty receives it as a trigger with its severity (route severity info to low urgency).
	KindInfo Kind = "info"
)

// Event kinds recorded for notifications.
const (
	EventSent    medic.EventKind = "notify.sent"
	EventFailed  medic.EventKind = "notify.failed"
	EventDropped medic.EventKind = "notify.dropped"
)

// ErrUnknownReceiver is returned by Send for a receiver name not configured.
var ErrUnknownReceiver = errors.New("notify: unknown receiver")

// Notification is one message to a receiver.
type Notification struct {
	Kind     Kind              `json:"kind"`
	Incident string            `json:"incident,omitempty"` // dedup key: a resolve closes the trigger with the same incident
	Severity string            `json:"severity"`           // critical, error, warning or info ("" = info)
	Summary  string            `json:"summary"`            // one line
	Text     string            `json:"text,omitempty"`     // details, several lines: the evidence
	Target   string            `json:"target,omitempty"`   // "web/0", "web"
	Actor    string            `json:"actor,omitempty"`    // "runbook:disk_cleanup"
	Fields   map[string]string `json:"fields,omitempty"`
	Time     time.Time         `json:"time"` // set by Send when zero
}

// Recorder receives one event per notification sent, failed or dropped.
// It may block (the audit log fsyncs); only the send loops call it.
type Recorder interface {
	Record(ctx context.Context, ev medic.Event)
}

// RecorderFunc adapts a function to Recorder.
type RecorderFunc func(ctx context.Context, ev medic.Event)

// Record calls f.
func (f RecorderFunc) Record(ctx context.Context, ev medic.Event) { f(ctx, ev) }

// Options configure a Notifier.
type Options struct {
	// Receivers by name, with defaults applied (config.Receiver.SetDefaults).
	Receivers map[string]*config.Receiver
	// Recorder gets the sent/failed/dropped events; nil records nothing.
	Recorder Recorder
	// Clock measures retry delays and deadlines; nil is the wall clock.
	Clock clock.Clock
	// Client sends the requests; nil uses a client without redirects.
	Client *http.Client
	// First and largest retry delay. Defaults 1s and 1m; the delays are
	// randomised by ±50 % so that receivers are not hit in lockstep.
	RetryInitial, RetryMax time.Duration
	// When Serve's context ends, queued notifications get this long to be
	// sent before they are dropped. Default 5s.
	DrainTimeout time.Duration
	// Source names this medic in payloads (PagerDuty's payload.source). Default the host name.
	Source string
	Logger *slog.Logger
	// Redact masks secrets in a notification's summary, text and fields
	// before it is queued (runbook evidence, step output and stderr tails
	// carry tokens, DSN passwords and env values). Nil: sent as given.
	Redact func(string) string
}

// Stats counts one receiver's notifications.
type Stats struct {
	Receiver string `json:"receiver"`
	Queued   int    `json:"queued"`
	Sent     uint64 `json:"sent"`
	Failed   uint64 `json:"failed"`
	Dropped  uint64 `json:"dropped"`
}

// Notifier owns one send loop per receiver. Send is safe for concurrent use
// and may be called before Serve starts (the queue holds the notifications).
type Notifier struct {
	opts    Options
	clock   clock.Clock
	senders map[string]*sender
}

// New builds a Notifier for the configured receivers.
func New(o Options) (*Notifier, error) {
	n := &Notifier{opts: o, clock: clock.Or(o.Clock), senders: map[string]*sender{}}
	if o.Client == nil {
		n.opts.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if n.opts.RetryInitial <= 0 {
		n.opts.RetryInitial = time.Second
	}
	if n.opts.RetryMax <= 0 {
		n.opts.RetryMax = time.Minute
	}
	if n.opts.DrainTimeout <= 0 {
		n.opts.DrainTimeout = 5 * time.Second
	}
	if n.opts.Source == "" {
		host, _ := os.Hostname()
		n.opts.Source = "medic@" + host
	}
	if n.opts.Logger == nil {
		n.opts.Logger = slog.New(slog.DiscardHandler)
	}
	for name, rc := range o.Receivers {
		if rc == nil {
			return nil, fmt.Errorf("notify: receiver %s: empty", name)
		}
		enc, err := encoderFor(rc, n.opts.Source)
		if err != nil {
			return nil, fmt.Errorf("notify: receiver %s: %w", name, err)
		}
		n.senders[name] = newSender(name, rc, enc, n)
	}
	return n, nil
}

// Send queues note for receiver and returns at once; it never waits for the
// network. When the receiver's queue is full the oldest queued notification
// is dropped and counted. It fails only for an unknown receiver.
func (n *Notifier) Send(receiver string, note Notification) error {
	s := n.senders[receiver]
	if s == nil {
		return fmt.Errorf("%w %q", ErrUnknownReceiver, receiver)
	}
	if note.Time.IsZero() {
		note.Time = n.clock.Now()
	}
	if note.Kind == "" {
		note.Kind = KindInfo
	}
	if note.Severity == "" {
		note.Severity = "info"
	}
	if r := n.opts.Redact; r != nil {
		note.Summary, note.Text = r(note.Summary), r(note.Text)
		if note.Fields != nil {
			f := make(map[string]string, len(note.Fields))
			for k, v := range note.Fields {
				f[k] = r(v)
			}
			note.Fields = f
		}
	}
	s.enqueue(note)
	return nil
}

// Has reports whether receiver is configured.
func (n *Notifier) Has(receiver string) bool { return n.senders[receiver] != nil }

// Serve runs the send loops until ctx ends, then gives the queued
// notifications DrainTimeout to go out, drops (and records) the rest, and
// returns once every loop has stopped.
func (n *Notifier) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range n.senders {
		wg.Go(func() { s.run(ctx) })
	}
	wg.Wait()
	return nil
}

// Stats returns the counters of every receiver, by name.
func (n *Notifier) Stats() []Stats {
	out := make([]Stats, 0, len(n.senders))
	for _, s := range n.senders {
		out = append(out, s.stats())
	}
	slices.SortFunc(out, func(a, b Stats) int {
		if a.Receiver < b.Receiver {
			return -1
		}
		if a.Receiver > b.Receiver {
			return 1
		}
		return 0
	})
	return out
}

func (n *Notifier) record(ctx context.Context, ev medic.Event) {
	if n.opts.Recorder != nil {
		n.opts.Recorder.Record(ctx, ev)
	}
}

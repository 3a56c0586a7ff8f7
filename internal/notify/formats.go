package notify

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/medic-dev/medic/internal/config"
)

// encoder turns a Notification into one receiver's request body.
type encoder interface {
	kind() string
	url() string
	headers() map[string]string
	// encode returns the body, or nil when the receiver takes nothing for
	// this notification.
	encode(Notification) ([]byte, error)
}

func encoderFor(rc *config.Receiver, source string) (encoder, error) {
	switch {
	case rc.Webhook != nil:
		return webhook{rc.Webhook, source}, nil
	case rc.Slack != nil:
		return slack{rc.Slack}, nil
	case rc.PagerDuty != nil:
		return pagerDuty{rc.PagerDuty, source}, nil
	}
	return nil, errors.New("set one of webhook, slack and pagerduty")
}

// WebhookPayload is the body the generic webhook receiver posts: a stable,
// versioned document for any HTTP endpoint.
type WebhookPayload struct {
	Version  string            `json:"version"` // "1"
	Source   string            `json:"source"`
	Kind     Kind              `json:"kind"`
	Incident string            `json:"incident,omitempty"`
	Severity string            `json:"severity"`
	Summary  string            `json:"summary"`
	Text     string            `json:"text,omitempty"`
	Target   string            `json:"target,omitempty"`
	Actor    string            `json:"actor,omitempty"`
	Fields   map[string]string `json:"fields,omitempty"`
	Time     time.Time         `json:"time"`
}

type webhook struct {
	cfg    *config.ReceiverWebhook
	source string
}

func (w webhook) kind() string               { return "webhook" }
func (w webhook) url() string                { return w.cfg.URL }
func (w webhook) headers() map[string]string { return w.cfg.Headers }
func (w webhook) encode(n Notification) ([]byte, error) {
	return json.Marshal(WebhookPayload{Version: "1", Source: w.source, Kind: n.Kind, Incident: n.Incident,
		Severity: n.Severity, Summary: n.Summary, Text: n.Text, Target: n.Target, Actor: n.Actor, Fields: n.Fields,
		Time: n.Time.UTC()})
}

// slack posts {"text": …, "blocks": […]} to an incoming webhook. text is the
// fallback that Mattermost, Rocket.Chat and notifications show; blocks give
// Slack a header line, the details and a context line.
type slack struct{ cfg *config.ReceiverSlack }

func (s slack) kind() string               { return "slack" }
func (s slack) url() string                { return s.cfg.URL }
func (s slack) headers() map[string]string { return nil }

var severityMark = map[string]string{"critical": ":red_circle:", "error": ":large_orange_circle:",
	"warning": ":large_yellow_circle:", "info": ":large_blue_circle:"}

func (s slack) encode(n Notification) ([]byte, error) {
	head := fmt.Sprintf("%s *%s* %s", severityMark[n.Severity], strings.ToUpper(n.Severity), n.Summary)
	if n.Kind == KindResolve {
		head = ":white_check_mark: *RESOLVED* " + n.Summary
	}
	text := head
	if n.Text != "" {
		text += "\n" + n.Text
	}
	var ctx []string
	for _, kv := range [][2]string{{"incident", n.Incident}, {"target", n.Target}, {"by", n.Actor}} {
		if kv[1] != "" {
			ctx = append(ctx, kv[0]+" `"+kv[1]+"`")
		}
	}
	type txt struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	type block struct {
		Type     string `json:"type"`
		Text     *txt   `json:"text,omitempty"`
		Elements []txt  `json:"elements,omitempty"`
	}
	blocks := []block{{Type: "section", Text: &txt{"mrkdwn", truncate(head, 3000)}}}
	if n.Text != "" {
		blocks = append(blocks, block{Type: "section", Text: &txt{"mrkdwn", "```" + truncate(n.Text, 2990) + "```"}})
	}
	if len(ctx) > 0 {
		blocks = append(blocks, block{Type: "context", Elements: []txt{{"mrkdwn", strings.Join(ctx, " · ")}}})
	}
	return json.Marshal(struct {
		Text   string  `json:"text"`
		Blocks []block `json:"blocks"`
	}{truncate(text, 40000), blocks})
}

// pagerDuty speaks Events API v2: https://developer.pagerduty.com/docs/events-api-v2/trigger-events/
type pagerDuty struct {
	cfg    *config.ReceiverPagerDuty
	source string
}

func (p pagerDuty) kind() string               { return "pagerduty" }
func (p pagerDuty) url() string                { return p.cfg.URL }
func (p pagerDuty) headers() map[string]string { return nil }

// PagerDutyEvent is an Events API v2 request body.
type PagerDutyEvent struct {
	RoutingKey  string            `json:"routing_key"`
	EventAction string            `json:"event_action"` // trigger | resolve
	DedupKey    string            `json:"dedup_key,omitempty"`
	Payload     *PagerDutyPayload `json:"payload,omitempty"`
	Client      string            `json:"client,omitempty"`
}

// PagerDutyPayload is the payload of a trigger event.
type PagerDutyPayload struct {
	Summary       string            `json:"summary"`
	Source        string            `json:"source"`
	Severity      string            `json:"severity"` // critical, error, warning, info
	Timestamp     string            `json:"timestamp,omitempty"`
	Component     string            `json:"component,omitempty"`
	Group         string            `json:"group,omitempty"`
	Class         string            `json:"class,omitempty"`
	CustomDetails map[string]string `json:"custom_details,omitempty"`
}

func (p pagerDuty) encode(n Notification) ([]byte, error) {
	ev := PagerDutyEvent{RoutingKey: p.cfg.RoutingKey, DedupKey: truncate(n.Incident, 255), Client: "medic"}
	if n.Kind == KindResolve {
		if n.Incident == "" {
			return nil, nil // PagerDuty resolves by dedup key only
		}
		ev.EventAction = "resolve"
		return json.Marshal(ev)
	}
	src := p.cfg.Source
	if src == "" {
		src = p.source
	}
	details := maps.Clone(n.Fields)
	if details == nil {
		details = map[string]string{}
	}
	if n.Text != "" {
		details["details"] = n.Text
	}
	if n.Actor != "" {
		details["actor"] = n.Actor
	}
	sev := n.Severity
	if !slices.Contains([]string{"critical", "error", "warning", "info"}, sev) {
		sev = "error"
	}
	summary := n.Summary
	if summary == "" {
		summary = "medic notification" // PagerDuty rejects an empty summary
	}
	ev.EventAction = "trigger"
	ev.Payload = &PagerDutyPayload{Summary: truncate(summary, 1024), Source: src, Severity: sev,
		Timestamp: n.Time.UTC().Format(time.RFC3339Nano), Component: n.Target, Class: string(n.Kind), CustomDetails: details}
	return json.Marshal(ev)
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

package config

import (
	"fmt"
	"strings"
	"time"
)

// ActionRate allows Max runs in any sliding window of Per.
type ActionRate struct {
	// Runs per window.
	Max int `yaml:"max" json:"max,omitempty" jsonschema:"minimum=1"`
	// The window. Default 1h.
	Per Duration `yaml:"per" json:"per,omitempty"`
}

// Automation holds the global guardrails and trust settings.
type Automation struct {
	// Start with all automation paused (`medic resume` resumes). A pause or resume made with the
	// CLI is persisted and outlives restarts. Default false.
	Paused bool `yaml:"paused" json:"paused,omitempty"`
	// Every runbook only records what it would do. Default false.
	DryRun bool `yaml:"dry_run" json:"dry_run,omitempty"`
	// Runs allowed per window over all runbooks. Default 50 per 1h.
	Rate ActionRate `yaml:"rate" json:"rate,omitempty"`
	// Runs allowed per fixed window over all runbooks on every host of the fleet together, kept in
	// etcd and checked after this host's own rate; only with a fleet section. Windows are fixed
	// ([k·per, (k+1)·per) of Unix time), so two adjacent windows may admit 2·max within one per.
	// Default: the values of rate.
	FleetRate ActionRate `yaml:"fleet_rate" json:"fleet_rate,omitempty"`
	// A step acting on more targets than this (instances, services) is refused. Default 3.
	MaxTargets int `yaml:"max_targets" json:"max_targets,omitempty" jsonschema:"minimum=1"`
	// Consecutive verified successes that promote a runbook one trust level. Default 25.
	PromoteAfter int `yaml:"promote_after" json:"promote_after,omitempty" jsonschema:"minimum=1"`
	// A proposal not approved or denied within this expires and escalates. Default 15m.
	ApprovalTimeout Duration `yaml:"approval_timeout" json:"approval_timeout,omitempty"`
	// Flap detection per condition and target.
	Flap AutomationFlap `yaml:"flap" json:"flap,omitempty"`
	// Default time limit of one step. Default 2m.
	StepTimeout Duration `yaml:"step_timeout" json:"step_timeout,omitempty"`
	// Steps with the same key within this window run once. Default 1h.
	IdempotencyWindow Duration `yaml:"idempotency_window" json:"idempotency_window,omitempty"`
	// Receiver of escalations: failures, expired approvals, and conditions no runbook handles.
	Escalate RunbookRoute `yaml:"escalate" json:"escalate,omitempty"`
	// Receiver of notices: actions taken and proposals waiting for approval.
	Notify RunbookRoute `yaml:"notify" json:"notify,omitempty"`
	// Period of the summary of silent runs sent to notify. Default 24h.
	Summary Duration `yaml:"summary" json:"summary,omitempty"`
}

// AutomationFlap stops automation for a target whose condition changed state
// Changes times within Within, and escalates instead.
type AutomationFlap struct {
	// State changes (firing or resolved) that make a flap. Default 6.
	Changes int `yaml:"changes" json:"changes,omitempty" jsonschema:"minimum=2"`
	// The sliding window. Default 30m.
	Within Duration `yaml:"within" json:"within,omitempty"`
}

// Receiver is a notification target. Exactly one of webhook, slack and
// pagerduty is set.
type Receiver struct {
	// Generic JSON webhook: one POST per notification.
	Webhook *ReceiverWebhook `yaml:"webhook" json:"webhook,omitempty"`
	// Slack-compatible incoming webhook ({"text": …}).
	Slack *ReceiverSlack `yaml:"slack" json:"slack,omitempty"`
	// PagerDuty Events API v2: trigger and resolve, deduplicated by incident.
	PagerDuty *ReceiverPagerDuty `yaml:"pagerduty" json:"pagerduty,omitempty"`
	// Time limit of one request. Default 10s.
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
	// Notifications waiting to be sent; when full the oldest is dropped (and counted). Default 256.
	Queue int `yaml:"queue" json:"queue,omitempty" jsonschema:"minimum=1"`
	// Give up on a notification after retrying this long. Default 5m.
	RetryFor Duration `yaml:"retry_for" json:"retry_for,omitempty"`
}

// ReceiverWebhook posts medic's own JSON document.
type ReceiverWebhook struct {
	// http or https URL. Required.
	URL string `yaml:"url" json:"url"`
	// Extra request headers (e.g. Authorization).
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`
}

// ReceiverSlack posts to a Slack-compatible incoming webhook.
type ReceiverSlack struct {
	// The incoming webhook URL. Required.
	URL string `yaml:"url" json:"url"`
}

// ReceiverPagerDuty sends PagerDuty Events API v2 events.
type ReceiverPagerDuty struct {
	// Integration (routing) key of the PagerDuty service. Required.
	RoutingKey string `yaml:"routing_key" json:"routing_key"`
	// Events API endpoint. Default https://events.pagerduty.com/v2/enqueue.
	URL string `yaml:"url" json:"url,omitempty"`
	// Source reported in events. Default the host name.
	Source string `yaml:"source" json:"source,omitempty"`
}

// ServiceRemedy says what automation may do to one service.
type ServiceRemedy struct {
	// Never touched by automation: runbooks targeting it are blocked and escalate. Default false.
	Protected bool `yaml:"protected" json:"protected,omitempty"`
	// scale never goes below this. Default 1.
	MinInstances int `yaml:"min_instances" json:"min_instances,omitempty" jsonschema:"minimum=1"`
	// scale never goes above this. Default 0: the service's configured instances (no scale-out).
	MaxInstances int `yaml:"max_instances" json:"max_instances,omitempty" jsonschema:"minimum=0"`
}

// SetDefaults fills every unset field with its documented default.
func (a *Automation) SetDefaults() {
	a.Rate.setDefaults(50)
	if a.FleetRate == (ActionRate{}) {
		a.FleetRate = a.Rate
	}
	a.FleetRate.setDefaults(a.Rate.Max)
	defInt(&a.MaxTargets, 3)
	defInt(&a.PromoteAfter, 25)
	defDur(&a.ApprovalTimeout, 15*time.Minute)
	defInt(&a.Flap.Changes, 6)
	defDur(&a.Flap.Within, 30*time.Minute)
	defDur(&a.StepTimeout, 2*time.Minute)
	defDur(&a.IdempotencyWindow, time.Hour)
	defDur(&a.Summary, 24*time.Hour)
	if a.Escalate.Severity == "" {
		a.Escalate.Severity = "critical"
	}
	if a.Notify.Severity == "" {
		a.Notify.Severity = "info"
	}
}

// SetDefaults fills every unset field with its documented default.
func (r *Receiver) SetDefaults() {
	defDur(&r.Timeout, 10*time.Second)
	defInt(&r.Queue, 256)
	defDur(&r.RetryFor, 5*time.Minute)
	if p := r.PagerDuty; p != nil && p.URL == "" {
		p.URL = DefaultPagerDutyURL
	}
}

// SetDefaults fills every unset field with its documented default.
func (s *ServiceRemedy) SetDefaults() { defInt(&s.MinInstances, 1) }

// Validate reports semantic problems; call it after SetDefaults.
func (a *Automation) Validate() []FieldIssue {
	var is issues
	a.Rate.validate(&is, "rate")
	a.FleetRate.validate(&is, "fleet_rate")
	for _, f := range []struct {
		name string
		v    int
		min  int
	}{{"max_targets", a.MaxTargets, 1}, {"promote_after", a.PromoteAfter, 1}, {"flap.changes", a.Flap.Changes, 2}} {
		if f.v < f.min {
			is.add(f.name, "must be at least %d, got %d", f.min, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    Duration
	}{{"approval_timeout", a.ApprovalTimeout}, {"flap.within", a.Flap.Within}, {"step_timeout", a.StepTimeout},
		{"idempotency_window", a.IdempotencyWindow}, {"summary", a.Summary}} {
		if f.v <= 0 {
			is.add(f.name, "must be greater than 0")
		}
	}
	a.Escalate.validate(&is, "escalate")
	a.Notify.validate(&is, "notify")
	return is
}

// Validate reports semantic problems; call it after SetDefaults.
func (r *Receiver) Validate() []FieldIssue {
	var is issues
	n := 0
	if w := r.Webhook; w != nil {
		n++
		checkURL(&is, "webhook.url", w.URL)
		for _, k := range sortedKeys(w.Headers) {
			if !headerName.MatchString(k) {
				is.add("webhook.headers."+k, "invalid header name %q", k)
			}
		}
	}
	if s := r.Slack; s != nil {
		n++
		checkURL(&is, "slack.url", s.URL)
	}
	if p := r.PagerDuty; p != nil {
		n++
		if p.RoutingKey == "" {
			is.add("pagerduty.routing_key", "required: the integration key of the PagerDuty service")
		}
		checkURL(&is, "pagerduty.url", p.URL)
	}
	if n != 1 {
		is.add("", "set exactly one of webhook, slack and pagerduty")
	}
	if r.Timeout <= 0 {
		is.add("timeout", "must be greater than 0")
	}
	if r.Queue < 1 {
		is.add("queue", "must be at least 1, got %d", r.Queue)
	}
	if r.RetryFor < 0 {
		is.add("retry_for", "must not be negative")
	}
	return is
}

// Validate reports semantic problems; call it after SetDefaults.
func (s *ServiceRemedy) Validate() []FieldIssue {
	var is issues
	if s.MinInstances < 1 {
		is.add("min_instances", "must be at least 1, got %d", s.MinInstances)
	}
	if s.MaxInstances != 0 && s.MaxInstances < s.MinInstances {
		is.add("max_instances", "%d is below min_instances %d", s.MaxInstances, s.MinInstances)
	}
	if s.MaxInstances > maxInstances {
		is.add("max_instances", "must be at most %d", maxInstances)
	}
	return is
}

// RemedyIssues checks what the sections cannot check alone: receivers named
// by runbooks and automation exist, and literal step targets name configured
// services. Fields are paths from the root of the config.
func (c *Config) RemedyIssues() []FieldIssue {
	var is issues
	recv := func(path, name string) {
		if name != "" && c.Receivers[name] == nil {
			is.add(path, "unknown receiver %q%s", name, suggest(name, sortedKeys(c.Receivers)))
		}
	}
	recv("automation.escalate.receiver", c.Automation.Escalate.Receiver)
	recv("automation.notify.receiver", c.Automation.Notify.Receiver)
	for _, name := range sortedKeys(c.Runbooks) {
		r, p := c.Runbooks[name], "runbooks."+name
		if r == nil {
			is.add(p, "empty runbook")
			continue
		}
		recv(p+".escalate.receiver", r.Escalate.Receiver)
		recv(p+".notify.receiver", r.Notify.Receiver)
		for _, list := range []struct {
			name  string
			steps []RunbookStep
		}{{"steps", r.Steps}, {"rollback", r.Rollback}} {
			for i, s := range list.steps {
				sp := fmt.Sprintf("%s.%s[%d]", p, list.name, i)
				if s.Action == "notify" {
					recv(sp+".receiver", s.Receiver)
				}
				if s.Target != "" && !strings.Contains(s.Target, "$") {
					svc, _, _ := strings.Cut(s.Target, "/")
					if c.Services[svc] == nil {
						is.add(sp+".target", "unknown service %q%s", svc, suggest(svc, sortedKeys(c.Services)))
					}
				}
			}
		}
	}
	return is
}

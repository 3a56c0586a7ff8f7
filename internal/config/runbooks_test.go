package config_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

func issuesOf(is []config.FieldIssue) string {
	var b strings.Builder
	for _, i := range is {
		b.WriteString(i.Field + ": " + i.Message + "\n")
	}
	return b.String()
}

func TestRunbookValidate(t *testing.T) {
	ok := func() *config.Runbook {
		return &config.Runbook{Trigger: config.RunbookTrigger{Condition: "disk_full"},
			Steps: []config.RunbookStep{{Action: "exec", Command: []string{"true"}}}}
	}
	tests := []struct {
		name   string
		change func(r *config.Runbook)
		want   string // substring of the issues; "" = valid
	}{
		{"valid", func(r *config.Runbook) {}, ""},
		{"no condition", func(r *config.Runbook) { r.Trigger.Condition = "" }, "trigger.condition: required"},
		{"no steps", func(r *config.Runbook) { r.Steps = nil }, "steps: required"},
		{"unknown action", func(r *config.Runbook) { r.Steps[0].Action = "reboot" }, "steps[0].action: must be one of"},
		{"field of another action", func(r *config.Runbook) { r.Steps[0].URL = "http://x" }, "steps[0].url: does not apply to action exec"},
		{"scale needs by or to", func(r *config.Runbook) { r.Steps[0] = config.RunbookStep{Action: "scale"} }, "set exactly one of by and to"},
		{"delete_files relative root", func(r *config.Runbook) { r.Steps[0] = config.RunbookStep{Action: "delete_files", Root: "tmp"} }, "root: required: an absolute directory"},
		{"delete_files root /", func(r *config.Runbook) { r.Steps[0] = config.RunbookStep{Action: "delete_files", Root: "/"} }, "root: must not be /"},
		{"delete_files templated root", func(r *config.Runbook) {
			r.Steps[0] = config.RunbookStep{Action: "delete_files", Root: "/var/${labels.path}"}
		}, "must not use ${…}"},
		{"delete_files glob escapes", func(r *config.Runbook) {
			r.Steps[0] = config.RunbookStep{Action: "delete_files", Root: "/var/tmp", Glob: "../*"}
		}, "glob: must be relative to root without .."},
		{"unknown template ref", func(r *config.Runbook) { r.Steps[0].Command = []string{"echo", "${labels.host} ${env.HOME}"} }, "unknown reference ${env.HOME}"},
		{"unterminated template", func(r *config.Runbook) { r.Target = "${labels.instance" }, "unterminated ${"},
		{"trust above max", func(r *config.Runbook) { r.Trust, r.MaxTrust = "silent", "act" }, "trust: silent is above max_trust act"},
		{"bad regexp", func(r *config.Runbook) { r.Trigger.MatchRE = map[string]string{"path": "("} }, "trigger.match_re.path: invalid regular expression"},
		{"verify without outcome", func(r *config.Runbook) { r.Verify = &config.RunbookVerify{} }, "verify: set condition_resolved, service_ready or both"},
		{"verify for too long", func(r *config.Runbook) {
			r.Verify = &config.RunbookVerify{ServiceReady: true, Within: config.Duration(time.Second), For: config.Duration(time.Minute)}
		}, "verify.for"},
		{"http status", func(r *config.Runbook) {
			r.Steps[0] = config.RunbookStep{Action: "http", URL: "http://x", Status: "700"}
		}, "steps[0].status"},
		{"unknown builtin", func(r *config.Runbook) { r.Builtin = "crashlop_rollback" }, `unknown built-in runbook "crashlop_rollback"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok()
			tt.change(r)
			r.SetDefaults()
			got := issuesOf(r.Validate())
			if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Fatalf("issues:\n%swant %q", got, tt.want)
			}
		})
	}
}

func TestRunbookDefaults(t *testing.T) {
	r := &config.Runbook{Trigger: config.RunbookTrigger{Condition: "c"}, Steps: []config.RunbookStep{{Action: "http", URL: "http://x"}},
		Verify: &config.RunbookVerify{ServiceReady: true}}
	r.SetDefaults()
	s := r.Steps[0]
	if r.Trust != "propose" || r.MaxTrust != "silent" || r.Approve != "none" || r.Trigger.State != "firing" ||
		r.Rate.Max != 20 || r.Rate.Per.D() != time.Hour || r.Cooldown.D() != 5*time.Minute ||
		r.Verify.Within.D() != time.Minute || r.Verify.Every.D() != time.Second ||
		s.Method != "POST" || s.Status != "200-299" || s.Name != "http" {
		t.Fatalf("defaults: %+v %+v", r, s)
	}
	var a config.Automation
	a.SetDefaults()
	if a.Rate.Max != 50 || a.MaxTargets != 3 || a.PromoteAfter != 25 || a.ApprovalTimeout.D() != 15*time.Minute ||
		a.Flap.Changes != 6 || a.Flap.Within.D() != 30*time.Minute {
		t.Fatalf("automation defaults: %+v", a)
	}
	if is := a.Validate(); len(is) > 0 {
		t.Fatal(issuesOf(is))
	}
}

func TestBuiltins(t *testing.T) {
	if got := config.Builtins(); !slices.Equal(got, []string{"crashloop_rollback", "disk_cleanup", "leak_rolling_restart", "scale_in", "scale_out"}) {
		t.Fatalf("Builtins() = %v", got)
	}
	for _, name := range config.Builtins() {
		r := &config.Runbook{Builtin: name}
		if name == "disk_cleanup" {
			r.Params = map[string]string{"root": "/var/data/tmp"}
		}
		r.SetDefaults()
		if is := r.Validate(); len(is) > 0 {
			t.Errorf("%s: %s", name, issuesOf(is))
		}
		if len(r.Steps) == 0 || r.Trigger.Condition == "" || r.Description == "" {
			t.Errorf("%s expanded to %+v", name, r)
		}
	}
	// Fields written next to builtin win; params tune the rest.
	r := &config.Runbook{Builtin: "disk_cleanup", Trust: "act", Params: map[string]string{"root": "/data/tmp", "older_than": "2h", "condition": "data_disk_full"},
		Rollback: []config.RunbookStep{}}
	r.SetDefaults()
	if r.Trust != "act" || r.Trigger.Condition != "data_disk_full" || r.Verify.ConditionResolved != "data_disk_full" ||
		r.Steps[0].Root != "/data/tmp" || r.Steps[0].OlderThan.D() != 2*time.Hour {
		t.Fatalf("disk_cleanup with params: %+v %+v", r, r.Steps[0])
	}
	for _, tt := range []struct {
		params map[string]string
		want   string
	}{
		{nil, "params.root: required by built-in runbook disk_cleanup"},
		{map[string]string{"root": "/x", "older_than": "soon"}, "params.older_than: want a positive duration"},
		{map[string]string{"root": "/x", "roots": "/y"}, `has no parameter "roots"`},
	} {
		r := &config.Runbook{Builtin: "disk_cleanup", Params: tt.params}
		r.SetDefaults()
		if got := issuesOf(r.Validate()); !strings.Contains(got, tt.want) {
			t.Errorf("params %v: issues %q, want %q", tt.params, got, tt.want)
		}
	}
}

func TestReceiverAndRemedyIssues(t *testing.T) {
	r := &config.Receiver{Webhook: &config.ReceiverWebhook{URL: "http://x"}, Slack: &config.ReceiverSlack{URL: "http://y"}}
	r.SetDefaults()
	if got := issuesOf(r.Validate()); !strings.Contains(got, "set exactly one of webhook, slack and pagerduty") {
		t.Fatalf("two kinds: %q", got)
	}
	pd := &config.Receiver{PagerDuty: &config.ReceiverPagerDuty{}}
	pd.SetDefaults()
	if got := issuesOf(pd.Validate()); !strings.Contains(got, "pagerduty.routing_key: required") || pd.PagerDuty.URL != config.DefaultPagerDutyURL {
		t.Fatalf("pagerduty: %q url %q", got, pd.PagerDuty.URL)
	}
	sr := &config.ServiceRemedy{MinInstances: 3, MaxInstances: 2}
	if got := issuesOf(sr.Validate()); !strings.Contains(got, "max_instances: 2 is below min_instances 3") {
		t.Fatalf("service remedy: %q", got)
	}
	c := &config.Config{
		Services:   map[string]*config.Service{"web": {}},
		Receivers:  map[string]*config.Receiver{"oncall": pd},
		Automation: config.Automation{Escalate: config.RunbookRoute{Receiver: "oncal"}},
		Runbooks: map[string]*config.Runbook{"r": {Steps: []config.RunbookStep{
			{Action: "restart_instance", Target: "wbe/0"}, {Action: "notify", Receiver: "chat"}, {Action: "stop", Target: "${labels.instance}"}}}},
	}
	got := issuesOf(c.RemedyIssues())
	for _, want := range []string{`automation.escalate.receiver: unknown receiver "oncal"`, `runbooks.r.steps[0].target: unknown service "wbe"`,
		`runbooks.r.steps[1].receiver: unknown receiver "chat"`} {
		if !strings.Contains(got, want) {
			t.Errorf("RemedyIssues missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "steps[2]") {
		t.Errorf("a templated target was checked: %s", got)
	}
}

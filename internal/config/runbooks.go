package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Runbook is a remediation written as data: when its trigger matches a
// condition, the engine decides under the guardrails whether to act, to
// propose (wait for approval) or only to alert; acting runs the steps in
// order, verifies the outcome within a deadline and, on failure, runs the
// rollback steps and escalates. String inputs of steps may use ${…}
// references to the trigger (see RunbookStep).
type Runbook struct {
	// Name of a built-in runbook to start from: crashloop_rollback, leak_rolling_restart,
	// disk_cleanup, scale_out or scale_in. Fields set here override the built-in's.
	Builtin string `yaml:"builtin" json:"builtin,omitempty" jsonschema:"enum=crashloop_rollback,enum=leak_rolling_restart,enum=disk_cleanup,enum=scale_out,enum=scale_in"`
	// Parameters of the built-in runbook (see docs), also available to steps as ${params.NAME}.
	Params map[string]string `yaml:"params" json:"params,omitempty"`
	// One line saying what the runbook fixes; shown by `medic runbooks` and in notifications.
	Description string `yaml:"description" json:"description,omitempty"`
	// Which condition transitions start the runbook.
	Trigger RunbookTrigger `yaml:"trigger" json:"trigger,omitempty"`
	// The target guardrails apply to (cooldown, one remediation at a time, protection).
	// Default: ${labels.instance} when the trigger has that label, else ${labels.service},
	// else the condition name with its labels.
	Target string `yaml:"target" json:"target,omitempty"`
	// Checked before the first step; when it does not hold the run ends without acting.
	Precondition *RunbookCheck `yaml:"precondition" json:"precondition,omitempty"`
	// Ordered steps; the run stops at the first that fails.
	Steps []RunbookStep `yaml:"steps" json:"steps" jsonschema:"minItems=1"`
	// The expected outcome, which must hold within a deadline after the last step.
	Verify *RunbookVerify `yaml:"verify" json:"verify,omitempty"`
	// Steps run, in order, when a step or the verification fails.
	Rollback []RunbookStep `yaml:"rollback" json:"rollback,omitempty"`
	// Who is told, with the evidence, when the runbook fails or is refused. Default automation.escalate.
	Escalate RunbookRoute `yaml:"escalate" json:"escalate,omitempty"`
	// Who is told when the runbook acts (trust act). Default automation.notify.
	Notify RunbookRoute `yaml:"notify" json:"notify,omitempty"`
	// Starting trust level: observe (alert only), propose (a human approves), act (act and
	// notify) or silent (act; summary only). Default propose.
	Trust string `yaml:"trust" json:"trust,omitempty" jsonschema:"enum=observe,enum=propose,enum=act,enum=silent"`
	// Highest level promotion may reach. Default silent.
	MaxTrust string `yaml:"max_trust" json:"max_trust,omitempty" jsonschema:"enum=observe,enum=propose,enum=act,enum=silent"`
	// required: every run waits for `medic approve ID`, whatever the trust level. Default none.
	Approve string `yaml:"approve" json:"approve,omitempty" jsonschema:"enum=none,enum=required"`
	// Record what would be done and do nothing. Default false.
	DryRun bool `yaml:"dry_run" json:"dry_run,omitempty"`
	// Runs allowed per window for this runbook. Default 20 per 1h.
	Rate ActionRate `yaml:"rate" json:"rate,omitempty"`
	// After a run on a target, no other runbook acts on it for this long. Default 5m.
	Cooldown Duration `yaml:"cooldown" json:"cooldown,omitempty"`
}

// RunbookTrigger selects condition transitions by name, state and labels.
type RunbookTrigger struct {
	// Condition name (a configured condition, or an alert name pushed by Alertmanager). Required.
	Condition string `yaml:"condition" json:"condition"`
	// The transition that starts the runbook: firing (default) or resolved.
	State string `yaml:"state" json:"state,omitempty" jsonschema:"enum=firing,enum=resolved"`
	// Labels that must be equal.
	Match map[string]string `yaml:"match" json:"match,omitempty"`
	// Labels that must match a regular expression (anchored at both ends).
	MatchRE map[string]string `yaml:"match_re" json:"match_re,omitempty"`
	// Stabilisation: the condition must still be in state this long after the transition. Default 0.
	For Duration `yaml:"for" json:"for,omitempty"`
	// While the condition stays in state, decide again this often (stepwise scaling). 0 = once.
	Repeat Duration `yaml:"repeat" json:"repeat,omitempty"`
}

// RunbookCheck asks the condition engine about one condition, with the
// trigger's labels. Exactly one field is set.
type RunbookCheck struct {
	// Holds while this condition is firing.
	ConditionFiring string `yaml:"condition_firing" json:"condition_firing,omitempty"`
	// Holds while this condition is not firing.
	ConditionResolved string `yaml:"condition_resolved" json:"condition_resolved,omitempty"`
}

// RunbookVerify is the expected outcome of a run. At least one of
// condition_resolved and service_ready is set; all that are set must hold.
type RunbookVerify struct {
	// This condition (with the trigger's labels) is no longer firing.
	ConditionResolved string `yaml:"condition_resolved" json:"condition_resolved,omitempty"`
	// Every instance of the service is ready.
	ServiceReady bool `yaml:"service_ready" json:"service_ready,omitempty"`
	// Service for service_ready. Default: the service of the runbook's target, or ${labels.service}.
	Service string `yaml:"service" json:"service,omitempty"`
	// Deadline after the last step. Default 1m.
	Within Duration `yaml:"within" json:"within,omitempty"`
	// The outcome must hold without interruption this long (a crashing command can look ready
	// for a moment). Default 0: the first check that holds verifies.
	For Duration `yaml:"for" json:"for,omitempty"`
	// Time between checks. Default 1s.
	Every Duration `yaml:"every" json:"every,omitempty"`
}

// RunbookStep is one action. Which fields apply depends on action; the others
// must be empty. In target, key, command, env values, url, body, headers and
// message, ${labels.NAME}, ${params.NAME}, ${condition}, ${value} and
// ${target} are replaced by the trigger's values ($$ is a literal $); a
// reference to a missing label fails the step before it acts. Nothing else is
// evaluated: there are no functions, and commands are never run by a shell
// unless you write one into command.
type RunbookStep struct {
	// One of restart_instance, rolling_restart, stop, start, scale, drain, undrain, exec,
	// http, delete_files, rollback, notify, set_flag.
	Action string `yaml:"action" json:"action" jsonschema:"enum=restart_instance,enum=rolling_restart,enum=stop,enum=start,enum=scale,enum=drain,enum=undrain,enum=exec,enum=http,enum=delete_files,enum=rollback,enum=notify,enum=set_flag"`
	// Label in the audit log and notifications. Default: the action.
	Name string `yaml:"name" json:"name,omitempty"`
	// What the action applies to: an instance "web/0" or a service "web" (all its instances for
	// restart_instance, stop, start, drain). Default: the runbook's target.
	Target string `yaml:"target" json:"target,omitempty"`
	// required: the step waits for `medic approve ID` before it runs. Default none.
	Approve string `yaml:"approve" json:"approve,omitempty" jsonschema:"enum=none,enum=required"`
	// The step fails when it takes longer. Default automation.step_timeout.
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
	// Idempotency key: within automation.idempotency_window a second step with the same key
	// returns the first result instead of acting again. Default: incident, runbook, run and step.
	Key string `yaml:"key" json:"key,omitempty"`

	// exec: program and arguments (no shell).
	Command []string `yaml:"command" json:"command,omitempty"`
	// exec: extra environment.
	Env map[string]string `yaml:"env" json:"env,omitempty"`
	// exec: working directory (absolute).
	Dir string `yaml:"dir" json:"dir,omitempty"`
	// http: request method. Default POST.
	Method string `yaml:"method" json:"method,omitempty"`
	// http: absolute http or https URL.
	URL string `yaml:"url" json:"url,omitempty"`
	// http: request headers.
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`
	// http: request body.
	Body string `yaml:"body" json:"body,omitempty"`
	// http: accepted status range "LO-HI" or one code. Default 200-299.
	Status string `yaml:"status" json:"status,omitempty" jsonschema:"pattern=^[1-5][0-9][0-9](-[1-5][0-9][0-9])?$"`
	// delete_files: absolute directory; nothing outside it is touched, symlinks are not followed.
	Root string `yaml:"root" json:"root,omitempty"`
	// delete_files: path.Match pattern over file names at any depth, or, when it contains /,
	// over the path relative to root. Default *.
	Glob string `yaml:"glob" json:"glob,omitempty"`
	// delete_files: only files last modified longer ago than this. Default 0 (any age).
	OlderThan Duration `yaml:"older_than" json:"older_than,omitempty"`
	// scale: change of the instance count (+1 out, -1 in), clamped to the service's remedy bounds.
	By int `yaml:"by" json:"by,omitempty"`
	// scale: absolute instance count, clamped likewise. Set by or to.
	To int `yaml:"to" json:"to,omitempty"`
	// rolling_restart: time each instance has to become ready. Default 1m.
	ReadyTimeout Duration `yaml:"ready_timeout" json:"ready_timeout,omitempty"`
	// notify: receiver name.
	Receiver string `yaml:"receiver" json:"receiver,omitempty"`
	// notify: text of the notification.
	Message string `yaml:"message" json:"message,omitempty"`
	// notify: critical, error, warning or info. Default info.
	Severity string `yaml:"severity" json:"severity,omitempty" jsonschema:"enum=critical,enum=error,enum=warning,enum=info"`
	// set_flag: the flag of the target service (declared under services.X.flags).
	Flag string `yaml:"flag" json:"flag,omitempty"`
	// set_flag: the value, true or false.
	Value *bool `yaml:"value" json:"value,omitempty"`
}

// RunbookRoute names a receiver and the severity of what is sent to it.
type RunbookRoute struct {
	// Receiver name (see receivers).
	Receiver string `yaml:"receiver" json:"receiver,omitempty"`
	// critical, error, warning or info. Default critical for escalations, info for notices.
	Severity string `yaml:"severity" json:"severity,omitempty" jsonschema:"enum=critical,enum=error,enum=warning,enum=info"`
}

// Trust levels, lowest first, and other runbook enums.
const (
	TrustObserve = "observe"
	TrustPropose = "propose"
	TrustAct     = "act"
	TrustSilent  = "silent"

	ApproveNone     = "none"
	ApproveRequired = "required"

	StateFiring   = "firing"
	StateResolved = "resolved"

	// DefaultPagerDutyURL is the Events API v2 endpoint.
	DefaultPagerDutyURL = "https://events.pagerduty.com/v2/enqueue"
)

// TrustLevels lists the trust ladder from lowest to highest.
var TrustLevels = []string{TrustObserve, TrustPropose, TrustAct, TrustSilent}

// Actions lists the step actions.
var Actions = []string{"restart_instance", "rolling_restart", "stop", "start", "scale", "drain", "undrain",
	"exec", "http", "delete_files", "rollback", "notify", "set_flag"}

var severities = []string{"critical", "error", "warning", "info"}

// SetDefaults expands a built-in runbook (fields set in the file win) and
// fills every unset field with its documented default. Idempotent.
func (r *Runbook) SetDefaults() {
	if r.Builtin != "" {
		if b, _ := builtinRunbook(r.Builtin, r.Params); b != nil {
			r.merge(b)
		}
	}
	if r.Trigger.State == "" {
		r.Trigger.State = StateFiring
	}
	if r.Trust == "" {
		r.Trust = TrustPropose
	}
	if r.MaxTrust == "" {
		r.MaxTrust = TrustSilent
	}
	if r.Approve == "" {
		r.Approve = ApproveNone
	}
	r.Rate.setDefaults(20)
	if r.Cooldown == 0 {
		r.Cooldown = Duration(5 * time.Minute)
	}
	if v := r.Verify; v != nil {
		if v.Within == 0 {
			v.Within = Duration(time.Minute)
		}
		if v.Every == 0 {
			v.Every = Duration(time.Second)
		}
	}
	for _, steps := range [][]RunbookStep{r.Steps, r.Rollback} {
		for i := range steps {
			steps[i].setDefaults()
		}
	}
	if r.Escalate.Severity == "" && r.Escalate.Receiver != "" {
		r.Escalate.Severity = "critical"
	}
	if r.Notify.Severity == "" && r.Notify.Receiver != "" {
		r.Notify.Severity = "info"
	}
}

func (s *RunbookStep) setDefaults() {
	if s.Name == "" {
		s.Name = s.Action
	}
	if s.Approve == "" {
		s.Approve = ApproveNone
	}
	switch s.Action {
	case "http":
		if s.Method == "" {
			s.Method = "POST"
		}
		if s.Status == "" {
			s.Status = "200-299"
		}
	case "delete_files":
		if s.Glob == "" {
			s.Glob = "*"
		}
	case "rolling_restart":
		if s.ReadyTimeout == 0 {
			s.ReadyTimeout = Duration(time.Minute)
		}
	case "notify":
		if s.Severity == "" {
			s.Severity = "info"
		}
	}
}

func (a *ActionRate) setDefaults(max int) {
	if a.Max == 0 {
		a.Max = max
	}
	if a.Per == 0 {
		a.Per = Duration(time.Hour)
	}
}

func defInt(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}

func defDur(v *Duration, d time.Duration) {
	if *v == 0 {
		*v = Duration(d)
	}
}

// issues collects FieldIssues.
type issues []FieldIssue

func (is *issues) add(field, format string, args ...any) {
	*is = append(*is, FieldIssue{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Validate reports semantic problems of the runbook alone; call it after
// SetDefaults. References to receivers and services are checked by
// Config.RemedyIssues.
func (r *Runbook) Validate() []FieldIssue {
	var is issues
	if r.Builtin != "" {
		if _, bad := builtinRunbook(r.Builtin, r.Params); bad != nil {
			is = append(is, bad...)
		}
	}
	t := r.Trigger
	if t.Condition == "" {
		is.add("trigger.condition", "required: the condition name that starts the runbook")
	}
	if t.State != StateFiring && t.State != StateResolved {
		is.add("trigger.state", "must be firing or resolved, not %q", t.State)
	}
	for _, k := range sortedKeys(t.MatchRE) {
		if _, err := regexp.Compile("^(?:" + t.MatchRE[k] + ")$"); err != nil {
			is.add("trigger.match_re."+k, "invalid regular expression: %v", err)
		}
	}
	if t.Repeat > 0 && t.Repeat.D() < time.Second {
		is.add("trigger.repeat", "must be at least 1s when set, got %v", t.Repeat)
	}
	checkTemplateField(&is, "target", r.Target)
	if p := r.Precondition; p != nil && (p.ConditionFiring == "") == (p.ConditionResolved == "") {
		is.add("precondition", "set exactly one of condition_firing and condition_resolved")
	}
	if len(r.Steps) == 0 {
		is.add("steps", "required: at least one step")
	}
	for i := range r.Steps {
		r.Steps[i].validate(&is, fmt.Sprintf("steps[%d]", i))
	}
	for i := range r.Rollback {
		r.Rollback[i].validate(&is, fmt.Sprintf("rollback[%d]", i))
	}
	if v := r.Verify; v != nil {
		if v.ConditionResolved == "" && !v.ServiceReady {
			is.add("verify", "set condition_resolved, service_ready or both")
		}
		if v.Within <= 0 {
			is.add("verify.within", "must be greater than 0")
		}
		if v.For >= v.Within {
			is.add("verify.for", "%v leaves no time within %v to verify", v.For, v.Within)
		}
		if v.Every <= 0 || v.Every > v.Within {
			is.add("verify.every", "must be greater than 0 and at most within (%v), got %v", v.Within, v.Every)
		}
		checkTemplateField(&is, "verify.service", v.Service)
	}
	checkEnum(&is, "trust", r.Trust, TrustLevels)
	checkEnum(&is, "max_trust", r.MaxTrust, TrustLevels)
	if slices.Index(TrustLevels, r.MaxTrust) >= 0 && slices.Index(TrustLevels, r.Trust) > slices.Index(TrustLevels, r.MaxTrust) {
		is.add("trust", "%s is above max_trust %s", r.Trust, r.MaxTrust)
	}
	checkEnum(&is, "approve", r.Approve, []string{ApproveNone, ApproveRequired})
	r.Rate.validate(&is, "rate")
	r.Escalate.validate(&is, "escalate")
	r.Notify.validate(&is, "notify")
	return is
}

func (s *RunbookStep) validate(is *issues, p string) {
	if !slices.Contains(Actions, s.Action) {
		is.add(p+".action", "must be one of %s, not %q", strings.Join(Actions, ", "), s.Action)
		return
	}
	checkEnum(is, p+".approve", s.Approve, []string{ApproveNone, ApproveRequired})
	for _, f := range []struct{ name, v string }{{"target", s.Target}, {"key", s.Key}, {"url", s.URL}, {"body", s.Body}, {"message", s.Message}} {
		checkTemplateField(is, p+"."+f.name, f.v)
	}
	for i, a := range s.Command {
		checkTemplateField(is, fmt.Sprintf("%s.command[%d]", p, i), a)
	}
	for _, k := range sortedKeys(s.Env) {
		checkTemplateField(is, p+".env."+k, s.Env[k])
		if !envName.MatchString(k) {
			is.add(p+".env."+k, "invalid variable name %q", k)
		}
	}
	for _, k := range sortedKeys(s.Headers) {
		checkTemplateField(is, p+".headers."+k, s.Headers[k])
	}
	// used lists the action-specific fields that are set; each action allows its own.
	used := map[string]bool{"command": len(s.Command) > 0, "env": len(s.Env) > 0, "dir": s.Dir != "",
		"method": s.Method != "", "url": s.URL != "", "headers": len(s.Headers) > 0, "body": s.Body != "",
		"status": s.Status != "", "root": s.Root != "", "glob": s.Glob != "", "older_than": s.OlderThan != 0,
		"by": s.By != 0, "to": s.To != 0, "ready_timeout": s.ReadyTimeout != 0, "receiver": s.Receiver != "",
		"message": s.Message != "", "severity": s.Severity != "", "flag": s.Flag != "", "value": s.Value != nil}
	allowed := map[string][]string{
		"exec": {"command", "env", "dir"}, "http": {"method", "url", "headers", "body", "status"},
		"delete_files": {"root", "glob", "older_than"}, "scale": {"by", "to"}, "rolling_restart": {"ready_timeout"},
		"notify": {"receiver", "message", "severity"}, "set_flag": {"flag", "value"},
	}[s.Action]
	for _, f := range sortedKeys(used) {
		if used[f] && !slices.Contains(allowed, f) {
			is.add(p+"."+f, "does not apply to action %s", s.Action)
		}
	}
	switch s.Action {
	case "exec":
		if len(s.Command) == 0 || s.Command[0] == "" {
			is.add(p+".command", "required: the program and its arguments")
		}
		if s.Dir != "" && !strings.HasPrefix(s.Dir, "/") {
			is.add(p+".dir", "must be an absolute path, got %q", s.Dir)
		}
	case "http":
		if !strings.HasPrefix(s.URL, "http://") && !strings.HasPrefix(s.URL, "https://") {
			is.add(p+".url", "required: an http:// or https:// URL")
		}
		if msg := checkStatus(s.Status); msg != "" {
			is.add(p+".status", "%s", msg)
		}
	case "delete_files":
		switch {
		case !strings.HasPrefix(s.Root, "/"):
			is.add(p+".root", "required: an absolute directory, got %q", s.Root)
		case strings.Contains(s.Root, "${"):
			is.add(p+".root", "must not use ${…}: the allowed root is fixed in the config")
		case cleanPath(s.Root) == "/":
			is.add(p+".root", "must not be /")
		}
		if strings.HasPrefix(s.Glob, "/") || slices.Contains(strings.Split(s.Glob, "/"), "..") {
			is.add(p+".glob", "must be relative to root without .., got %q", s.Glob)
		} else if err := matchGlob(s.Glob); err != nil {
			is.add(p+".glob", "%v", err)
		}
	case "scale":
		if (s.By == 0) == (s.To == 0) {
			is.add(p, "set exactly one of by and to")
		}
		if s.To < 0 {
			is.add(p+".to", "must be at least 1, got %d", s.To)
		}
	case "set_flag":
		if s.Flag == "" {
			is.add(p+".flag", "required: the flag to set (declared under services.X.flags)")
		}
		if s.Value == nil {
			is.add(p+".value", "required: true or false")
		}
	case "notify":
		if s.Receiver == "" {
			is.add(p+".receiver", "required: the receiver name")
		}
		checkEnum(is, p+".severity", s.Severity, severities)
	}
}

func (r ActionRate) validate(is *issues, p string) {
	if r.Max < 1 {
		is.add(p+".max", "must be at least 1, got %d", r.Max)
	}
	if r.Per <= 0 {
		is.add(p+".per", "must be greater than 0")
	}
}

func (r RunbookRoute) validate(is *issues, p string) {
	if r.Severity != "" {
		checkEnum(is, p+".severity", r.Severity, severities)
	}
}

func checkEnum(is *issues, field, v string, allowed []string) {
	if !slices.Contains(allowed, v) {
		is.add(field, "must be one of %s, not %q", strings.Join(allowed, ", "), v)
	}
}

func checkURL(is *issues, field, u string) {
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		is.add(field, "required: an http:// or https:// URL, got %q", u)
	}
}

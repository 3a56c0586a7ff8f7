package config

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// The catalog of built-in runbooks. A user enables one by name and tunes it
// with params; any field written next to builtin replaces the built-in's:
//
//	runbooks:
//	  web_rollback: {builtin: crashloop_rollback, trust: act}
//	  tmp_cleanup:  {builtin: disk_cleanup, params: {root: /var/data/tmp, glob: "*.tmp", older_than: 1h}}
//
// Each entry maps a row of the failure table in DESIGN.md to steps.
var catalog = map[string]struct {
	params []param
	build  func(p map[string]string) *Runbook
}{
	// Crash loop after a change (bad deploy): roll back to the previous
	// known-good command; when that fails or the old version does not come
	// up, stop the instances (no more restarts) and escalate.
	"crashloop_rollback": {
		params: []param{{"condition", "crashloop", pString}, {"within", "2m", pDuration}, {"stable_for", "10s", pDuration}},
		build: func(p map[string]string) *Runbook {
			return &Runbook{
				Description: "crash loop after a change: roll back to the previous command, else stop and escalate",
				Trigger:     RunbookTrigger{Condition: p["condition"]},
				Target:      "${labels.service}",
				Steps:       []RunbookStep{{Action: "rollback", Target: "${labels.service}"}},
				Verify:      &RunbookVerify{ServiceReady: true, Within: mustDur(p["within"]), For: mustDur(p["stable_for"])},
				Rollback:    []RunbookStep{{Action: "stop", Target: "${labels.service}"}},
			}
		},
	},
	// Memory or FD leak: restart the instances one at a time, never below
	// the service's min_available (the supervisor waits for the budget).
	"leak_rolling_restart": {
		params: []param{{"condition", "memory_leak", pString}, {"ready_timeout", "1m", pDuration}, {"within", "5m", pDuration}},
		build: func(p map[string]string) *Runbook {
			return &Runbook{
				Description: "memory or FD leak: rolling restart within the disruption budget",
				Trigger:     RunbookTrigger{Condition: p["condition"]},
				Target:      "${labels.service}",
				Steps:       []RunbookStep{{Action: "rolling_restart", Target: "${labels.service}", ReadyTimeout: mustDur(p["ready_timeout"])}},
				Verify:      &RunbookVerify{ServiceReady: true, Within: mustDur(p["within"])},
			}
		},
	},
	// Disk above threshold: delete known-safe files, verify the condition
	// resolved, escalate if it did not.
	"disk_cleanup": {
		params: []param{{"root", "", pRequired}, {"glob", "*", pString}, {"older_than", "1h", pDuration},
			{"condition", "disk_full", pString}, {"within", "1m", pDuration}},
		build: func(p map[string]string) *Runbook {
			return &Runbook{
				Description: "disk above threshold: delete " + p["glob"] + " older than " + p["older_than"] + " under " + p["root"],
				Trigger:     RunbookTrigger{Condition: p["condition"]},
				Steps: []RunbookStep{{Action: "delete_files", Root: p["root"], Glob: p["glob"],
					OlderThan: mustDur(p["older_than"])}},
				Verify: &RunbookVerify{ConditionResolved: p["condition"], Within: mustDur(p["within"])},
			}
		},
	},
	// Latency or in-flight above target: add step instances every period
	// while the condition fires (HPA's scale-up policy: a step limit per
	// period), up to the service's max_instances.
	"scale_out": {
		params: []param{{"condition", "latency_high", pString}, {"service", "${labels.service}", pString},
			{"step", "1", pInt}, {"every", "1m", pDuration}, {"within", "2m", pDuration}},
		build: func(p map[string]string) *Runbook {
			every := mustDur(p["every"])
			return &Runbook{
				Description: "load above target: scale out by " + p["step"] + " every " + p["every"] + " while it lasts",
				Trigger:     RunbookTrigger{Condition: p["condition"], Repeat: every},
				Target:      p["service"],
				Steps:       []RunbookStep{{Action: "scale", Target: p["service"], By: mustInt(p["step"])}},
				Verify:      &RunbookVerify{ServiceReady: true, Service: p["service"], Within: mustDur(p["within"])},
				Cooldown:    every,
			}
		},
	},
	// Calm again: after the condition stayed resolved for the stabilisation
	// window (HPA's scale-down stabilisation, 5m by default), remove step
	// instances per window down to the service's min_instances.
	"scale_in": {
		params: []param{{"condition", "latency_high", pString}, {"service", "${labels.service}", pString},
			{"step", "1", pInt}, {"stabilization", "5m", pDuration}, {"within", "2m", pDuration}},
		build: func(p map[string]string) *Runbook {
			stab := mustDur(p["stabilization"])
			return &Runbook{
				Description: "calm again: scale in by " + p["step"] + " every " + p["stabilization"],
				Trigger:     RunbookTrigger{Condition: p["condition"], State: StateResolved, For: stab, Repeat: stab},
				Target:      p["service"],
				Steps:       []RunbookStep{{Action: "scale", Target: p["service"], By: -mustInt(p["step"])}},
				Verify:      &RunbookVerify{ServiceReady: true, Service: p["service"], Within: mustDur(p["within"])},
				Cooldown:    stab,
			}
		},
	},
}

// Builtins returns the names of the built-in runbooks.
func Builtins() []string { return sortedKeys(catalog) }

type paramKind int

const (
	pString paramKind = iota
	pRequired
	pDuration
	pInt
)

type param struct {
	name, def string
	kind      paramKind
}

// builtinRunbook returns the built-in runbook name with params p applied
// (nil when name is unknown or a parameter is invalid) and the problems.
func builtinRunbook(name string, p map[string]string) (*Runbook, []FieldIssue) {
	var is issues
	b, ok := catalog[name]
	if !ok {
		is.add("builtin", "unknown built-in runbook %q%s", name, suggest(name, Builtins()))
		return nil, is
	}
	vals := map[string]string{}
	known := map[string]bool{}
	for _, pr := range b.params {
		known[pr.name] = true
		v, set := p[pr.name]
		if !set {
			v = pr.def
		}
		vals[pr.name] = v
		switch pr.kind {
		case pRequired:
			if v == "" {
				is.add("params."+pr.name, "required by built-in runbook %s", name)
			}
		case pDuration:
			if d, err := parseParamDuration(v); err != nil || d <= 0 {
				is.add("params."+pr.name, "want a positive duration such as 30s or 5m, got %q", v)
			}
		case pInt:
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err != nil || n < 1 {
				is.add("params."+pr.name, "want a positive integer, got %q", v)
			}
		}
	}
	for _, k := range sortedKeys(p) {
		if !known[k] {
			var names []string
			for _, pr := range b.params {
				names = append(names, pr.name)
			}
			is.add("params."+k, "built-in runbook %s has no parameter %q (it takes %s)", name, k, strings.Join(names, ", "))
		}
	}
	if len(is) > 0 {
		return nil, is
	}
	return b.build(vals), nil
}

// merge fills the fields r leaves unset from the built-in b.
func (r *Runbook) merge(b *Runbook) {
	if r.Description == "" {
		r.Description = b.Description
	}
	if r.Trigger.Condition == "" {
		match, matchRE := r.Trigger.Match, r.Trigger.MatchRE
		r.Trigger = b.Trigger
		r.Trigger.Match, r.Trigger.MatchRE = match, matchRE
	}
	if r.Trigger.State == "" {
		r.Trigger.State = b.Trigger.State
	}
	if r.Trigger.For == 0 {
		r.Trigger.For = b.Trigger.For
	}
	if r.Trigger.Repeat == 0 {
		r.Trigger.Repeat = b.Trigger.Repeat
	}
	if r.Target == "" {
		r.Target = b.Target
	}
	if r.Precondition == nil {
		r.Precondition = b.Precondition
	}
	if len(r.Steps) == 0 {
		r.Steps = b.Steps
	}
	if r.Verify == nil {
		r.Verify = b.Verify
	}
	if r.Rollback == nil {
		r.Rollback = b.Rollback
	}
	if r.Cooldown == 0 {
		r.Cooldown = b.Cooldown
	}
}

func mustDur(v string) Duration {
	d, _ := parseParamDuration(v)
	return d
}

func mustInt(v string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(v))
	return n
}

func parseParamDuration(v string) (Duration, error) {
	var d Duration
	err := d.UnmarshalText([]byte(v))
	return d, err
}

// templateRef matches the names ${…} may use in step inputs.
var templateRef = regexp.MustCompile(`^(condition|value|target|(labels|params)\.[A-Za-z_][A-Za-z0-9_]*)$`)

// checkTemplateField reports a ${…} reference that is unterminated or names
// nothing the engine provides. The engine's expander follows the same rules.
func checkTemplateField(is *issues, field, s string) {
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			continue
		}
		switch s[i+1] {
		case '$':
			i++
		case '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				is.add(field, "unterminated ${ in %q", s)
				return
			}
			if ref := s[i+2 : i+end]; !templateRef.MatchString(ref) {
				is.add(field, "unknown reference ${%s}: use ${labels.NAME}, ${params.NAME}, ${condition}, ${value} or ${target}", ref)
			}
			i += end
		}
	}
}

func cleanPath(p string) string { return path.Clean("/" + p) }

// matchGlob checks a path.Match pattern by matching it once.
func matchGlob(glob string) error {
	if _, err := path.Match(glob, "x"); err != nil {
		return fmt.Errorf("invalid pattern %q: %w", glob, err)
	}
	return nil
}

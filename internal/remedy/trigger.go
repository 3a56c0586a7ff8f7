package remedy

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// Trigger is a condition transition handed to the engine (the agent converts
// detect transitions and pushed alerts into it).
type Trigger struct {
	Condition  string            `json:"condition"`
	Labels     map[string]string `json:"labels,omitempty"`
	State      string            `json:"state"` // "firing" | "resolved"
	Value      float64           `json:"value"`
	Confidence float64           `json:"confidence"`
	At         time.Time         `json:"at"` // when the condition entered State
	// Since is when the signal first crossed its threshold (the pending
	// time), if known; the incident's time to detect is At − Since. Zero
	// means At.
	Since  time.Time `json:"since,omitzero"`
	Reason string    `json:"reason,omitempty"`
}

// start is when the fault began as far as medic knows.
func (t Trigger) start() time.Time {
	if t.Since.IsZero() || t.Since.After(t.At) {
		return t.At
	}
	return t.Since
}

// key identifies the condition instance: name and labels.
func (t Trigger) key() string { return t.Condition + labelString(t.Labels) }

// labelString renders labels as {a=1,b=2}, sorted; "" for none.
func labelString(l map[string]string) string {
	if len(l) == 0 {
		return ""
	}
	keys := slices.Sorted(maps.Keys(l))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// subject is what the trigger is about when no runbook says otherwise: the
// instance label, else the service label, else the condition with its labels.
// Incidents group by it.
func (t Trigger) subject() string {
	if v := t.Labels["instance"]; v != "" {
		return v
	}
	if v := t.Labels["service"]; v != "" {
		return v
	}
	return t.key()
}

// runbook is a configured runbook with its matchers compiled.
type runbook struct {
	name    string
	cfg     *config.Runbook
	matchRE map[string]*regexp.Regexp
	level   Level // configured starting level
	max     Level
}

func compile(name string, rb *config.Runbook) (*runbook, error) {
	r := &runbook{name: name, cfg: rb, matchRE: map[string]*regexp.Regexp{}}
	for k, expr := range rb.Trigger.MatchRE {
		re, err := regexp.Compile("^(?:" + expr + ")$")
		if err != nil {
			return nil, fmt.Errorf("runbook %s: trigger.match_re.%s: %w", name, k, err)
		}
		r.matchRE[k] = re
	}
	var err error
	if r.level, err = ParseLevel(rb.Trust); err != nil {
		return nil, fmt.Errorf("runbook %s: %w", name, err)
	}
	if r.max, err = ParseLevel(rb.MaxTrust); err != nil {
		return nil, fmt.Errorf("runbook %s: max_trust: %w", name, err)
	}
	return r, nil
}

// matches reports whether t starts this runbook.
func (r *runbook) matches(t Trigger) bool {
	c := r.cfg.Trigger
	if c.Condition != t.Condition || c.State != t.State {
		return false
	}
	for k, v := range c.Match {
		if t.Labels[k] != v {
			return false
		}
	}
	for k, re := range r.matchRE {
		if !re.MatchString(t.Labels[k]) {
			return false
		}
	}
	return true
}

// vars are the values ${…} references expand to.
type vars struct {
	t      Trigger
	params map[string]string
	target string
}

// expand replaces ${labels.NAME}, ${params.NAME}, ${condition}, ${value}
// and ${target} in s; $$ is a literal $. A reference to a missing label or
// parameter is an error, never an empty string: an empty target must not
// widen into "everything".
func (v vars) expand(s string) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
			continue
		case '{':
		default:
			b.WriteByte('$')
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ in %q", s)
		}
		ref := s[i+2 : i+end]
		val, err := v.lookup(ref)
		if err != nil {
			return "", err
		}
		b.WriteString(val)
		i += end
	}
	return b.String(), nil
}

func (v vars) lookup(ref string) (string, error) {
	switch ref {
	case "condition":
		return v.t.Condition, nil
	case "value":
		return strconv.FormatFloat(v.t.Value, 'g', -1, 64), nil
	case "target":
		if v.target == "" {
			return "", fmt.Errorf("${target} used before the target is known")
		}
		return v.target, nil
	}
	if name, ok := strings.CutPrefix(ref, "labels."); ok {
		if val, ok := v.t.Labels[name]; ok && val != "" {
			return val, nil
		}
		return "", fmt.Errorf("the trigger has no label %q", name)
	}
	if name, ok := strings.CutPrefix(ref, "params."); ok {
		if val, ok := v.params[name]; ok {
			return val, nil
		}
		return "", fmt.Errorf("no parameter %q", name)
	}
	return "", fmt.Errorf("unknown reference ${%s}", ref)
}

func (v vars) expandAll(list []string) ([]string, error) {
	out := make([]string, len(list))
	for i, s := range list {
		var err error
		if out[i], err = v.expand(s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (v vars) expandMap(m map[string]string) (map[string]string, error) {
	if m == nil {
		return nil, nil
	}
	out := make(map[string]string, len(m))
	for k, s := range m {
		var err error
		if out[k], err = v.expand(s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

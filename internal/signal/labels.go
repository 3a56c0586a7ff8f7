package signal

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Labels identify one series of a signal: {service: web, instance: web/0}.
// A nil or empty Labels is a valid label set (a host-wide signal).
type Labels map[string]string

// Key is the canonical text of the label set: names sorted, values quoted,
// `instance="web/0",service="web"`. Two label sets are equal exactly when
// their keys are equal, so the key names a series (with the signal name) and
// an alert.
func (l Labels) Key() string {
	if len(l) == 0 {
		return ""
	}
	names := slices.Sorted(maps.Keys(l))
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l[n]))
	}
	return b.String()
}

// String renders the set as {a="1",b="2"}.
func (l Labels) String() string { return "{" + l.Key() + "}" }

// Matches reports whether l holds every label of match with the same value.
// An empty match matches every label set; a matcher with an empty value
// matches a series without that label (as in PromQL, where l="" selects
// series lacking l).
func (l Labels) Matches(match Labels) bool {
	for k, v := range match {
		if l[k] != v {
			return false
		}
	}
	return true
}

// Clone returns a copy that shares nothing with l (nil stays nil).
func (l Labels) Clone() Labels {
	if l == nil {
		return nil
	}
	return maps.Clone(l)
}

// With returns a copy of l with the labels of extra added or replaced.
func (l Labels) With(extra Labels) Labels {
	out := make(Labels, len(l)+len(extra))
	maps.Copy(out, l)
	maps.Copy(out, extra)
	return out
}

// SeriesKey names one series of a signal: name{labels}.
func SeriesKey(name string, l Labels) string { return name + l.String() }

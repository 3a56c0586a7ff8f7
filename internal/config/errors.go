package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a config file: where it is, which field, and what is
// wrong. Line and Col are 1-based; they are 0 only for a Config built in code
// (which has no source). Field is the dotted path from the document root, with
// list indexes in brackets: "services.web.probes.liveness.period",
// "services.web.command[0]". It is empty for YAML syntax errors.
type Error struct {
	File      string
	Line, Col int
	Field     string
	Msg       string
}

// Error renders "file:line:col: field: message", leaving out the parts that
// are unknown (a config built in code has no file or position).
func (e *Error) Error() string {
	return format(e.File, e.Line, e.Col, "", e.Field, e.Msg)
}

// ErrorAt is an Error about the field at path (dotted, as in Error.Field)
// with the file and position it has in c's source, for checks made outside
// this package (what the host can do).
func (c *Config) ErrorAt(path, msg string) *Error { return c.src.errorAt(path, msg) }

// Errors is every problem found in one config file, sorted by position. A
// non-nil error returned by Load, Parse or Validate is always Errors.
type Errors []*Error

// Error renders one Error per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each Error to errors.As and errors.Is.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sortErrors orders by line, column, field, then message, and drops exact
// duplicates (a node reached twice through an alias reports once).
func sortErrors(es Errors) Errors {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col),
			cmp.Compare(a.Field, b.Field), cmp.Compare(a.Msg, b.Msg))
	})
	return slices.CompactFunc(es, func(a, b *Error) bool { return *a == *b })
}

// Warning is a finding of Lint: the config is valid, but probably not what
// was meant. It has the same position format as Error.
type Warning struct {
	File      string
	Line, Col int
	Field     string
	Msg       string
}

// String renders "file:line:col: warning: field: message".
func (w Warning) String() string {
	return format(w.File, w.Line, w.Col, "warning: ", w.Field, w.Msg)
}

func format(file string, line, col int, prefix, field, msg string) string {
	var b strings.Builder
	if file != "" {
		b.WriteString(file)
		b.WriteString(":")
	}
	if line > 0 {
		b.WriteString(strconv.Itoa(line))
		b.WriteString(":")
		b.WriteString(strconv.Itoa(col))
		b.WriteString(":")
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	b.WriteString(prefix)
	if field != "" {
		b.WriteString(field)
		b.WriteString(": ")
	}
	b.WriteString(msg)
	return b.String()
}

package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Sections of the config owned by other packages (proxy, runbooks,
// conditions, receivers, …) plug into loading by implementing any of these on
// their pointer type. Parse, SetDefaults, Validate and Lint find them anywhere
// in the config, by reflection, and call them in document order: a new
// section needs no change here.
//
// A FieldIssue's Field is relative to the section ("listen", "retries.max");
// the loader prefixes the section's path and adds the position.
type (
	// SectionDefaulter fills the section's unset fields. It runs after the
	// defaults of this package, and must be idempotent.
	SectionDefaulter interface{ SetDefaults() }
	// SectionValidator checks the section on its own.
	SectionValidator interface{ Validate() []FieldIssue }
	// SectionRefValidator checks the section against the rest of the
	// config: names of services, conditions, receivers it refers to.
	SectionRefValidator interface {
		ValidateIn(c *Config) []FieldIssue
	}
	// SectionLinter returns warnings (valid but probably wrong) for Lint.
	SectionLinter interface{ Lint() []FieldIssue }
)

// eachSection calls fn with the path and address of every struct reachable
// from c (pointers followed, map values that are pointers, list elements),
// c itself excluded. Map keys are visited in sorted order.
func eachSection(c *Config, fn func(path string, v any)) {
	var walk func(path string, v reflect.Value, depth int)
	walk = func(path string, v reflect.Value, depth int) {
		if depth > 32 { // the config types are not recursive; this is only a guard
			return
		}
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(path, v.Elem(), depth+1)
			}
		case reflect.Struct:
			if depth > 0 && v.CanAddr() {
				fn(path, v.Addr().Interface())
			}
			t := v.Type()
			for i := range t.NumField() {
				f := t.Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if !f.IsExported() || name == "-" {
					continue
				}
				if name == "" {
					name = strings.ToLower(f.Name)
				}
				walk(join(path, name), v.Field(i), depth+1)
			}
		case reflect.Map:
			if v.Type().Key().Kind() != reflect.String {
				return
			}
			keys := v.MapKeys()
			names := make(map[string]reflect.Value, len(keys))
			for _, k := range keys {
				names[k.String()] = k
			}
			for _, k := range sortedKeys(names) {
				walk(join(path, k), v.MapIndex(names[k]), depth+1)
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(fmt.Sprintf("%s[%d]", path, i), v.Index(i), depth+1)
			}
		}
	}
	walk("", reflect.ValueOf(c).Elem(), 0)
}

// sectionDefaults runs every SectionDefaulter.
func (c *Config) sectionDefaults() {
	eachSection(c, func(_ string, v any) {
		if s, ok := v.(SectionDefaulter); ok {
			s.SetDefaults()
		}
	})
}

// rootChecker is a check across sections written as a method on Config
// (Config.RemedyIssues, owned by the remedy work); its Fields are paths from
// the root. The assertion keeps this file compiling whether it exists or not.
type rootChecker interface{ RemedyIssues() []FieldIssue }

// sectionIssues runs every SectionValidator and SectionRefValidator, then
// the cross-section checks defined on Config itself.
func (c *Config) sectionIssues(ck *checker) {
	eachSection(c, func(path string, v any) {
		var issues []FieldIssue
		if s, ok := v.(SectionValidator); ok {
			issues = append(issues, s.Validate()...)
		}
		if s, ok := v.(SectionRefValidator); ok {
			issues = append(issues, s.ValidateIn(c)...)
		}
		for _, is := range issues {
			ck.add(join(path, is.Field), "%s", is.Message)
		}
	})
	if r, ok := any(c).(rootChecker); ok {
		for _, is := range r.RemedyIssues() {
			ck.add(is.Field, "%s", is.Message)
		}
	}
}

// sectionWarnings runs every SectionLinter.
func (c *Config) sectionWarnings(warn func(path, format string, args ...any)) {
	eachSection(c, func(path string, v any) {
		if s, ok := v.(SectionLinter); ok {
			for _, is := range s.Lint() {
				warn(join(path, is.Field), "%s", is.Message)
			}
		}
	})
}

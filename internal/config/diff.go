package config

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
)

// Change is what a reload changes: service names, each list sorted.
type Change struct {
	Added     []string // in next only
	Removed   []string // in old only
	Changed   []string // in both, with a different spec
	Unchanged []string // in both, identical
	// APIChanged is set when the api section differs; the listener is not
	// rebuilt on reload.
	APIChanged bool
	// Sections lists the other top-level keys whose value differs
	// ("data_dir", "runbooks", …), sorted.
	Sections []string
}

// Empty reports whether the reload changes nothing at all.
func (ch Change) Empty() bool {
	return len(ch.Added) == 0 && len(ch.Removed) == 0 && len(ch.Changed) == 0 && !ch.APIChanged &&
		len(ch.Sections) == 0
}

// Diff compares two configs service by service, deeply: any difference in a
// service's spec (command, env, probes, restart policy, …) marks it changed.
// Both configs must have their defaults applied, as Load and Parse return
// them; a nil config counts as Default() (no services).
func Diff(old, next *Config) Change {
	if old == nil {
		old = Default()
	}
	if next == nil {
		next = Default()
	}
	var ch Change
	oldSvcs, newSvcs := old.Services, next.Services
	for _, name := range sortedKeys(oldSvcs) {
		if _, ok := newSvcs[name]; !ok {
			ch.Removed = append(ch.Removed, name)
		}
	}
	for _, name := range sortedKeys(newSvcs) {
		o, ok := oldSvcs[name]
		switch {
		case !ok:
			ch.Added = append(ch.Added, name)
		case reflect.DeepEqual(o, newSvcs[name]):
			ch.Unchanged = append(ch.Unchanged, name)
		default:
			ch.Changed = append(ch.Changed, name)
		}
	}
	ch.APIChanged = !reflect.DeepEqual(old.apiOwn(), next.apiOwn())
	ov, nv := reflect.ValueOf(old).Elem(), reflect.ValueOf(next).Elem()
	t := ov.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" || name == "services" || name == "api" {
			continue
		}
		if !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			ch.Sections = append(ch.Sections, name)
		}
	}
	slices.Sort(ch.Sections)
	return ch
}

// apiOwn is the api section without what follows data_dir (the default
// admin socket lives in it): a changed data_dir is its own section.
func (c *Config) apiOwn() API {
	a := c.API
	if a.Socket == filepath.Join(c.DataDir, DefaultSocketName) {
		a.Socket = ""
	}
	return a
}

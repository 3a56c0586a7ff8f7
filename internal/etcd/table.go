package etcd

import (
	"slices"
	"strings"

	"github.com/medic-dev/medic/internal/pmap"
)

// Table keeps the values of the keys directly under Prefix+"/" (Snapshot.
// Under's keys, by their last segment) parsed, from the updates of
// WatchChanges: a change re-parses only the key it names and costs
// O(length of the key), and Rows is a persistent map that readers on other
// goroutines may keep (it never changes; the next update makes a new one).
// A Table is used by one goroutine (the watch's); the zero value with
// Prefix and Parse set is ready.
type Table[T any] struct {
	Prefix string
	Parse  func(name string, kv KV) (T, error)
	// Invalid is told of a value Parse refused: that name is left out of the
	// table (as if absent) until a valid value replaces it. nil: ignored.
	Invalid func(name string, err error)
	rows    pmap.Map[T]
	rev     int64
}

// Apply applies u. On a Reset it parses every key (the table is rebuilt:
// keys gone during a lost watch leave it) and returns nil; otherwise it
// returns the names whose row was put, replaced or removed, sorted, once
// each.
func (t *Table[T]) Apply(u Update) (changed []string) {
	t.rev = u.Rev
	if u.Reset {
		var rows pmap.Map[T]
		for k, kv := range u.KVs {
			if name, ok := t.name(k); ok {
				if v, ok := t.parse(name, kv); ok {
					rows = rows.Set(name, v)
				}
			}
		}
		t.rows = rows
		return nil
	}
	for _, ch := range u.Changes {
		name, ok := t.name(ch.Key)
		if !ok {
			continue
		}
		changed = append(changed, name)
		if !ch.Deleted {
			if v, ok := t.parse(name, ch.KV); ok {
				t.rows = t.rows.Set(name, v)
				continue
			}
		}
		t.rows = t.rows.Delete(name)
	}
	slices.Sort(changed)
	return slices.Compact(changed)
}

// Rows is the table as of Rev: parsed values by name.
func (t *Table[T]) Rows() pmap.Map[T] { return t.rows }

// Rev is the revision of the last update applied.
func (t *Table[T]) Rev() int64 { return t.rev }

func (t *Table[T]) name(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, t.Prefix+"/")
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return "", false
	}
	return rest, true
}

func (t *Table[T]) parse(name string, kv KV) (T, bool) {
	v, err := t.Parse(name, kv)
	if err != nil {
		if t.Invalid != nil {
			t.Invalid(name, err)
		}
		return v, false
	}
	return v, true
}

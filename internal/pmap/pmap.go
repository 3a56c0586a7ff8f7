// Package pmap is the persistent sorted map the etcd watches keep: every
// change returns a new map and leaves the old one as it was, sharing all
// but the changed path with it. A watch applies one changed key without
// copying the rest and hands the result to readers on other goroutines
// without a copy and without a lock: a Map is immutable once made.
//
// It is HashiCorp's immutable radix tree (github.com/hashicorp/go-immutable-
// radix/v2, under Consul's and Nomad's go-memdb) with string keys and a
// usable zero value; a change costs O(key length), not O(keys).
package pmap

import iradix "github.com/hashicorp/go-immutable-radix/v2"

// Map is a persistent sorted map. The zero value is the empty map, ready
// to use. A Map is safe to read from many goroutines.
type Map[V any] struct {
	t *iradix.Tree[V]
}

func (m Map[V]) tree() *iradix.Tree[V] {
	if m.t == nil {
		return iradix.New[V]()
	}
	return m.t
}

// Len is the number of keys.
func (m Map[V]) Len() int {
	if m.t == nil {
		return 0
	}
	return m.t.Len()
}

// Get returns the value of key.
func (m Map[V]) Get(key string) (V, bool) {
	if m.t == nil {
		var zero V
		return zero, false
	}
	return m.t.Get([]byte(key))
}

// Set returns m with key set to val.
func (m Map[V]) Set(key string, val V) Map[V] {
	t, _, _ := m.tree().Insert([]byte(key), val)
	return Map[V]{t: t}
}

// Delete returns m without key (m itself when key is absent).
func (m Map[V]) Delete(key string) Map[V] {
	if m.t == nil {
		return m
	}
	t, _, ok := m.t.Delete([]byte(key))
	if !ok {
		return m
	}
	return Map[V]{t: t}
}

// All calls fn with every key and value in key order until fn returns
// false (a range-over-func iterator: for k, v := range m.All()).
func (m Map[V]) All() func(fn func(string, V) bool) {
	return func(fn func(string, V) bool) {
		if m.t == nil {
			return
		}
		m.t.Root().Walk(func(k []byte, v V) bool { return !fn(string(k), v) })
	}
}

// Keys returns the keys in order.
func (m Map[V]) Keys() []string {
	out := make([]string, 0, m.Len())
	for k := range m.All() {
		out = append(out, k)
	}
	return out
}

// Clone returns the content as a new Go map, owned by the caller.
func (m Map[V]) Clone() map[string]V {
	out := make(map[string]V, m.Len())
	for k, v := range m.All() {
		out[k] = v
	}
	return out
}

// From returns a map of the content of src.
func From[V any](src map[string]V) Map[V] {
	txn := iradix.New[V]().Txn()
	for k, v := range src {
		txn.Insert([]byte(k), v)
	}
	return Map[V]{t: txn.Commit()}
}

// Package pmap is a persistent sorted map from strings to values: every
// change returns a new map and leaves the old one as it was, sharing all
// but O(log n) nodes with it. A watch applies one changed key in
// O(log n) and hands the result to readers on other goroutines without a
// copy and without a lock: a Map is immutable once made.
//
// It is a treap whose priorities are hashes of the keys (so its shape
// depends on the keys only, expected depth O(log n)), changed by
// path-copying split and merge.
package pmap

import "hash/maphash"

// Map is a persistent sorted map. The zero value is the empty map, ready
// to use. A Map is safe to read from many goroutines.
type Map[V any] struct {
	root *node[V]
}

type node[V any] struct {
	key         string
	val         V
	prio        uint64
	size        int
	left, right *node[V]
}

var seed = maphash.MakeSeed()

func prio(key string) uint64 { return maphash.String(seed, key) }

func (n *node[V]) len() int {
	if n == nil {
		return 0
	}
	return n.size
}

// with returns a copy of n with new children.
func (n *node[V]) with(left, right *node[V]) *node[V] {
	c := *n
	c.left, c.right = left, right
	c.size = 1 + left.len() + right.len()
	return &c
}

// split returns the nodes of n with keys < key, the node with key (nil
// when absent) and the nodes with keys > key; n is left unchanged.
func split[V any](n *node[V], key string) (lt, eq, gt *node[V]) {
	if n == nil {
		return nil, nil, nil
	}
	switch {
	case key < n.key:
		lt, eq, gt = split(n.left, key)
		return lt, eq, n.with(gt, n.right)
	case key > n.key:
		lt, eq, gt = split(n.right, key)
		return n.with(n.left, lt), eq, gt
	}
	return n.left, n, n.right
}

// merge joins a and b, every key of a below every key of b.
func merge[V any](a, b *node[V]) *node[V] {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio >= b.prio:
		return a.with(a.left, merge(a.right, b))
	}
	return b.with(merge(a, b.left), b.right)
}

// Len is the number of keys.
func (m Map[V]) Len() int { return m.root.len() }

// Get returns the value of key.
func (m Map[V]) Get(key string) (V, bool) {
	n := m.root
	for n != nil {
		switch {
		case key < n.key:
			n = n.left
		case key > n.key:
			n = n.right
		default:
			return n.val, true
		}
	}
	var zero V
	return zero, false
}

// Set returns m with key set to val.
func (m Map[V]) Set(key string, val V) Map[V] {
	lt, _, gt := split(m.root, key)
	return Map[V]{root: merge(merge(lt, &node[V]{key: key, val: val, prio: prio(key), size: 1}), gt)}
}

// Delete returns m without key (m itself when key is absent).
func (m Map[V]) Delete(key string) Map[V] {
	if _, ok := m.Get(key); !ok {
		return m
	}
	lt, _, gt := split(m.root, key)
	return Map[V]{root: merge(lt, gt)}
}

// All calls fn with every key and value in key order until fn returns
// false (a range-over-func iterator: for k, v := range m.All()).
func (m Map[V]) All() func(fn func(string, V) bool) {
	return func(fn func(string, V) bool) { walk(m.root, fn) }
}

func walk[V any](n *node[V], fn func(string, V) bool) bool {
	for n != nil {
		if !walk(n.left, fn) || !fn(n.key, n.val) {
			return false
		}
		n = n.right
	}
	return true
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
	var m Map[V]
	for k, v := range src {
		m = m.Set(k, v)
	}
	return m
}

package pmap_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/medic-dev/medic/internal/pmap"
)

// TestAgainstMap applies a random sequence of sets and deletes to a Map and
// to a Go map and compares them after every step, and checks that every
// earlier version is unchanged.
func TestAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var m pmap.Map[int]
	ref := map[string]int{}
	type version struct {
		m   pmap.Map[int]
		ref map[string]int
	}
	var versions []version
	for i := range 5000 {
		k := fmt.Sprintf("h%03d", r.IntN(300))
		if r.IntN(3) == 0 {
			m = m.Delete(k)
			delete(ref, k)
		} else {
			m = m.Set(k, i)
			ref[k] = i
		}
		if i%97 == 0 {
			versions = append(versions, version{m, maps.Clone(ref)})
		}
		if i%13 == 0 {
			same(t, i, m, ref)
		}
		want, in := ref[k]
		if v, ok := m.Get(k); ok != in || v != want {
			t.Fatalf("step %d: Get(%s) = %d, %v; want %d, %v", i, k, v, ok, want, in)
		}
	}
	for i, v := range versions {
		same(t, i, v.m, v.ref)
	}
}

func same(t *testing.T, step int, m pmap.Map[int], ref map[string]int) {
	t.Helper()
	if m.Len() != len(ref) {
		t.Fatalf("step %d: Len %d, want %d", step, m.Len(), len(ref))
	}
	if got, want := m.Keys(), slices.Sorted(maps.Keys(ref)); !slices.Equal(got, want) {
		t.Fatalf("step %d: keys %v, want %v", step, got, want)
	}
	if got := m.Clone(); !maps.Equal(got, ref) {
		t.Fatalf("step %d: content %v, want %v", step, got, ref)
	}
}

func TestEmptyAndStop(t *testing.T) {
	var m pmap.Map[string]
	if m.Len() != 0 || m.Delete("x").Len() != 0 {
		t.Fatal("the empty map is not empty")
	}
	if _, ok := m.Get("x"); ok {
		t.Fatal("Get on the empty map found a key")
	}
	m = pmap.From(map[string]string{"a": "1", "b": "2", "c": "3"})
	var seen []string
	for k := range m.All() {
		seen = append(seen, k)
		if k == "b" {
			break
		}
	}
	if !slices.Equal(seen, []string{"a", "b"}) {
		t.Fatalf("iteration stopped at %v, want [a b]", seen)
	}
}

func BenchmarkSet(b *testing.B) {
	var m pmap.Map[int]
	for i := range 1000 {
		m = m.Set(fmt.Sprintf("h%04d", i), i)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m = m.Set(fmt.Sprintf("h%04d", i%1000), i)
	}
}

package etcd_test

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/medic-dev/medic/internal/etcd"
)

// TestTableAgainstRebuild applies a random sequence of puts and deletes
// (values that do not parse, keys nested deeper or beside the prefix, a
// response with several events on one key, a Reset now and then) to a
// Table and compares it after every update with a full rebuild from the
// keys as etcd holds them (Snapshot.Under, every value parsed).
func TestTableAgainstRebuild(t *testing.T) {
	parse := func(name string, kv etcd.KV) (int, error) {
		n, err := strconv.Atoi(string(kv.Value))
		if err != nil {
			return 0, errors.New("not a number")
		}
		return n, nil
	}
	keys := []string{"/p/a", "/p/b", "/p/c", "/p/d", "/p/e", "/p/a/x", "/pq/a", "/p/", "/other"}
	r := rand.New(rand.NewPCG(3, 4))
	store := map[string]etcd.KV{} // what etcd holds
	tab := &etcd.Table[int]{Prefix: "/p", Parse: parse}
	rev := int64(1)
	for step := range 3000 {
		var u etcd.Update
		if step == 0 || r.IntN(50) == 0 {
			// A lost watch: keys changed while nobody watched, then a read.
			for range r.IntN(4) {
				k := keys[r.IntN(len(keys))]
				delete(store, k)
			}
			rev++
			u = etcd.Update{Rev: rev, Reset: true, KVs: maps.Clone(store)}
		} else {
			u = etcd.Update{}
			for range 1 + r.IntN(3) {
				k := keys[r.IntN(len(keys))]
				rev++
				if r.IntN(3) == 0 {
					if _, ok := store[k]; !ok {
						continue // etcd sends no event for deleting an absent key
					}
					delete(store, k)
					u.Changes = append(u.Changes, etcd.Change{Key: k, Deleted: true})
					continue
				}
				v := strconv.Itoa(r.IntN(100))
				if r.IntN(8) == 0 {
					v = "bad"
				}
				kv := etcd.KV{Value: []byte(v), ModRev: rev}
				store[k] = kv
				u.Changes = append(u.Changes, etcd.Change{Key: k, KV: kv})
			}
			u.Rev = rev
		}
		before := tab.Rows().Clone()
		changed := tab.Apply(u)
		want := map[string]int{}
		for name, kv := range (etcd.Snapshot{KVs: store}).Under("/p") {
			if n, err := parse(name, kv); err == nil {
				want[name] = n
			}
		}
		if got := tab.Rows().Clone(); !maps.Equal(got, want) {
			t.Fatalf("step %d (%+v): table %v, rebuild %v", step, u, got, want)
		}
		if tab.Rev() != u.Rev {
			t.Fatalf("step %d: rev %d, want %d", step, tab.Rev(), u.Rev)
		}
		if u.Reset {
			continue
		}
		// Every name whose row differs is reported (a report of a name whose
		// row is the same again is allowed: a put of the same value).
		for _, name := range slices.Sorted(maps.Keys(union(before, want))) {
			b, inB := before[name]
			w, inW := want[name]
			if (inB != inW || b != w) && !slices.Contains(changed, name) {
				t.Fatalf("step %d: %s changed (%d,%v → %d,%v) but not reported in %v", step, name, b, inB, w, inW, changed)
			}
		}
		if !slices.IsSorted(changed) || len(slices.Compact(slices.Clone(changed))) != len(changed) {
			t.Fatalf("step %d: changed %v not sorted and unique", step, changed)
		}
	}
}

func union(a, b map[string]int) map[string]int {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// A reader's rows never change under it.
func TestTableRowsArePersistent(t *testing.T) {
	tab := &etcd.Table[string]{Prefix: "/p", Parse: func(_ string, kv etcd.KV) (string, error) { return string(kv.Value), nil }}
	tab.Apply(etcd.Update{Rev: 1, Reset: true, KVs: map[string]etcd.KV{"/p/a": {Value: []byte("1")}}})
	kept := tab.Rows()
	tab.Apply(etcd.Update{Rev: 2, Changes: []etcd.Change{{Key: "/p/a", Deleted: true}, {Key: "/p/b", KV: etcd.KV{Value: []byte("2")}}}})
	if got := fmt.Sprint(kept.Clone()); got != "map[a:1]" {
		t.Fatalf("kept rows became %s", got)
	}
	if got := fmt.Sprint(tab.Rows().Clone()); got != "map[b:2]" {
		t.Fatalf("rows %s, want map[b:2]", got)
	}
}

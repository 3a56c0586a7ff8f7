package netguard

import (
	"net"
	"net/http"
	"testing"
)

func order(l *idleList) []*Conn {
	var out []*Conn
	for c := l.Front(); c != nil; c = c.links[l.kind].next {
		out = append(out, c)
	}
	return out
}

func TestIdleListOrderAndRemoval(t *testing.T) {
	a, b, c := &Conn{}, &Conn{}, &Conn{}
	l := idleList{kind: onSource}
	other := idleList{kind: onListener}
	l.PushBack(a)
	l.PushBack(b)
	l.PushBack(c)
	other.PushBack(b) // a second kind of list is independent
	if got := order(&l); len(got) != 3 || got[0] != a || got[1] != b || got[2] != c || l.Len() != 3 {
		t.Fatalf("order %v len %d; want a b c", got, l.Len())
	}
	l.Remove(b) // the middle
	if got := order(&l); len(got) != 2 || got[0] != a || got[1] != c {
		t.Fatalf("after removing the middle: %v", got)
	}
	if other.Front() != b || other.Len() != 1 {
		t.Fatal("removing from one kind of list touched another")
	}
	l.Remove(b) // not on it: nothing
	l.Remove(a) // the head
	if l.Front() != c || l.Len() != 1 {
		t.Fatalf("after removing the head: front %p len %d", l.Front(), l.Len())
	}
	l.PushBack(a) // back in, at the end (newest)
	l.Remove(a)   // the tail
	l.Remove(c)
	if l.Front() != nil || l.Len() != 0 || l.tail != nil {
		t.Fatal("list not empty after removing everything")
	}
}

// An HTTP request's two state changes (active, idle again) allocate
// nothing: they were the proxy hot path's only allocations.
func TestConnStateAllocatesNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Wrap(ln, Options{Limits: Limits{MaxConns: 4, MaxPerSource: 4}, FDs: NewFDs(1<<20, 16, nil)})
	defer l.Close()
	cl, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	l.ConnState(sc, http.StateNew)
	allocs := testing.AllocsPerRun(1000, func() {
		l.ConnState(sc, http.StateActive)
		l.ConnState(sc, http.StateIdle)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per request's state changes; want 0", allocs)
	}
	c := sc.(*Conn)
	if l.idle.Front() != c || l.o.FDs.idle.Front() != c || l.sources[c.src].idle.Front() != c {
		t.Fatal("an idle connection is not on its three idle lists")
	}
	l.ConnState(sc, http.StateActive)
	if l.idle.Len() != 0 || l.o.FDs.idle.Len() != 0 || l.sources[c.src].idle.Len() != 0 {
		t.Fatal("an active connection is still on an idle list")
	}
}

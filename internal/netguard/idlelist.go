package netguard

// The idle lists are intrusive: a Conn carries its own links, one per list
// kind, so that an HTTP request's two state changes (active, then idle
// again) allocate nothing. container/list allocated an element per list per
// change: the proxy's hot path's only allocations.

// Kinds of idle list a Conn can be on at once.
const (
	onListener = iota // the listener's evictable connections
	onSource          // the same, of one source address
	onFDs             // every listener's, for the descriptor reserve
	listKinds
)

// link is a Conn's place on one list.
type link struct {
	prev, next *Conn
	in         bool
}

// idleList is a doubly-linked list of Conns, oldest first, through the
// Conns' links of one kind. The zero value is an empty list of kind
// onListener; set kind before use for the others.
type idleList struct {
	head, tail *Conn
	n          int
	kind       int
}

func (l *idleList) Len() int { return l.n }

// Front is the oldest Conn on the list, or nil.
func (l *idleList) Front() *Conn { return l.head }

// PushBack appends c; c must not be on a list of this kind.
func (l *idleList) PushBack(c *Conn) {
	k := &c.links[l.kind]
	k.prev, k.next, k.in = l.tail, nil, true
	if l.tail != nil {
		l.tail.links[l.kind].next = c
	} else {
		l.head = c
	}
	l.tail = c
	l.n++
}

// Remove takes c off l if it is on a list of l's kind, which must be l.
func (l *idleList) Remove(c *Conn) {
	k := &c.links[l.kind]
	if !k.in {
		return
	}
	if k.prev != nil {
		k.prev.links[l.kind].next = k.next
	} else {
		l.head = k.next
	}
	if k.next != nil {
		k.next.links[l.kind].prev = k.prev
	} else {
		l.tail = k.prev
	}
	*k = link{}
	l.n--
}

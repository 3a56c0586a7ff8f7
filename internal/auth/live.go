package auth

import (
	"slices"
	"sync/atomic"
)

// Live is a tokens file as last loaded. Reload reads it again and swaps the
// result in at once: a token removed from the file is refused from then on.
// A nil *Live holds no tokens file (Tokens returns nil).
type Live struct {
	path string
	cur  atomic.Pointer[Tokens]
}

// OpenLive loads the tokens file at path.
func OpenLive(path string) (*Live, error) {
	t, err := LoadTokens(path)
	if err != nil {
		return nil, err
	}
	l := &Live{path: path}
	l.cur.Store(t)
	return l, nil
}

// Tokens returns the tokens in force; nil for a nil *Live.
func (l *Live) Tokens() *Tokens {
	if l == nil {
		return nil
	}
	return l.cur.Load()
}

// Path is the tokens file.
func (l *Live) Path() string { return l.path }

// Reload reads the file again. On success the new tokens are in force and
// added/removed name the tokens that appeared and went (a token whose role
// or digest changed counts as both). On error the tokens in force stay.
func (l *Live) Reload() (added, removed []string, err error) {
	next, err := LoadTokens(l.path)
	if err != nil {
		return nil, nil, err
	}
	prev := l.cur.Swap(next)
	key := func(e entry) string { return e.name + "\x00" + e.role.String() + "\x00" + string(e.digest[:]) }
	was, is := map[string]string{}, map[string]string{}
	for _, e := range prev.entries {
		was[key(e)] = e.name
	}
	for _, e := range next.entries {
		is[key(e)] = e.name
	}
	for k, n := range is {
		if _, ok := was[k]; !ok {
			added = append(added, n)
		}
	}
	for k, n := range was {
		if _, ok := is[k]; !ok {
			removed = append(removed, n)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	return added, removed, nil
}

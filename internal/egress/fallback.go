package egress

import (
	"container/list"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// Bounds of the last-good store, per dependency.
const (
	// lastGoodMaxBody: larger answers are passed through and not kept. 256 KiB.
	lastGoodMaxBody = 256 << 10
	// lastGoodMaxKeys: the least recently stored key is forgotten first. 1000.
	lastGoodMaxKeys = 1000
)

// FallbackHeader marks an answer medic made up instead of the dependency's;
// its value says which kind: last-good, file or static.
const FallbackHeader = "X-Medic-Fallback"

// answer is a kept or configured response.
type answer struct {
	status int
	header http.Header
	body   []byte
	at     time.Time // when it was stored (last-good only)
}

// fallback answers a failed call; nil when the dependency has none.
type fallback struct {
	static *answer // from body or file; nil when neither is set
	kind   string  // "static" or "file" for static
	ttl    time.Duration

	mu    sync.Mutex
	order *list.List // of string keys, most recent at the front
	keys  map[string]*list.Element
	kept  map[string]answer
}

func newFallback(c *config.DependencyFallback) (*fallback, error) {
	if c == nil {
		return nil, nil
	}
	f := &fallback{}
	switch {
	case c.File != "":
		b, err := os.ReadFile(c.File)
		if err != nil {
			return nil, fmt.Errorf("read fallback file: %w", err)
		}
		f.static, f.kind = &answer{status: c.Status, body: b}, "file"
	case c.Body != "":
		f.static, f.kind = &answer{status: c.Status, body: []byte(c.Body)}, "static"
	}
	if c.LastGood != nil {
		f.ttl = c.LastGood.TTL.D()
		f.order, f.keys, f.kept = list.New(), map[string]*list.Element{}, map[string]answer{}
	}
	return f, nil
}

// keeps reports whether answers to calls of method are kept: GETs, when
// last_good is set.
func (f *fallback) keeps(method string) bool {
	return f != nil && f.kept != nil && method == http.MethodGet
}

// requestKey is the last-good key of the application's call r (before it is
// rewritten for the dependency), or "" when its answers are not kept.
func (f *fallback) requestKey(r *http.Request) string {
	if !f.keeps(r.Method) {
		return ""
	}
	return r.Method + " " + r.URL.RequestURI()
}

// store keeps a good answer under key k (requestKey).
func (f *fallback) store(k string, a answer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.keys[k]; ok {
		f.order.MoveToFront(e)
	} else {
		f.keys[k] = f.order.PushFront(k)
	}
	f.kept[k] = a
	for f.order.Len() > lastGoodMaxKeys {
		old := f.order.Remove(f.order.Back()).(string)
		delete(f.keys, old)
		delete(f.kept, old)
	}
}

// pick returns the answer for a failed call of key k (requestKey; "" when
// its answers are not kept) and its kind, or false.
func (f *fallback) pick(k string, now time.Time) (answer, string, bool) {
	if f == nil {
		return answer{}, "", false
	}
	if k != "" && f.kept != nil {
		f.mu.Lock()
		a, ok := f.kept[k]
		f.mu.Unlock()
		if ok && now.Sub(a.at) <= f.ttl {
			return a, "last-good", true
		}
	}
	if f.static != nil {
		return *f.static, f.kind, true
	}
	return answer{}, "", false
}

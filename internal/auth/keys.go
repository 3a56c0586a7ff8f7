package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// ClientKeys is a parsed client keys file: the API keys of a service's
// inbound clients, each mapped to a name and a class (see the proxy's client
// classes). Like Tokens it holds SHA-256 digests, never the keys. A
// *ClientKeys is immutable and safe for concurrent use.
type ClientKeys struct {
	byDigest map[[sha256.Size]byte]ClientKey
	byName   map[string][sha256.Size]byte // for signed requests (VerifySigned)
}

// ClientKey is who a verified key belongs to.
type ClientKey struct {
	Name  string
	Class string
}

// MaxClientKeyLen bounds a presented key: a longer one is not hashed and
// verifies as nobody.
const MaxClientKeyLen = 512

// Len returns the number of keys.
func (k *ClientKeys) Len() int {
	if k == nil {
		return 0
	}
	return len(k.byDigest)
}

// Verify returns the owner of key. The lookup is by the key's SHA-256, so
// how long it takes says nothing about how close a guess came. A nil
// *ClientKeys verifies nobody.
func (k *ClientKeys) Verify(key []byte) (ClientKey, bool) {
	if k == nil || len(key) == 0 || len(key) > MaxClientKeyLen {
		return ClientKey{}, false
	}
	c, ok := k.byDigest[sha256.Sum256(key)]
	return c, ok
}

// Classes returns the set of classes the keys name.
func (k *ClientKeys) Classes() map[string]bool {
	out := map[string]bool{}
	if k != nil {
		for _, c := range k.byDigest {
			out[c.Class] = true
		}
	}
	return out
}

var validClass = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// LoadClientKeys reads and parses the client keys file at path (see
// ParseClientKeys). A file that its group or others may write is refused.
func LoadClientKeys(path string) (*ClientKeys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: load client keys: %w", err)
	}
	if err := checkFileMode(path, "client keys file", "put themselves in any class"); err != nil {
		return nil, err
	}
	return ParseClientKeys(path, data)
}

// ParseClientKeys parses a client keys file:
//
//	keys:
//	  - {name: checkout-web, class: human, sha256: <64 hex digits>}
//	  - {name: support-bot, class: agent, sha256: <64 hex digits>}
//
// strictly, as ParseTokens does: every problem is reported as
// "name:line:col: message".
func ParseClientKeys(name string, data []byte) (k *ClientKeys, err error) {
	defer func() {
		if p := recover(); p != nil {
			k, err = nil, fmt.Errorf("auth: %s: cannot parse client keys file: %v", name, p)
		}
	}()
	var doc struct {
		Keys []keyEntry `yaml:"keys"`
	}
	if err := yaml.UnmarshalWithOptions(data, &doc, yaml.Strict()); err != nil {
		return nil, renamed(positioned(name, err))
	}
	var issues []error
	issue := func(p scalar, format string, args ...any) {
		issues = append(issues, fmt.Errorf("%s:%d:%d: %s", name, p.line, p.col, fmt.Sprintf(format, args...)))
	}
	k = &ClientKeys{byDigest: map[[sha256.Size]byte]ClientKey{}, byName: map[string][sha256.Size]byte{}}
	names := map[string]bool{}
	for _, fe := range doc.Keys {
		ok := true
		switch {
		case !fe.Name.set || fe.Name.value == "":
			issue(fe.pos, "key needs a name")
			ok = false
		case !validName.MatchString(fe.Name.value):
			issue(fe.Name, "invalid key name %q: want letters, digits, '.', '_' or '-', at most 64", fe.Name.value)
			ok = false
		case names[fe.Name.value]:
			issue(fe.Name, "duplicate key name %q", fe.Name.value)
			ok = false
		}
		names[fe.Name.value] = true
		if !fe.Class.set || fe.Class.value == "" {
			issue(fe.pos, "key %q needs a class", fe.Name.value)
			ok = false
		} else if !validClass.MatchString(fe.Class.value) {
			issue(fe.Class, "invalid class %q: want lower-case letters, digits, '_' or '-', at most 32", fe.Class.value)
			ok = false
		}
		var digest [sha256.Size]byte
		if !fe.SHA256.set {
			issue(fe.pos, "key %q needs a sha256", fe.Name.value)
			ok = false
		} else if d, err := hex.DecodeString(fe.SHA256.value); err != nil || len(d) != sha256.Size {
			issue(fe.SHA256, "sha256 of key %q must be %d hex digits", fe.Name.value, 2*sha256.Size)
			ok = false
		} else {
			copy(digest[:], d)
			if other, dup := k.byDigest[digest]; dup {
				issue(fe.SHA256, "key %q has the same sha256 as %q", fe.Name.value, other.Name)
				ok = false
			}
		}
		if ok {
			k.byDigest[digest] = ClientKey{Name: fe.Name.value, Class: fe.Class.value}
			k.byName[fe.Name.value] = digest
		}
	}
	if len(issues) > 0 {
		return nil, fmt.Errorf("auth: invalid client keys file:\n%w", errors.Join(issues...))
	}
	return k, nil
}

// renamed turns positioned's "tokens file" into "client keys file".
func renamed(err error) error {
	return &renamedError{err}
}

type renamedError struct{ err error }

func (e *renamedError) Error() string {
	return strings.Replace(e.err.Error(), "invalid tokens file", "invalid client keys file", 1)
}
func (e *renamedError) Unwrap() error { return e.err }

// keyEntry is one item of the keys list, with positions for messages.
type keyEntry struct {
	pos    scalar
	Name   scalar
	Class  scalar
	SHA256 scalar
}

// UnmarshalYAML decodes the item strictly and keeps its position.
func (e *keyEntry) UnmarshalYAML(node ast.Node) error {
	e.pos = at(node)
	var fields struct {
		Name   scalar `yaml:"name"`
		Class  scalar `yaml:"class"`
		SHA256 scalar `yaml:"sha256"`
	}
	if _, ok := node.(ast.MapNode); !ok {
		return &posError{e.pos, "a key must be a mapping with name, class and sha256"}
	}
	if err := yaml.NodeToValue(node, &fields, yaml.Strict()); err != nil {
		return err
	}
	e.Name, e.Class, e.SHA256 = fields.Name, fields.Class, fields.SHA256
	return nil
}

// Changes names the keys of next that k lacks (added) and those of k that
// next lacks (removed); a key whose name, class or digest changed counts as
// both. Either side may be nil (no keys).
func (k *ClientKeys) Changes(next *ClientKeys) (added, removed []string) {
	diff := func(a, b *ClientKeys) []string {
		var out []string
		if a == nil {
			return nil
		}
		for d, c := range a.byDigest {
			if b == nil || b.byDigest[d] != c {
				out = append(out, c.Name)
			}
		}
		sort.Strings(out)
		return out
	}
	return diff(next, k), diff(k, next)
}

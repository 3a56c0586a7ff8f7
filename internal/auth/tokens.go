package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// Identity is who made a request: a token's name and role.
type Identity struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
}

// AnonymousName is the Identity name of requests served without a token. No
// token may take it.
const AnonymousName = "anonymous"

// Anonymous is the identity of reads when no tokens file is configured.
var Anonymous = Identity{Name: AnonymousName, Role: RoleViewer}

// Tokens is a parsed tokens file. It holds SHA-256 digests, never the
// tokens themselves. A *Tokens is immutable and safe for concurrent use; to
// reload, load a new one and swap it in.
type Tokens struct {
	entries []entry
}

type entry struct {
	name   string
	role   Role
	digest [sha256.Size]byte
}

// Len returns the number of tokens.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.entries)
}

// Holds reports whether a token named id.Name with role id.Role is in t.
func (t *Tokens) Holds(id Identity) bool {
	if t == nil {
		return false
	}
	for _, e := range t.entries {
		if e.name == id.Name && e.role == id.Role {
			return true
		}
	}
	return false
}

// Authenticate returns the identity whose digest is SHA-256(bearer). It
// compares against every entry in constant time and does not stop at the
// first match, so the response time says nothing about which token, if any,
// came close. A nil *Tokens authenticates nobody.
func (t *Tokens) Authenticate(bearer string) (Identity, bool) {
	if t == nil || bearer == "" {
		return Identity{}, false
	}
	d := sha256.Sum256([]byte(bearer))
	found := -1
	for i := range t.entries {
		if subtle.ConstantTimeCompare(d[:], t.entries[i].digest[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Identity{}, false
	}
	e := t.entries[found]
	return Identity{Name: e.name, Role: e.role}, true
}

// validName is what a token name may look like: it ends up as the actor of
// audit records and in log lines, so no spaces, quotes or control characters.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// LoadTokens reads and parses the tokens file at path (see ParseTokens).
//
// A file that its group or others may write is refused with the reason.
func LoadTokens(path string) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: load tokens: %w", err)
	}
	if err := checkMode(path); err != nil {
		return nil, err
	}
	return ParseTokens(path, data)
}

// ParseTokens parses a tokens file:
//
//	tokens:
//	  - {name: alertmanager, role: operator, sha256: <64 hex digits>}
//
// strictly: unknown keys, duplicate keys, a missing key, an unknown role,
// a malformed digest, a bad or duplicate name and a digest listed twice are
// errors. Each problem is reported as "name:line:col: message", all of them
// joined into the one error. An empty file holds no tokens.
func ParseTokens(name string, data []byte) (t *Tokens, err error) {
	defer func() {
		// The YAML library is large and fed untrusted bytes; a panic in it
		// must not take medic down with it.
		if p := recover(); p != nil {
			t, err = nil, fmt.Errorf("auth: %s: cannot parse tokens file: %v", name, p)
		}
	}()
	var doc struct {
		Tokens []fileEntry `yaml:"tokens"`
	}
	if err := yaml.UnmarshalWithOptions(data, &doc, yaml.Strict()); err != nil {
		return nil, positioned(name, err)
	}
	var issues []error
	issue := func(p scalar, format string, args ...any) {
		issues = append(issues, fmt.Errorf("%s:%d:%d: %s", name, p.line, p.col, fmt.Sprintf(format, args...)))
	}
	t = &Tokens{}
	names := map[string]bool{}
	digests := map[[sha256.Size]byte]string{}
	for _, fe := range doc.Tokens {
		var e entry
		ok := true
		switch {
		case !fe.Name.set:
			issue(fe.pos, "token needs a name")
			ok = false
		case fe.Name.value == "":
			issue(fe.Name, "token needs a name")
			ok = false
		case fe.Name.value == AnonymousName:
			issue(fe.Name, "the name %q is reserved", AnonymousName)
			ok = false
		case !validName.MatchString(fe.Name.value):
			issue(fe.Name, "invalid token name %q: want letters, digits, '.', '_' or '-', at most 64", fe.Name.value)
			ok = false
		case names[fe.Name.value]:
			issue(fe.Name, "duplicate token name %q", fe.Name.value)
			ok = false
		}
		e.name = fe.Name.value
		names[e.name] = true
		if !fe.Role.set {
			issue(fe.pos, "token %q needs a role", e.name)
			ok = false
		} else if e.role, err = ParseRole(fe.Role.value); err != nil {
			issue(fe.Role, "%v", err)
			ok = false
		}
		if !fe.SHA256.set {
			issue(fe.pos, "token %q needs a sha256", e.name)
			ok = false
		} else if d, err := hex.DecodeString(fe.SHA256.value); err != nil || len(d) != sha256.Size {
			issue(fe.SHA256, "sha256 of token %q must be %d hex digits", e.name, 2*sha256.Size)
			ok = false
		} else {
			copy(e.digest[:], d)
			if other, dup := digests[e.digest]; dup {
				issue(fe.SHA256, "token %q has the same sha256 as %q", e.name, other)
				ok = false
			}
			digests[e.digest] = e.name
		}
		if ok {
			t.entries = append(t.entries, e)
		}
	}
	if len(issues) > 0 {
		return nil, fmt.Errorf("auth: invalid tokens file:\n%w", errors.Join(issues...))
	}
	return t, nil
}

// fileEntry is one item of the tokens list, with positions for messages.
type fileEntry struct {
	pos    scalar // where the item starts
	Name   scalar
	Role   scalar
	SHA256 scalar
}

// UnmarshalYAML decodes the item strictly and keeps its position.
func (e *fileEntry) UnmarshalYAML(node ast.Node) error {
	e.pos = at(node)
	var fields struct {
		Name   scalar `yaml:"name"`
		Role   scalar `yaml:"role"`
		SHA256 scalar `yaml:"sha256"`
	}
	if _, ok := node.(ast.MapNode); !ok {
		return &posError{e.pos, "a token must be a mapping with name, role and sha256"}
	}
	if err := yaml.NodeToValue(node, &fields, yaml.Strict()); err != nil {
		return err
	}
	e.Name, e.Role, e.SHA256 = fields.Name, fields.Role, fields.SHA256
	return nil
}

// scalar is a YAML scalar's text and where it was.
type scalar struct {
	value     string
	set       bool
	line, col int
}

// UnmarshalYAML takes the scalar's text as written, so that a digest made
// only of decimal digits is not read as a number.
func (s *scalar) UnmarshalYAML(node ast.Node) error {
	*s = at(node)
	s.set = true
	switch n := node.(type) {
	case *ast.StringNode:
		s.value = n.Value
	case *ast.NullNode:
	case ast.ScalarNode:
		if tk := node.GetToken(); tk != nil {
			s.value = tk.Value
		}
	default:
		return &posError{*s, "want a string"}
	}
	return nil
}

func at(node ast.Node) scalar {
	if node == nil || node.GetToken() == nil {
		return scalar{}
	}
	p := node.GetToken().Position
	return scalar{line: p.Line, col: p.Column}
}

// posError is an error at a position in the file.
type posError struct {
	at  scalar
	msg string
}

func (e *posError) Error() string { return fmt.Sprintf("%d:%d: %s", e.at.line, e.at.col, e.msg) }

// positioned renders a decoding error as "name:line:col: message".
func positioned(name string, err error) error {
	var pe *posError
	if errors.As(err, &pe) {
		return fmt.Errorf("auth: invalid tokens file:\n%s:%d:%d: %s", name, pe.at.line, pe.at.col, pe.msg)
	}
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		p := ye.GetToken().Position
		return fmt.Errorf("auth: invalid tokens file:\n%s:%d:%d: %s", name, p.Line, p.Column, ye.GetMessage())
	}
	return fmt.Errorf("auth: invalid tokens file %s: %w", name, err)
}

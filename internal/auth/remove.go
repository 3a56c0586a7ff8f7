package auth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// ErrNoSuchToken: the tokens file has no token of that name.
var ErrNoSuchToken = errors.New("auth: no such token")

// RemoveToken removes the token named name from the tokens file at path,
// keeping its mode, its other entries and, when it can, its comments; the
// file is replaced atomically. A running medic refuses the token from its
// next reload (`medic reload` or SIGHUP) on.
func RemoveToken(path, name string) error {
	unlock, err := lockFor(path)
	if err != nil {
		return fmt.Errorf("auth: remove token %s: %w", name, err)
	}
	defer unlock()
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("auth: remove token %s: %w", name, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("auth: remove token %s: %w", name, err)
	}
	oldTokens, err := ParseTokens(path, old)
	if err != nil {
		return fmt.Errorf("auth: remove token %s: fix the tokens file first: %w", name, err)
	}
	var kept []entry
	for _, e := range oldTokens.entries {
		if e.name != name {
			kept = append(kept, e)
		}
	}
	if len(kept) == len(oldTokens.entries) {
		return fmt.Errorf("%w: %s has no token named %q", ErrNoSuchToken, path, name)
	}
	updated, err := withoutItem(old, "tokens", name)
	if check, perr := ParseTokens(path, updated); err != nil || perr != nil || check.Len() != len(kept) || check.has(name) {
		updated = canonical(kept) // comments could not be kept: write the entries plainly
	}
	if err := writeFileAtomic(path, updated, fi.Mode().Perm()); err != nil {
		return fmt.Errorf("auth: remove token %s: %w", name, err)
	}
	return nil
}

func (t *Tokens) has(name string) bool {
	for _, e := range t.entries {
		if e.name == name {
			return true
		}
	}
	return false
}

func canonical(es []entry) []byte {
	var b strings.Builder
	b.WriteString("tokens:\n")
	if len(es) == 0 {
		return []byte("tokens: []\n")
	}
	for _, e := range es {
		fmt.Fprintf(&b, "  - {name: %q, role: %s, sha256: %x}\n", e.name, e.role, e.digest)
	}
	return []byte(b.String())
}

// withoutItem returns src without the entry named name of its list under
// the top-level key list (tokens, keys).
func withoutItem(src []byte, list, name string) ([]byte, error) {
	f, err := parser.ParseBytes(src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	p, err := yaml.PathString("$." + list)
	if err != nil {
		return nil, err
	}
	node, err := p.FilterFile(f)
	if err != nil {
		return nil, err
	}
	seq, ok := node.(*ast.SequenceNode)
	if !ok {
		return nil, fmt.Errorf("%s is not a list", list)
	}
	var values []ast.Node
	for _, v := range seq.Values {
		if entryName(v) != name {
			values = append(values, v)
		}
	}
	if len(values) == 0 {
		return []byte(list + ": []\n"), nil
	}
	seq.Values = values
	out := f.String()
	if !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return []byte(out), nil
}

func entryName(n ast.Node) string {
	var m *ast.MappingNode
	switch v := n.(type) {
	case *ast.MappingNode:
		m = v
	case *ast.MappingValueNode:
		m = &ast.MappingNode{Values: []*ast.MappingValueNode{v}}
	default:
		return ""
	}
	for _, mv := range m.Values {
		if mv.Key.String() == "name" {
			return strings.Trim(mv.Value.String(), `"'`)
		}
	}
	return ""
}

// checkMode refuses a tokens file that others than its owner may change.
func checkMode(path string) error {
	return checkFileMode(path, "tokens file", "give themselves any role")
}

// checkFileMode refuses a file of secrets' digests (what) that its group or
// others may write: whoever can write it can do what it grants (power).
func checkFileMode(path, what, power string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if m := fi.Mode().Perm(); m&0o022 != 0 {
		return fmt.Errorf("auth: %s %s is writable by %s (mode %04o): whoever can write it can %s; run chmod go-w %s",
			what, path, writers(m), m, power, path)
	}
	return nil
}

func writers(m fs.FileMode) string {
	switch {
	case m&0o020 != 0 && m&0o002 != 0:
		return "group and others"
	case m&0o020 != 0:
		return "its group"
	}
	return "others"
}

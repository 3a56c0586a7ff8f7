package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// TokenPrefix starts every token AddToken makes, so that people and secret
// scanners recognise a medic token in a shell history or a paste.
const TokenPrefix = "medic_"

// tokenBytes is the token's entropy: 256 bits, beyond guessing, so a plain
// SHA-256 (no salt, no slow hash) is enough to store it.
const tokenBytes = 32

// Digest returns the hex SHA-256 of token: what the tokens file stores.
func Digest(token string) string {
	d := sha256.Sum256([]byte(token))
	return hex.EncodeToString(d[:])
}

// AddToken makes a new random token for name with role, adds
// {name, role, sha256} to the tokens file at path and returns the token.
// The token is not stored anywhere: the caller shows it once.
//
// A missing file is created with mode 0600; an existing one keeps its mode,
// its other entries and its comments, and is replaced atomically. AddToken
// refuses a name already in the file, and a file that does not parse.
// Concurrent changes of one file are serialised by its lock (lockFor).
func AddToken(path, name string, role Role) (token string, err error) {
	if !validName.MatchString(name) || name == AnonymousName {
		return "", fmt.Errorf("auth: add token: invalid name %q: want letters, digits, '.', '_' or '-', at most 64, not %q", name, AnonymousName)
	}
	if role < RoleViewer || role > RoleAdmin {
		return "", fmt.Errorf("auth: add token %s: invalid role %v", name, role)
	}
	unlock, err := lockFor(path)
	if err != nil {
		return "", fmt.Errorf("auth: add token %s: %w", name, err)
	}
	defer unlock()
	old, mode, err := readExisting(path)
	if err != nil {
		return "", fmt.Errorf("auth: add token %s: %w", name, err)
	}
	oldTokens, err := ParseTokens(path, old)
	if err != nil {
		return "", fmt.Errorf("auth: add token %s: fix the tokens file first: %w", name, err)
	}
	for _, e := range oldTokens.entries {
		if e.name == name {
			return "", fmt.Errorf("auth: add token %s: %s already has a token named %q", name, path, name)
		}
	}

	raw := make([]byte, tokenBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("auth: add token %s: %w", name, err)
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	// The name is quoted so that names like "null" or "true" stay strings.
	item := fmt.Sprintf("{name: %q, role: %s, sha256: %s}", name, role, Digest(token))

	updated, err := withItem(old, "tokens", item)
	if err != nil {
		return "", fmt.Errorf("auth: add token %s: %w", name, err)
	}
	// Check the result before it replaces the file: every old token and the
	// new one must authenticate from it.
	check, err := ParseTokens(path, updated)
	if err != nil || check.Len() != oldTokens.Len()+1 {
		return "", fmt.Errorf("auth: add token %s: rewriting %s would not keep its entries (%v); add the entry by hand: %s", name, path, err, item)
	}
	if id, ok := check.Authenticate(token); !ok || id != (Identity{Name: name, Role: role}) {
		return "", fmt.Errorf("auth: add token %s: rewritten file does not authenticate the new token; add the entry by hand: %s", name, item)
	}
	if err := writeFileAtomic(path, updated, mode); err != nil {
		return "", fmt.Errorf("auth: add token %s: %w", name, err)
	}
	return token, nil
}

// readExisting returns the file's content and mode, or nothing and 0600 when
// it does not exist.
func readExisting(path string) ([]byte, fs.FileMode, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0o600, nil
	}
	if err != nil {
		return nil, 0, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, err
	}
	return data, fi.Mode().Perm(), nil
}

// withItem returns src with item (a flow mapping) added to its list under
// the top-level key list (tokens, keys), keeping the rest of the document,
// comments included.
func withItem(src []byte, list, item string) ([]byte, error) {
	f, err := parser.ParseBytes(src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	p, err := yaml.PathString("$." + list)
	if err != nil {
		return nil, err
	}
	var node ast.Node
	if hasBody(f) {
		node, err = p.FilterFile(f)
	}
	switch {
	case node == nil && (err == nil || errors.Is(err, yaml.ErrNotFoundNode)):
		// No tokens key yet (an empty or comment-only file): add one.
		var b bytes.Buffer
		b.Write(src)
		if len(src) > 0 && !bytes.HasSuffix(src, []byte("\n")) {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s:\n  - %s\n", list, item)
		return b.Bytes(), nil
	case err != nil:
		return nil, err
	}
	switch node.(type) {
	case *ast.SequenceNode:
		err = p.MergeFromReader(f, strings.NewReader("- "+item+"\n"))
	case *ast.NullNode: // "tokens:" with nothing under it
		err = p.ReplaceWithReader(f, strings.NewReader("- "+item+"\n"))
	default:
		return nil, fmt.Errorf("%s is a %s, not a list", list, node.Type())
	}
	if err != nil {
		return nil, err
	}
	out := f.String()
	if !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return []byte(out), nil
}

// hasBody reports whether f holds more than comments.
func hasBody(f *ast.File) bool {
	for _, d := range f.Docs {
		if d.Body == nil {
			continue
		}
		if _, comment := d.Body.(*ast.CommentGroupNode); !comment {
			return true
		}
	}
	return false
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, fsynced, renamed over path, then the directory fsynced.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

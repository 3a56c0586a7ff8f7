package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// ClientKeyPrefix starts every key AddClientKey makes, so that people and
// secret scanners recognise a medic client key in a log or a paste.
const ClientKeyPrefix = "medickey_"

// ErrNoSuchClientKey: the client keys file has no key of that name.
var ErrNoSuchClientKey = errors.New("auth: no such client key")

// ClientKeyEntry is one key of a client keys file as listed: never the key,
// only its name, class and digest.
type ClientKeyEntry struct {
	Name   string `json:"name"`
	Class  string `json:"class"`
	SHA256 string `json:"sha256"`
}

// Entries returns the keys sorted by name.
func (k *ClientKeys) Entries() []ClientKeyEntry {
	if k == nil {
		return nil
	}
	out := make([]ClientKeyEntry, 0, len(k.byDigest))
	for d, c := range k.byDigest {
		out = append(out, ClientKeyEntry{Name: c.Name, Class: c.Class, SHA256: fmt.Sprintf("%x", d)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// AddClientKey makes a new random key (256 bits) for a client named name in
// class, adds {name, class, sha256} to the client keys file at path and
// returns the key. The key is not stored anywhere: the caller shows it once.
//
// As AddToken: a missing file is created with mode 0600; an existing one keeps
// its mode, its other entries and its comments, and is replaced atomically
// (a temporary file renamed over it). A name already in the file, an invalid
// name or class, a file that does not parse and a file its group or others
// may write are refused. Concurrent adds and revokes of one file are
// serialised by its lock (lockFor): none is lost.
func AddClientKey(path, name, class string) (key string, err error) {
	if !validName.MatchString(name) {
		return "", fmt.Errorf("auth: add client key: invalid name %q: want letters, digits, '.', '_' or '-', at most 64", name)
	}
	if !validClass.MatchString(class) {
		return "", fmt.Errorf("auth: add client key %s: invalid class %q: want lower-case letters, digits, '_' or '-', at most 32", name, class)
	}
	unlock, err := lockFor(path)
	if err != nil {
		return "", fmt.Errorf("auth: add client key %s: %w", name, err)
	}
	defer unlock()
	old, mode, err := readExisting(path)
	if err != nil {
		return "", fmt.Errorf("auth: add client key %s: %w", name, err)
	}
	if old != nil {
		if err := checkFileMode(path, "client keys file", "put themselves in any class"); err != nil {
			return "", fmt.Errorf("auth: add client key %s: %w", name, err)
		}
	}
	oldKeys, err := ParseClientKeys(path, old)
	if err != nil {
		return "", fmt.Errorf("auth: add client key %s: fix the client keys file first: %w", name, err)
	}
	for _, e := range oldKeys.Entries() {
		if e.Name == name {
			return "", fmt.Errorf("auth: add client key %s: %s already has a key named %q (revoke it first)", name, path, name)
		}
	}
	raw := make([]byte, tokenBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("auth: add client key %s: %w", name, err)
	}
	key = ClientKeyPrefix + base64.RawURLEncoding.EncodeToString(raw)
	item := fmt.Sprintf("{name: %q, class: %s, sha256: %s}", name, class, Digest(key))
	updated, err := withItem(old, "keys", item)
	if err != nil {
		return "", fmt.Errorf("auth: add client key %s: %w", name, err)
	}
	// Check the result before it replaces the file: every old key and the
	// new one must verify from it.
	check, err := ParseClientKeys(path, updated)
	if err != nil || check.Len() != oldKeys.Len()+1 {
		return "", fmt.Errorf("auth: add client key %s: rewriting %s would not keep its entries (%v); add the entry by hand: %s", name, path, err, item)
	}
	if ck, ok := check.Verify([]byte(key)); !ok || ck != (ClientKey{Name: name, Class: class}) {
		return "", fmt.Errorf("auth: add client key %s: the rewritten file does not verify the new key; add the entry by hand: %s", name, item)
	}
	if err := writeFileAtomic(path, updated, mode); err != nil {
		return "", fmt.Errorf("auth: add client key %s: %w", name, err)
	}
	return key, nil
}

// ListClientKeys reads the client keys file at path (LoadClientKeys' rules).
func ListClientKeys(path string) ([]ClientKeyEntry, error) {
	k, err := LoadClientKeys(path)
	if err != nil {
		return nil, err
	}
	return k.Entries(), nil
}

// RevokeClientKey removes the key named name from the client keys file at
// path, keeping its mode, its other entries and, when it can, its comments;
// the file is replaced atomically. A running medic serves the key in the
// default class from its next reload (`medic reload` or SIGHUP) on.
func RevokeClientKey(path, name string) error {
	unlock, err := lockFor(path)
	if err != nil {
		return fmt.Errorf("auth: revoke client key %s: %w", name, err)
	}
	defer unlock()
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("auth: revoke client key %s: %w", name, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("auth: revoke client key %s: %w", name, err)
	}
	oldKeys, err := ParseClientKeys(path, old)
	if err != nil {
		return fmt.Errorf("auth: revoke client key %s: fix the client keys file first: %w", name, err)
	}
	var kept []ClientKeyEntry
	for _, e := range oldKeys.Entries() {
		if e.Name != name {
			kept = append(kept, e)
		}
	}
	if len(kept) == oldKeys.Len() {
		return fmt.Errorf("%w: %s has no key named %q", ErrNoSuchClientKey, path, name)
	}
	updated, err := withoutItem(old, "keys", name)
	check, perr := ParseClientKeys(path, updated)
	if err != nil || perr != nil || check.Len() != len(kept) || hasKey(check, name) {
		updated = canonicalKeys(kept) // comments could not be kept: write the entries plainly
	}
	if err := writeFileAtomic(path, updated, fi.Mode().Perm()); err != nil {
		return fmt.Errorf("auth: revoke client key %s: %w", name, err)
	}
	return nil
}

func hasKey(k *ClientKeys, name string) bool {
	for _, e := range k.Entries() {
		if e.Name == name {
			return true
		}
	}
	return false
}

func canonicalKeys(es []ClientKeyEntry) []byte {
	if len(es) == 0 {
		return []byte("keys: []\n")
	}
	var b strings.Builder
	b.WriteString("keys:\n")
	for _, e := range es {
		fmt.Fprintf(&b, "  - {name: %q, class: %s, sha256: %s}\n", e.Name, e.Class, e.SHA256)
	}
	return []byte(b.String())
}

package auth

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClientKeys(t *testing.T) {
	k, err := ParseClientKeys("keys.yaml", []byte(`keys:
  - {name: web, class: human, sha256: `+Digest("k1")+`}
  - {name: bot, class: agent, sha256: "`+Digest("k2")+`"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := k.Verify([]byte("k2")); !ok || c != (ClientKey{Name: "bot", Class: "agent"}) {
		t.Fatalf("k2: %v %v", c, ok)
	}
	for _, bad := range []string{"", "k3", "K1", "k1 ", strings.Repeat("k", MaxClientKeyLen+1)} {
		if c, ok := k.Verify([]byte(bad)); ok {
			t.Fatalf("%q verified as %v", bad, c)
		}
	}
	if cl := k.Classes(); len(cl) != 2 || !cl["human"] || !cl["agent"] {
		t.Fatalf("classes %v", cl)
	}
	var none *ClientKeys
	if _, ok := none.Verify([]byte("k1")); ok || none.Len() != 0 {
		t.Fatal("nil keys verified")
	}
}

func TestClientKeysErrors(t *testing.T) {
	d := Digest("x")
	for _, tc := range []struct{ file, want string }{
		{"keys:\n  - {name: a, class: human}\n", `keys.yaml:2:5: key "a" needs a sha256`},
		{"keys:\n  - {name: a, class: Human, sha256: " + d + "}\n", `keys.yaml:2:22: invalid class "Human"`},
		{"keys:\n  - {name: a, sha256: " + d + "}\n", `keys.yaml:2:5: key "a" needs a class`},
		{"keys:\n  - {name: a, class: x, sha256: " + d + "}\n  - {name: b, class: x, sha256: " + d + "}\n", `key "b" has the same sha256 as "a"`},
		{"keys:\n  - {name: a, class: x, sha256: abc}\n", "must be 64 hex digits"},
		{"keys:\n  - {name: a, class: x, sha256: " + d + ", role: admin}\n", "keys.yaml:2:"},
		{"keys: [1]\n", "a key must be a mapping"},
	} {
		_, err := ParseClientKeys("keys.yaml", []byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "client keys file") && !strings.Contains(err.Error(), "keys.yaml") {
			t.Errorf("%q: got %v, want %q", tc.file, err, tc.want)
		}
	}
}

func TestLoadClientKeysRefusesWritableFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(p, []byte("keys: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadClientKeys(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o622); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadClientKeys(p); err == nil || !strings.Contains(err.Error(), "client keys file") || !strings.Contains(err.Error(), "chmod go-w") {
		t.Fatalf("group-writable keys file: %v", err)
	}
}

func TestClientKeysChanges(t *testing.T) {
	parse := func(s string) *ClientKeys {
		k, err := ParseClientKeys("k.yaml", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a := parse("keys:\n  - {name: a, class: human, sha256: " + Digest("a") + "}\n  - {name: b, class: agent, sha256: " + Digest("b") + "}\n")
	b := parse("keys:\n  - {name: a, class: agent, sha256: " + Digest("a") + "}\n  - {name: c, class: agent, sha256: " + Digest("c") + "}\n")
	added, removed := a.Changes(b)
	if fmt.Sprint(added) != "[a c]" || fmt.Sprint(removed) != "[a b]" {
		t.Fatalf("added %v removed %v; want [a c] and [a b] (a changed class)", added, removed)
	}
	if ad, rm := (*ClientKeys)(nil).Changes(a); len(ad) != 2 || len(rm) != 0 {
		t.Fatalf("from nothing: added %v removed %v", ad, rm)
	}
}

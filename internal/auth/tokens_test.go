package auth_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/auth"
)

const hex64 = "0123456789012345678901234567890123456789012345678901234567890123"

func TestAddTokenRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	tok, err := auth.AddToken(path, "alertmanager", auth.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^medic_[A-Za-z0-9_-]{43}$`).MatchString(tok) {
		t.Fatalf("token %q does not look like medic_ + 32 bytes of base64url", tok)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("new tokens file has mode %o, want 600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), strings.TrimPrefix(tok, auth.TokenPrefix)) {
		t.Fatalf("the file holds the plaintext token:\n%s", data)
	}
	if !strings.Contains(string(data), auth.Digest(tok)) {
		t.Fatalf("the file lacks the token's digest:\n%s", data)
	}

	tok2, err := auth.AddToken(path, "alice", auth.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if tok2 == tok {
		t.Fatal("two AddToken calls returned the same token")
	}
	toks, err := auth.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	if toks.Len() != 2 {
		t.Fatalf("Len = %d, want 2", toks.Len())
	}
	for tk, want := range map[string]auth.Identity{
		tok:  {Name: "alertmanager", Role: auth.RoleOperator},
		tok2: {Name: "alice", Role: auth.RoleAdmin},
	} {
		if id, ok := toks.Authenticate(tk); !ok || id != want {
			t.Errorf("Authenticate = %+v, %v; want %+v", id, ok, want)
		}
	}
	for _, bad := range []string{"", tok + "x", tok[:len(tok)-1], auth.Digest(tok)} {
		if id, ok := toks.Authenticate(bad); ok {
			t.Errorf("Authenticate(%q) = %+v", bad, id)
		}
	}
	var nilTokens *auth.Tokens
	if _, ok := nilTokens.Authenticate(tok); ok {
		t.Error("a nil *Tokens authenticated")
	}
}

func TestAddTokenRefuses(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.yaml")
	if _, err := auth.AddToken(path, "alice", auth.RoleViewer); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	for _, c := range []struct {
		name string
		role auth.Role
	}{
		{"alice", auth.RoleAdmin}, // duplicate
		{"", auth.RoleViewer},     // empty
		{"bob smith", auth.RoleViewer},
		{"anonymous", auth.RoleViewer},
		{"bob", auth.RoleNone},
		{"bob", auth.Role(7)},
	} {
		if _, err := auth.AddToken(path, c.name, c.role); err == nil {
			t.Errorf("AddToken(%q, %v) succeeded", c.name, c.role)
		}
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatalf("a refused AddToken changed the file:\n%s", after)
	}

	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(broken, []byte("tokens:\n  - {name: x, role: root, sha256: "+hex64+"}\n"), 0o600)
	if _, err := auth.AddToken(broken, "bob", auth.RoleViewer); err == nil || !strings.Contains(err.Error(), "broken.yaml:2:") {
		t.Fatalf("AddToken to an invalid file: %v", err)
	}
}

// An existing file keeps its comments, entries and mode.
func TestAddTokenKeepsTheFile(t *testing.T) {
	for name, src := range map[string]string{
		"block list": "# who may call medic\ntokens:\n  # the alert source\n  - name: am\n    role: operator\n    sha256: " + hex64 + "\n",
		"flow list":  "tokens: [{name: am, role: operator, sha256: " + hex64 + "}]\n",
		"empty list": "# none yet\ntokens: []\n",
		"null list":  "# none yet\ntokens:\n",
		"empty file": "",
		"comments":   "# tokens go here",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.yaml")
			if err := os.WriteFile(path, []byte(src), 0o640); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, 0o640) // despite the umask
			tok, err := auth.AddToken(path, "new", auth.RoleViewer)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(path)
			for _, line := range strings.Split(src, "\n") {
				if strings.HasPrefix(line, "#") && !strings.Contains(string(data), line) {
					t.Errorf("comment %q lost:\n%s", line, data)
				}
			}
			toks, err := auth.LoadTokens(path)
			if err != nil {
				t.Fatalf("%v\n%s", err, data)
			}
			wantLen := 1
			if strings.Contains(src, "am") {
				wantLen = 2
			}
			if toks.Len() != wantLen {
				t.Fatalf("Len = %d, want %d:\n%s", toks.Len(), wantLen, data)
			}
			if id, ok := toks.Authenticate(tok); !ok || id.Name != "new" {
				t.Fatalf("new token: %+v %v", id, ok)
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
				t.Errorf("mode %o, want the file's 640 kept", fi.Mode().Perm())
			}
		})
	}
}

func TestParseTokensErrors(t *testing.T) {
	tests := []struct {
		src  string
		want []string // each must appear in the error
	}{
		{"tokens:\n  - {name: a, role: superuser, sha256: " + hex64 + "}\n", []string{`f.yaml:2:21: unknown role "superuser"`}},
		{"tokens:\n  - name: a\n    role: viewer\n    sha256: abc\n", []string{"f.yaml:4:13: sha256 of token \"a\" must be 64 hex digits"}},
		{"tokens:\n  - name: a\n    role: viewer\n    sha256: " + strings.Repeat("g", 64) + "\n", []string{"f.yaml:4:13:"}},
		{"tokens:\n  - name: a\n    role: viewer\n    sha256: " + hex64 + "\n    note: hi\n", []string{"f.yaml:5:5:", `unknown field "note"`}},
		{"tokenz: []\n", []string{"f.yaml:1:1:", "tokenz"}},
		{"tokens: [\n", []string{"f.yaml:1:"}},
		{"tokens:\n  - {name: a, role: viewer}\n", []string{"f.yaml:2:5:", "needs a sha256"}},
		{"tokens:\n  - {role: viewer, sha256: " + hex64 + "}\n", []string{"f.yaml:2:5:", "needs a name"}},
		{"tokens:\n  - {name: a, sha256: " + hex64 + "}\n", []string{"needs a role"}},
		{"tokens:\n  - {name: a b, role: viewer, sha256: " + hex64 + "}\n", []string{"invalid token name"}},
		{"tokens:\n  - {name: anonymous, role: viewer, sha256: " + hex64 + "}\n", []string{"reserved"}},
		{"tokens:\n  - {name: a, role: viewer, sha256: " + hex64 + "}\n  - {name: a, role: admin, sha256: " + strings.Repeat("1", 64) + "}\n",
			[]string{`f.yaml:3:12: duplicate token name "a"`}},
		{"tokens:\n  - {name: a, role: viewer, sha256: " + hex64 + "}\n  - {name: b, role: admin, sha256: " + hex64 + "}\n",
			[]string{`f.yaml:3:36: token "b" has the same sha256 as "a"`}},
		{"tokens:\n  - {name: a, role: [viewer], sha256: " + hex64 + "}\n", []string{"f.yaml:2:21:", "want a string"}},
		{"tokens:\n  - just-a-string\n", []string{"f.yaml:2:5:", "mapping"}},
		// goccy/go-yaml v1.19.2 panics decoding this into a slice; ParseTokens must not.
		{"tokens: !!map {}\n", []string{"f.yaml"}},
		// Two problems on two lines: both reported.
		{"tokens:\n  - {name: a, role: x, sha256: " + hex64 + "}\n  - {name: b, role: y, sha256: " + strings.Repeat("1", 64) + "}\n",
			[]string{"f.yaml:2:", "f.yaml:3:"}},
	}
	for _, tt := range tests {
		_, err := auth.ParseTokens("f.yaml", []byte(tt.src))
		if err == nil {
			t.Errorf("ParseTokens(%q) succeeded", tt.src)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseTokens(%q):\n%v\nwant it to mention %q", tt.src, err, w)
			}
		}
	}
}

func TestParseTokensAccepts(t *testing.T) {
	for _, src := range []string{
		"",
		"# nothing\n",
		"tokens: []\n",
		"tokens:\n",
		// A digest of decimal digits only must not be read as a number.
		"tokens:\n  - name: a\n    role: viewer\n    sha256: " + hex64 + "\n",
		"tokens:\n  - {name: \"null\", role: admin, sha256: '" + strings.ToUpper("abcdef"+hex64[6:]) + "'}\n",
	} {
		if _, err := auth.ParseTokens("f.yaml", []byte(src)); err != nil {
			t.Errorf("ParseTokens(%q): %v", src, err)
		}
	}
}

func TestLoadTokensMissingFile(t *testing.T) {
	if _, err := auth.LoadTokens(filepath.Join(t.TempDir(), "nope.yaml")); err == nil {
		t.Fatal("LoadTokens of a missing file succeeded")
	}
}

func FuzzLoadTokens(f *testing.F) {
	f.Add([]byte("tokens:\n  - {name: a, role: viewer, sha256: " + hex64 + "}\n"))
	f.Add([]byte("tokens:\n  - name: a\n    role: admin\n    sha256: " + hex64 + "\n"))
	f.Add([]byte("tokens: [\n"))
	f.Add([]byte("tokens:\n  - &x {name: a}\n  - *x\n"))
	f.Add([]byte("tokens: !!map {}\n"))
	f.Add([]byte("<<: {tokens: []}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		toks, err := auth.ParseTokens("f.yaml", data)
		if err != nil {
			if toks != nil {
				t.Fatal("non-nil Tokens with an error")
			}
			return
		}
		// Whatever parsed must authenticate nobody with an empty or junk token.
		if _, ok := toks.Authenticate(""); ok {
			t.Fatal("empty token authenticated")
		}
		if _, ok := toks.Authenticate("junk"); ok && toks.Len() == 0 {
			t.Fatal("authenticated against no tokens")
		}
	})
}

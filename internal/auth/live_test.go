package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A token removed from the file is refused after Reload (it kept working
// until medic restarted), and `medic token remove` keeps the others.
func TestRemoveAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	os.WriteFile(path, []byte("# operators\ntokens: []\n"), 0o600)
	a, err := AddToken(path, "alice", RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	b, err := AddToken(path, "bob", RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	live, err := OpenLive(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := live.Tokens().Authenticate(b); !ok {
		t.Fatal("bob's token does not authenticate")
	}
	if err := RemoveToken(path, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := RemoveToken(path, "bob"); !errors.Is(err, ErrNoSuchToken) {
		t.Fatalf("removing twice: %v; want ErrNoSuchToken", err)
	}
	added, removed, err := live.Reload()
	if err != nil || len(added) != 0 || strings.Join(removed, ",") != "bob" {
		t.Fatalf("Reload = %v, %v, %v; want bob removed", added, removed, err)
	}
	if _, ok := live.Tokens().Authenticate(b); ok {
		t.Fatal("a removed token still authenticates after reload")
	}
	if id, ok := live.Tokens().Authenticate(a); !ok || id.Name != "alice" {
		t.Fatal("the remaining token no longer authenticates")
	}
	if data, _ := os.ReadFile(path); !strings.Contains(string(data), "# operators") {
		t.Errorf("comments lost:\n%s", data)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v after remove; want 0600 kept", fi.Mode().Perm())
	}
}

// A tokens file its group or others may write is refused with the reason
// (it was accepted silently).
func TestWritableTokensFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	if _, err := AddToken(path, "alice", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o666, 0o620, 0o602} {
		os.Chmod(path, mode)
		_, err := LoadTokens(path)
		if err == nil || !strings.Contains(err.Error(), "writable by") || !strings.Contains(err.Error(), "chmod go-w") {
			t.Errorf("mode %04o: %v; want refused with the reason", mode, err)
		}
	}
	os.Chmod(path, 0o644)
	if _, err := LoadTokens(path); err != nil {
		t.Errorf("mode 0644: %v; want accepted", err)
	}
	// A reload that meets such a file keeps the tokens in force.
	live, _ := OpenLive(path)
	os.Chmod(path, 0o666)
	if _, _, err := live.Reload(); err == nil || live.Tokens().Len() != 1 {
		t.Errorf("reload of a world-writable file: %v, %d tokens; want refused, 1 kept", err, live.Tokens().Len())
	}
}

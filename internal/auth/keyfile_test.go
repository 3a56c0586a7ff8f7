package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAddListRevokeClientKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "client-keys.yaml")
	bot, err := AddClientKey(path, "support-bot", "agent")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(bot, ClientKeyPrefix) || len(bot) < len(ClientKeyPrefix)+40 {
		t.Fatalf("key %q: want %s and 256 bits", bot, ClientKeyPrefix)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new keys file: %v mode %v; want 0600", err, fi.Mode())
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), bot) {
		t.Fatal("the key itself is in the file")
	}
	// Comments and other entries are kept.
	os.WriteFile(path, append([]byte("# who may call shop\n"), data...), 0o600)
	web, err := AddClientKey(path, "web", "human")
	if err != nil {
		t.Fatal(err)
	}
	k, err := LoadClientKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]ClientKey{bot: {"support-bot", "agent"}, web: {"web", "human"}} {
		if got, ok := k.Verify([]byte(key)); !ok || got != want {
			t.Fatalf("verify %s: %v %v", want.Name, got, ok)
		}
	}
	if data, _ := os.ReadFile(path); !strings.Contains(string(data), "# who may call shop") {
		t.Fatalf("comment lost:\n%s", data)
	}
	list, err := ListClientKeys(path)
	if err != nil || len(list) != 2 || list[0].Name != "support-bot" || list[1].Class != "human" || list[0].SHA256 != Digest(bot) {
		t.Fatalf("list: %v %+v", err, list)
	}
	if _, err := AddClientKey(path, "web", "agent"); err == nil || !strings.Contains(err.Error(), "already has a key named") {
		t.Fatalf("duplicate name: %v", err)
	}
	if err := RevokeClientKey(path, "support-bot"); err != nil {
		t.Fatal(err)
	}
	k, _ = LoadClientKeys(path)
	if _, ok := k.Verify([]byte(bot)); ok {
		t.Fatal("a revoked key still verifies")
	}
	if _, ok := k.Verify([]byte(web)); !ok {
		t.Fatal("revoking one key lost the other")
	}
	if err := RevokeClientKey(path, "support-bot"); !errors.Is(err, ErrNoSuchClientKey) {
		t.Fatalf("revoke twice: %v", err)
	}
	if err := RevokeClientKey(path, "web"); err != nil {
		t.Fatal(err)
	}
	if k, err := LoadClientKeys(path); err != nil || k.Len() != 0 {
		t.Fatalf("after revoking all: %v %d", err, k.Len())
	}
}

func TestAddClientKeyRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, class, file, mode, want string }{
		{"bad name!", "agent", "", "", "invalid name"},
		{"bot", "Agent", "", "", "invalid class"},
		{"bot", "agent", "keys: [{name: x}]\n", "", "fix the client keys file first"},
		{"bot", "agent", "keys: []\n", "0666", "writable by group and others"},
		{"bot", "agent", "keys: {a: 1}\n", "", "fix the client keys file first"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name+tc.class+tc.mode, " ", "_")+".yaml")
		if tc.file != "" {
			os.WriteFile(path, []byte(tc.file), 0o600)
			if tc.mode == "0666" {
				os.Chmod(path, 0o666)
			}
		}
		before, _ := os.ReadFile(path)
		if _, err := AddClientKey(path, tc.name, tc.class); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want %q", tc, err, tc.want)
		}
		if after, _ := os.ReadFile(path); string(after) != string(before) {
			t.Errorf("%+v: the file changed on a refusal", tc)
		}
	}
}

package main

import (
	"os"
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/api"
	"github.com/medic-dev/medic/internal/supervise"
)

// The address comes from --addr, then -c, then $MEDIC_ADDR, then a
// medic.yaml found in the current directory; a token is never sent to a
// non-loopback address that only such a found file named (it was sent to a
// ./medic.yaml's address even when $MEDIC_ADDR was set).
func TestAgentAddressPrecedence(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	os.WriteFile("medic.yaml", []byte("api: {listen: \"10.9.9.9:7070\", tokens_file: t.yaml}\n"), 0o644)
	os.WriteFile("t.yaml", []byte("tokens: []\n"), 0o600)
	os.WriteFile("other.yaml", []byte("api: {listen: \"127.0.0.1:7171\"}\n"), 0o644)
	addr := func(env string, args ...string) (string, error) {
		root := newRoot()
		cmd, _, err := root.Find([]string{"status"})
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(args); err != nil {
			t.Fatal(err)
		}
		t.Setenv("MEDIC_ADDR", env)
		c, err := newClient(cmd)
		if err != nil {
			return "", err
		}
		return c.base, nil
	}
	t.Setenv("MEDIC_TOKEN", "medic_secret")
	cases := []struct {
		env  string
		args []string
		want string
	}{
		{"127.0.0.1:9999", []string{"--addr", "127.0.0.1:8888"}, "http://127.0.0.1:8888"},
		{"127.0.0.1:9999", []string{"-c", "other.yaml"}, "http://127.0.0.1:7171"},
		{"127.0.0.1:9999", nil, "http://127.0.0.1:9999"}, // the environment beats a medic.yaml found here
	}
	for _, c := range cases {
		got, err := addr(c.env, c.args...)
		if err != nil || got != c.want {
			t.Errorf("MEDIC_ADDR=%s %v: %s, %v; want %s", c.env, c.args, got, err, c.want)
		}
	}
	// Only the found medic.yaml names the address: no token goes there.
	if got, err := addr(""); err == nil || !strings.Contains(err.Error(), "does not send your token") {
		t.Errorf("address from ./medic.yaml with a token: %s, %v; want refused", got, err)
	}
	// Without a token, reading it is fine; and an explicit -c is the user's choice.
	t.Setenv("MEDIC_TOKEN", "")
	if got, err := addr(""); err != nil || got != "http://10.9.9.9:7070" {
		t.Errorf("no token: %s, %v", got, err)
	}
	t.Setenv("MEDIC_TOKEN", "medic_secret")
	if got, err := addr("", "-c", "medic.yaml"); err != nil || got != "http://10.9.9.9:7070" {
		t.Errorf("explicit -c: %s, %v", got, err)
	}
}

// Control characters and ANSI escapes from events reach the terminal as
// escapes (a request path like /\x1b[2J cleared the operator's screen).
func TestStatusEscapesControlCharacters(t *testing.T) {
	var b strings.Builder
	doc := api.StatusDoc{Services: []supervise.ServiceStatus{{Name: "web\x1b[31m",
		Instances: []supervise.InstanceStatus{{ID: "web/0", Reason: "GET /\x1b[2J\x1b[H\u202eevil"}}}}}
	printStatus(&b, doc)
	out := b.String()
	if strings.ContainsAny(out, "\x1b\u202e") || !strings.Contains(out, `\x1b[2J`) || !strings.Contains(out, `web\x1b[31m`) {
		t.Fatalf("status printed raw control characters:\n%q", out)
	}
}

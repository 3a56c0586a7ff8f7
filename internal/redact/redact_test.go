package redact_test

import (
	"strings"
	"testing"

	"github.com/medic-dev/medic"
	"github.com/medic-dev/medic/internal/redact"
)

func TestPatterns(t *testing.T) {
	r := redact.New(nil)
	for _, c := range []struct{ in, secret string }{
		{"dial postgres://app:hunter2pw@db:5432/app failed", "hunter2pw"},
		{"connect host=db user=app password=s3cretpw sslmode=disable", "s3cretpw"},
		{"PGPASSWORD=pgpw12345 psql -c 'select 1'", "pgpw12345"},
		{`curl -H "Authorization: Bearer abc.def.ghi123"`, "abc.def.ghi123"},
		{"token: 0123456789abcdef", "0123456789abcdef"},
		{`{"api_key": "k-998877665544"}`, "k-998877665544"},
		{"client_secret=zzzyyyxxx", "zzzyyyxxx"},
		{"aws key AKIAIOSFODNN7EXAMPLE leaked", "AKIAIOSFODNN7EXAMPLE"},
		{"using ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"},
		{"slack xoxb-1234567890-abcdefghij", "xoxb-1234567890-abcdefghij"},
		{"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "dozjgNryP4J3jVmNHl0w5N"},
		{"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "MIIEowIBAAKCAQEA"},
	} {
		got := r.String(c.in)
		if strings.Contains(got, c.secret) || !strings.Contains(got, redact.Mask) {
			t.Errorf("String(%q) = %q: the secret %q is still there", c.in, got, c.secret)
		}
	}
	// Ordinary evidence is left alone.
	for _, s := range []string{"exit status 1", "liveness probe failed: GET /healthz/live: 500", "listen tcp 127.0.0.1:9100: bind: address already in use"} {
		if got := r.String(s); got != s {
			t.Errorf("String(%q) = %q, want it unchanged", s, got)
		}
	}
}

func TestValues(t *testing.T) {
	r := redact.New([]string{"sk-live-123456", "1", "dev", "sk-live-123456789"})
	got := r.String("key sk-live-123456789 and sk-live-123456; version 1 on dev")
	if strings.Contains(got, "sk-live") || strings.Contains(got, "789") {
		t.Fatalf("configured values not masked: %q", got)
	}
	if !strings.Contains(got, "version 1 on dev") {
		t.Fatalf("short values masked: %q", got)
	}
	ev := r.Event(medic.Event{Reason: "crash: sk-live-123456", Fields: map[string]string{"stderr_tail": "token=abcdef123"}})
	if strings.Contains(ev.Reason, "sk-live") || strings.Contains(ev.Fields["stderr_tail"], "abcdef123") {
		t.Fatalf("Event not masked: %+v", ev)
	}
}

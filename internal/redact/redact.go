// Package redact removes secrets from text medic sends or keeps: runbook
// evidence, step output, stderr tails in notifications (Slack, PagerDuty,
// webhooks) and audit records. It replaces what looks like a secret by
// its shape (a list of patterns: bearer tokens, password=, DSN passwords,
// well-known key formats) and every configured secret value (each service's
// env values) wherever it appears. It is a plain value: build one per
// config, use it from any goroutine.
package redact

import (
	"regexp"
	"slices"
	"strings"

	"github.com/medic-dev/medic"
)

// Mask replaces each secret.
const Mask = "[REDACTED]"

// MinValue is the shortest configured value that is redacted: shorter env
// values ("1", "on", "dev") are not secrets, and masking every occurrence of
// them would make the evidence unreadable.
const MinValue = 4

// A pattern keeps the text matched by group 1 (the key), masks the rest.
type pattern struct {
	re   *regexp.Regexp
	keep bool // group 1 is kept, the rest of the match masked
}

// patterns are the shapes of secrets, in the order they are applied.
var patterns = []pattern{
	// PEM private keys, whole.
	{regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----`), false},
	// Passwords in URLs and DSNs: postgres://user:pw@host, https://u:p@h.
	{regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@`), true},
	// Authorization headers and bearer tokens.
	{regexp.MustCompile(`(?i)(\bauthorization\s*[:=]\s*(?:bearer|basic|token)?\s*)[^\s"',;]+`), true},
	{regexp.MustCompile(`(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+`), true},
	// key=value and key: value with a secret-looking key (password=, PGPASSWORD=,
	// api_key: …, "token": "…", client_secret=…).
	{regexp.MustCompile(`(?i)(\b[a-z0-9_.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)["']?\s*[=:]\s*["']?)[^\s"'&;,]+`), true},
	// Well-known token formats.
	{regexp.MustCompile(`\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`), false},                                  // AWS access key id
	{regexp.MustCompile(`\bgh[pousr]_[A-Za-z0-9]{30,}\b`), false},                                 // GitHub
	{regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{10,}\b`), false},                              // Slack
	{regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b`), false}, // JWT
	{regexp.MustCompile(`\bsk_(?:live|test)_[A-Za-z0-9]{16,}\b`), false},                          // Stripe
}

// Redactor masks secrets in text.
type Redactor struct {
	values []string // longest first, so a value containing another is masked whole
}

// New returns a redactor for the given secret values (values shorter than
// MinValue are left out).
func New(values []string) *Redactor {
	r := &Redactor{}
	seen := map[string]bool{}
	for _, v := range values {
		v = strings.TrimSpace(v)
		if len(v) < MinValue || seen[v] {
			continue
		}
		seen[v] = true
		r.values = append(r.values, v)
	}
	slices.SortFunc(r.values, func(a, b string) int { return len(b) - len(a) })
	return r
}

// String returns s with every secret masked. A nil Redactor still applies
// the patterns.
func (r *Redactor) String(s string) string {
	if s == "" {
		return s
	}
	if r != nil {
		for _, v := range r.values {
			s = strings.ReplaceAll(s, v, Mask)
		}
	}
	for _, p := range patterns {
		if p.keep {
			s = p.re.ReplaceAllString(s, "${1}"+Mask)
		} else {
			s = p.re.ReplaceAllString(s, Mask)
		}
	}
	return s
}

// Fields returns a copy of f with every value masked (nil stays nil).
func (r *Redactor) Fields(f map[string]string) map[string]string {
	if f == nil {
		return nil
	}
	out := make(map[string]string, len(f))
	for k, v := range f {
		out[k] = r.String(v)
	}
	return out
}

// Event returns ev with its reason and fields masked.
func (r *Redactor) Event(ev medic.Event) medic.Event {
	ev.Reason = r.String(ev.Reason)
	ev.Fields = r.Fields(ev.Fields)
	return ev
}

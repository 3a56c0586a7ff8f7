package app

import (
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/redact"
)

// setSecrets rebuilds the redactor from c: every value of every service's
// env is a secret wherever it appears (docs/security.md).
func (m *Main) setSecrets(c *config.Config) {
	var values []string
	for _, s := range c.Services {
		if s == nil {
			continue
		}
		for _, v := range s.Env {
			values = append(values, v)
		}
	}
	m.redactor.Store(redact.New(values))
}

// redact masks secrets in s (for notifications).
func (m *Main) redact(s string) string { return m.redactor.Load().String(s) }

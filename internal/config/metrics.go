package config

import "strings"

// Metrics is a service's Prometheus endpoint on each instance's port.
type Metrics struct {
	// Path of the endpoint. Default /metrics.
	Path string `yaml:"path" json:"path,omitempty"`
	// Time between scrapes. Default 10s, at least 1s.
	Period Duration `yaml:"period" json:"period,omitempty"`
}

// SetDefaults fills the path and period.
func (m *Metrics) SetDefaults() {
	if m.Path == "" {
		m.Path = "/metrics"
	}
	if m.Period == 0 {
		m.Period = Duration(10e9)
	}
}

// Validate checks the path and period.
func (m *Metrics) Validate() []FieldIssue {
	var out []FieldIssue
	if !strings.HasPrefix(m.Path, "/") {
		out = append(out, FieldIssue{Field: "path", Message: "must start with /"})
	}
	if m.Period.D() < 1e9 {
		out = append(out, FieldIssue{Field: "period", Message: "must be at least 1s"})
	}
	return out
}

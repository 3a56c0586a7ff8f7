package config

// FieldIssue is one semantic problem found by a section's own Validate method.
// Field is relative to the section ("listen", "retries.budget"); the loader
// prefixes the section's path and adds file:line:col.
type FieldIssue struct {
	Field   string
	Message string
}

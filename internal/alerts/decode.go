// Package alerts receives alerts pushed to medic: Alertmanager's webhook
// (payload version 4, exactly as Alertmanager sends it) and a generic JSON
// webhook, both turned into detect.ExternalAlert values. Parsing is strict:
// unknown fields, wrong types, trailing data and invalid values are errors
// that name the field ("alerts[2].status: want firing or resolved").
package alerts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/medic-dev/medic/internal/detect"
)

// Error is a problem with one field of a payload.
type Error struct {
	Field   string // "alerts[2].status"; "" for the payload as a whole
	Message string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

func fieldErr(field, format string, args ...any) error {
	return &Error{Field: field, Message: fmt.Sprintf(format, args...)}
}

// join names a field under a path: join("alerts[2]", "status").
func join(path, field string) string {
	switch {
	case path == "":
		return field
	case field == "":
		return path
	case strings.HasPrefix(field, "["):
		return path + field
	}
	return path + "." + field
}

// decodeStrict decodes one JSON value from b into v, rejecting unknown
// fields and trailing data, and reports problems under path.
func decodeStrict(b []byte, path string, v any) error { return decodeJSON(b, path, v, true) }

// decodeLenient is decodeStrict that ignores unknown fields: for a payload
// another program defines (Alertmanager may add fields within version 4).
func decodeLenient(b []byte, path string, v any) error { return decodeJSON(b, path, v, false) }

func decodeJSON(b []byte, path string, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return fieldErr(join(path, te.Field), "want %s, got %s", jsonType(te.Type.String()), te.Value)
		case errors.As(err, &se):
			return fieldErr(path, "invalid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return fieldErr(join(path, name), "unknown field")
		case err.Error() == "EOF":
			return fieldErr(path, "empty body: want a JSON object")
		}
		return fieldErr(path, "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if len(bytes.TrimSpace(b[dec.InputOffset():])) > 0 {
		return fieldErr(path, "trailing data after the JSON value")
	}
	return nil
}

// jsonType names a Go type as JSON does, for messages.
func jsonType(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "map["):
		return "an object of strings"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "true or false"
	}
	return "an object"
}

// parseStatus checks a status field.
func parseStatus(field, s string) (detect.AlertStatus, error) {
	switch detect.AlertStatus(s) {
	case detect.AlertFiring, detect.AlertResolved:
		return detect.AlertStatus(s), nil
	case "":
		return "", fieldErr(field, "required: firing or resolved")
	}
	return "", fieldErr(field, "want firing or resolved, got %q", s)
}

// parseTime reads an RFC 3339 time; "" and Go's zero time (which
// Alertmanager sends for "no end") are the zero time.
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fieldErr(field, "want an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", s)
	}
	if t.Year() <= 1 {
		return time.Time{}, nil
	}
	return t, nil
}

// checkLabels requires a non-empty label set with valid names.
func checkLabels(field string, l map[string]string) error {
	if len(l) == 0 {
		return fieldErr(field, "required: the labels that identify the alert, such as {\"alertname\": \"DiskFull\"}")
	}
	for k := range l {
		if !labelName(k) {
			return fieldErr(join(field, k), "invalid label name %q: use letters, digits and _, not starting with a digit", k)
		}
	}
	return nil
}

// labelName matches Prometheus label names: [a-zA-Z_][a-zA-Z0-9_]*.
func labelName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// decodeStringMap decodes a JSON object of strings, naming a bad value by
// its key ("labels.severity: want a string, got number"). Absent or null
// is nil.
func decodeStringMap(raw json.RawMessage, path string) (map[string]string, error) {
	if len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fieldErr(path, "want an object of strings, got %s", jsonKind(raw))
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, fieldErr(join(path, k), "want a string, got %s", jsonKind(v))
		}
		out[k] = s
	}
	return out, nil
}

// jsonKind names the JSON type of a raw value, as encoding/json does.
func jsonKind(raw json.RawMessage) string {
	b := bytes.TrimSpace(raw)
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

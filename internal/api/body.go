package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxBody bounds every request body the API reads.
const maxBody = 64 << 10

// actionBody is the optional JSON body of action requests.
type actionBody struct {
	Reason       string `json:"reason"`
	ReadyTimeout string `json:"ready_timeout"` // rolling restart: per-instance wait, e.g. "30s"
	Instances    *int   `json:"instances"`     // scale: the new count
	To           string `json:"to"`            // rollback: the release version (default: the last live one before)
}

// decodeBody reads an optional JSON body strictly: unknown fields, trailing
// data and wrong types are errors that name the field.
func decodeBody(r *http.Request, v any) error {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("body: larger than %d bytes", maxBody)
		}
		return fmt.Errorf("body: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return fmt.Errorf("body.%s: want %s, got %s", te.Field, te.Type, te.Value)
		case errors.As(err, &se):
			return fmt.Errorf("body: invalid JSON at byte %d: %v", se.Offset, err)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return fmt.Errorf("body.%s: unknown field", strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`))
		}
		return fmt.Errorf("body: %v", err)
	}
	if dec.More() {
		return errors.New("body: trailing data after the JSON object")
	}
	return nil
}

// readyTimeout returns the body's ready_timeout, or def.
func (b actionBody) readyTimeout(def time.Duration) (time.Duration, error) {
	if b.ReadyTimeout == "" {
		return def, nil
	}
	d, err := time.ParseDuration(b.ReadyTimeout)
	if err != nil || d <= 0 || d > time.Hour {
		return 0, fmt.Errorf("body.ready_timeout: %q: want a duration between 1ms and 1h, such as 30s", b.ReadyTimeout)
	}
	return d, nil
}

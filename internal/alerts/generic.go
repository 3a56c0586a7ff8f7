package alerts

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/medic-dev/medic/internal/detect"
	"github.com/medic-dev/medic/internal/signal"
)

// genericAlert is the generic webhook's alert.
type genericAlert struct {
	Labels      json.RawMessage `json:"labels"`
	Annotations json.RawMessage `json:"annotations"`
	Status      string          `json:"status"`
	StartsAt    string          `json:"starts_at"`
	EndsAt      string          `json:"ends_at"`
}

// ParseGeneric parses the generic webhook's body: one alert object or a
// list of them, such as
//
//	{"labels": {"alertname": "QueueStuck", "service": "worker"},
//	 "annotations": {"summary": "no progress for 10m"},
//	 "status": "firing", "starts_at": "2026-01-02T15:04:05Z"}
//
// labels (at least one) and status (firing or resolved) are required;
// starts_at and ends_at are optional RFC 3339 times, and ends_at, when set,
// resolves the alert once it passes. Fields of a list are named by index:
// "[2].status".
func ParseGeneric(body []byte) ([]detect.ExternalAlert, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var raws []json.RawMessage
		if err := decodeStrict(body, "", &raws); err != nil {
			return nil, err
		}
		if len(raws) == 0 {
			return nil, fieldErr("", "empty list: want at least one alert")
		}
		out := make([]detect.ExternalAlert, 0, len(raws))
		for i, raw := range raws {
			a, err := parseGenericOne(raw, fmt.Sprintf("[%d]", i))
			if err != nil {
				return nil, err
			}
			out = append(out, a)
		}
		return out, nil
	}
	a, err := parseGenericOne(body, "")
	if err != nil {
		return nil, err
	}
	return []detect.ExternalAlert{a}, nil
}

func parseGenericOne(raw []byte, p string) (detect.ExternalAlert, error) {
	var g genericAlert
	if err := decodeStrict(raw, p, &g); err != nil {
		return detect.ExternalAlert{}, err
	}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return detect.ExternalAlert{}, fieldErr(p, "want an alert object, got null")
	}
	labels, err := decodeStringMap(g.Labels, join(p, "labels"))
	if err != nil {
		return detect.ExternalAlert{}, err
	}
	if err := checkLabels(join(p, "labels"), labels); err != nil {
		return detect.ExternalAlert{}, err
	}
	annotations, err := decodeStringMap(g.Annotations, join(p, "annotations"))
	if err != nil {
		return detect.ExternalAlert{}, err
	}
	status, err := parseStatus(join(p, "status"), g.Status)
	if err != nil {
		return detect.ExternalAlert{}, err
	}
	starts, err := parseTime(join(p, "starts_at"), g.StartsAt)
	if err != nil {
		return detect.ExternalAlert{}, err
	}
	ends, err := parseTime(join(p, "ends_at"), g.EndsAt)
	if err != nil {
		return detect.ExternalAlert{}, err
	}
	if !starts.IsZero() && !ends.IsZero() && ends.Before(starts) {
		return detect.ExternalAlert{}, fieldErr(join(p, "ends_at"), "%s is before starts_at %s", g.EndsAt, g.StartsAt)
	}
	return detect.ExternalAlert{
		Source: SourceWebhook, Status: status, Labels: signal.Labels(labels),
		Annotations: annotations, StartsAt: starts, EndsAt: ends,
	}, nil
}

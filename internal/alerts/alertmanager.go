package alerts

import (
	"encoding/json"
	"fmt"

	"github.com/medic-dev/medic/internal/detect"
	"github.com/medic-dev/medic/internal/signal"
)

// SourceAlertmanager and SourceWebhook name where an ExternalAlert came from.
const (
	SourceAlertmanager = "alertmanager"
	SourceWebhook      = "webhook"
)

// amMessage is Alertmanager's webhook payload, version 4 (alertmanager's
// notify/webhook Message embedding template.Data).
type amMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   uint64            `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []json.RawMessage `json:"alerts"`
}

// amAlert is one alert of the payload. Times and maps are kept raw so that
// a bad one is reported with its exact field.
type amAlert struct {
	Status       string          `json:"status"`
	Labels       json.RawMessage `json:"labels"`
	Annotations  json.RawMessage `json:"annotations"`
	StartsAt     string          `json:"startsAt"`
	EndsAt       string          `json:"endsAt"` // Go's zero time while firing
	GeneratorURL string          `json:"generatorURL"`
	Fingerprint  string          `json:"fingerprint"`
}

// ParseAlertmanager parses Alertmanager's webhook payload, version 4:
//
//	{"version": "4", "groupKey": …, "truncatedAlerts": 0, "status": "firing",
//	 "receiver": …, "groupLabels": {…}, "commonLabels": {…}, "commonAnnotations": {…},
//	 "externalURL": …, "alerts": [{"status": "firing", "labels": {…}, "annotations": {…},
//	 "startsAt": RFC 3339, "endsAt": RFC 3339, "generatorURL": …, "fingerprint": …}]}
//
// Every alert must have a status (firing or resolved) and labels; endsAt of
// Go's zero time (what Alertmanager sends while an alert fires) means no
// end. The alerts keep their own status: one message may resolve some and
// fire others.
func ParseAlertmanager(body []byte) ([]detect.ExternalAlert, error) {
	var m amMessage
	if err := decodeLenient(body, "", &m); err != nil {
		return nil, err
	}
	if m.Version != "4" {
		return nil, fieldErr("version", "want \"4\" (Alertmanager's webhook payload version), got %q", m.Version)
	}
	if _, err := parseStatus("status", m.Status); err != nil {
		return nil, err
	}
	if m.Alerts == nil {
		return nil, fieldErr("alerts", "required: the list of alerts")
	}
	out := make([]detect.ExternalAlert, 0, len(m.Alerts))
	for i, raw := range m.Alerts {
		p := fmt.Sprintf("alerts[%d]", i)
		var a amAlert
		if err := decodeLenient(raw, p, &a); err != nil {
			return nil, err
		}
		x, err := a.external(p)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

func (a *amAlert) external(p string) (detect.ExternalAlert, error) {
	status, err := parseStatus(join(p, "status"), a.Status)
	if err != nil {
		return detect.ExternalAlert{}, err
	}
	labels, err := decodeStringMap(a.Labels, join(p, "labels"))
	if err != nil {
		return detect.ExternalAlert{}, err
	}
	if err := checkLabels(join(p, "labels"), labels); err != nil {
		return detect.ExternalAlert{}, err
	}
	annotations, err := decodeStringMap(a.Annotations, join(p, "annotations"))
	if err != nil {
		return detect.ExternalAlert{}, err
	}
	starts, err := parseTime(join(p, "startsAt"), a.StartsAt)
	if err != nil {
		return detect.ExternalAlert{}, err
	}
	ends, err := parseTime(join(p, "endsAt"), a.EndsAt)
	if err != nil {
		return detect.ExternalAlert{}, err
	}
	if !starts.IsZero() && !ends.IsZero() && ends.Before(starts) {
		return detect.ExternalAlert{}, fieldErr(join(p, "endsAt"), "%s is before startsAt %s", a.EndsAt, a.StartsAt)
	}
	return detect.ExternalAlert{
		Source: SourceAlertmanager, Status: status, Labels: signal.Labels(labels),
		Annotations: annotations, StartsAt: starts, EndsAt: ends,
		GeneratorURL: a.GeneratorURL, Fingerprint: a.Fingerprint,
	}, nil
}

package alerts_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/alerts"
	"github.com/medic-dev/medic/internal/detect"
)

// amPayload is a webhook body as Alertmanager 0.25 sends it: one firing
// alert (endsAt is Go's zero time) and one resolved.
const amPayload = `{
  "receiver": "medic",
  "status": "firing",
  "alerts": [
    {
      "status": "firing",
      "labels": {"alertname": "DiskFull", "instance": "web/0", "severity": "page"},
      "annotations": {"summary": "disk almost full"},
      "startsAt": "2026-01-02T15:04:05.123456789Z",
      "endsAt": "0001-01-01T00:00:00Z",
      "generatorURL": "http://prometheus:9090/graph?g0.expr=disk",
      "fingerprint": "b0a3d1f9c0e1a2b3"
    },
    {
      "status": "resolved",
      "labels": {"alertname": "DiskFull", "instance": "web/1", "severity": "page"},
      "annotations": {},
      "startsAt": "2026-01-02T15:00:00Z",
      "endsAt": "2026-01-02T15:05:00Z",
      "generatorURL": "",
      "fingerprint": "c1"
    }
  ],
  "groupLabels": {"alertname": "DiskFull"},
  "commonLabels": {"alertname": "DiskFull", "severity": "page"},
  "commonAnnotations": {},
  "externalURL": "http://alertmanager:9093",
  "version": "4",
  "groupKey": "{}:{alertname=\"DiskFull\"}",
  "truncatedAlerts": 0
}`

func TestParseAlertmanager(t *testing.T) {
	got, err := alerts.ParseAlertmanager([]byte(amPayload))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d alerts", len(got))
	}
	a := got[0]
	if a.Source != "alertmanager" || a.Status != detect.AlertFiring || a.Labels["instance"] != "web/0" ||
		a.Annotations["summary"] != "disk almost full" || a.Fingerprint != "b0a3d1f9c0e1a2b3" ||
		a.GeneratorURL != "http://prometheus:9090/graph?g0.expr=disk" {
		t.Errorf("alert 0 = %+v", a)
	}
	if !a.StartsAt.Equal(time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.UTC)) || !a.EndsAt.IsZero() {
		t.Errorf("alert 0 times: starts %v ends %v (Go's zero time means no end)", a.StartsAt, a.EndsAt)
	}
	if b := got[1]; b.Status != detect.AlertResolved || !b.EndsAt.Equal(time.Date(2026, 1, 2, 15, 5, 0, 0, time.UTC)) {
		t.Errorf("alert 1 = %+v", b)
	}
}

// Alertmanager may add fields within payload version 4: they are ignored, not refused.
func TestParseAlertmanagerIgnoresNewFields(t *testing.T) {
	body := strings.Replace(amPayload, `"version": "4"`, `"version": "4", "extra": 1`, 1)
	body = strings.Replace(body, `"fingerprint": "c1"`, `"fingerprint": "c1", "value": 3`, 1)
	if _, err := alerts.ParseAlertmanager([]byte(body)); err != nil {
		t.Fatalf("a payload with fields added by a newer Alertmanager was refused: %v", err)
	}
}

func TestParseAlertmanagerErrors(t *testing.T) {
	edit := func(old, new string) string {
		if !strings.Contains(amPayload, old) {
			t.Fatalf("payload lacks %q", old)
		}
		return strings.Replace(amPayload, old, new, 1)
	}
	for _, c := range []struct{ name, body, want string }{
		{"empty", ``, "empty body: want a JSON object"},
		{"syntax", `{"version": "4",}`, "invalid JSON at byte 17"},
		{"trailing", amPayload + `{}`, "trailing data after the JSON value"},
		{"trailing bracket", amPayload + `]`, "trailing data after the JSON value"},
		{"version", edit(`"version": "4"`, `"version": "3"`), `version: want "4" (Alertmanager's webhook payload version), got "3"`},
		{"version type", edit(`"version": "4"`, `"version": 4`), "version: want a string, got number"},
		{"group status", edit(`"status": "firing",
  "alerts"`, `"status": "burning",
  "alerts"`), `status: want firing or resolved, got "burning"`},
		{"no alerts", `{"version": "4", "status": "firing"}`, "alerts: required"},
		{"alert status", edit(`"status": "resolved"`, `"status": "ok"`), `alerts[1].status: want firing or resolved, got "ok"`},
		{"label type", edit(`"severity": "page"},
      "annotations": {"summary"`, `"severity": 1},
      "annotations": {"summary"`), "alerts[0].labels.severity: want a string, got number"},
		{"no labels", edit(`"labels": {"alertname": "DiskFull", "instance": "web/1", "severity": "page"}`, `"labels": {}`), "alerts[1].labels: required"},
		{"label name", edit(`"instance": "web/1"`, `"in-stance": "web/1"`), `alerts[1].labels.in-stance: invalid label name "in-stance"`},
		{"startsAt", edit(`"2026-01-02T15:00:00Z"`, `"yesterday"`), `alerts[1].startsAt: want an RFC 3339 time such as 2026-01-02T15:04:05Z, got "yesterday"`},
		{"ends before", edit(`"endsAt": "2026-01-02T15:05:00Z"`, `"endsAt": "2026-01-02T14:00:00Z"`), "alerts[1].endsAt: 2026-01-02T14:00:00Z is before startsAt"},
		{"alert not object", edit(`"alerts": [`, `"alerts": [7, `), "alerts[0]: want an object, got number"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := alerts.ParseAlertmanager([]byte(c.body))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			var fe *alerts.Error
			if !errors.As(err, &fe) {
				t.Errorf("err %T is not an *alerts.Error", err)
			}
		})
	}
}

func TestParseGeneric(t *testing.T) {
	one := `{"labels": {"alertname": "QueueStuck", "service": "worker"}, "annotations": {"summary": "stuck"},
	         "status": "firing", "starts_at": "2026-01-02T15:04:05Z", "ends_at": "2026-01-02T16:00:00Z"}`
	got, err := alerts.ParseGeneric([]byte(one))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Source != "webhook" || got[0].Status != detect.AlertFiring || got[0].Labels["service"] != "worker" ||
		!got[0].EndsAt.Equal(time.Date(2026, 1, 2, 16, 0, 0, 0, time.UTC)) {
		t.Errorf("one = %+v", got)
	}
	list, err := alerts.ParseGeneric([]byte(`[` + one + `, {"labels": {"alertname": "X"}, "status": "resolved"}]`))
	if err != nil || len(list) != 2 || list[1].Status != detect.AlertResolved || !list[1].StartsAt.IsZero() {
		t.Errorf("list = %+v, %v", list, err)
	}
	for _, c := range []struct{ body, want string }{
		{`{"labels": {"a": "b"}}`, "status: required: firing or resolved"},
		{`{"labels": {"a": "b"}, "status": "FIRING"}`, `status: want firing or resolved, got "FIRING"`},
		{`{"status": "firing"}`, "labels: required"},
		{`{"labels": {"a": "b"}, "status": "firing", "startsAt": "x"}`, "startsAt: unknown field"},
		{`{"labels": {"a": "b"}, "status": "firing", "ends_at": "soon"}`, `ends_at: want an RFC 3339 time`},
		{`[]`, "empty list: want at least one alert"},
		{`[{"labels": {"a": "b"}, "status": "firing"}, {"labels": {"a": "b"}, "status": "firing"}, {"labels": {"a": "b"}, "status": "maybe"}]`,
			`[2].status: want firing or resolved, got "maybe"`},
		{`[{"labels": {"a": "b"}, "status": "firing"}, null]`, "[1]: want an alert object, got null"},
		{`null`, "want an alert object, got null"},
		{`"firing"`, "want an object, got string"},
		{`{"labels": ["a"], "status": "firing"}`, "labels: want an object of strings, got array"},
	} {
		if _, err := alerts.ParseGeneric([]byte(c.body)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.body, err, c.want)
		}
	}
}

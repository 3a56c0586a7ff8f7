package alerts_test

import (
	"errors"
	"testing"

	"github.com/medic-dev/medic/internal/alerts"
	"github.com/medic-dev/medic/internal/detect"
)

// checkParsed holds for whatever a parser accepts: every alert is usable
// by the condition engine, and a rejection is a field error.
func checkParsed(t *testing.T, got []detect.ExternalAlert, err error) {
	if err != nil {
		var fe *alerts.Error
		if !errors.As(err, &fe) {
			t.Fatalf("error %T %v is not an *alerts.Error", err, err)
		}
		if got != nil {
			t.Fatalf("alerts returned with an error: %+v", got)
		}
		return
	}
	for i, a := range got {
		if a.Status != detect.AlertFiring && a.Status != detect.AlertResolved {
			t.Fatalf("alert %d: status %q", i, a.Status)
		}
		if len(a.Labels) == 0 {
			t.Fatalf("alert %d: no labels", i)
		}
		if !a.StartsAt.IsZero() && !a.EndsAt.IsZero() && a.EndsAt.Before(a.StartsAt) {
			t.Fatalf("alert %d: ends before it starts", i)
		}
		if a.Source != alerts.SourceAlertmanager && a.Source != alerts.SourceWebhook {
			t.Fatalf("alert %d: source %q", i, a.Source)
		}
	}
}

// Run with: go test ./internal/alerts -run '^$' -fuzz FuzzParseAlertmanager -fuzztime 60s
func FuzzParseAlertmanager(f *testing.F) {
	f.Add([]byte(amPayload))
	f.Add([]byte(`{"version": "4", "status": "resolved", "alerts": []}`))
	f.Add([]byte(`{"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {"a": "b"}, "startsAt": "2026-01-02T15:04:05Z"}]}`))
	f.Add([]byte(`{"version": "4", "status": "firing", "alerts": [null, 1, "x", {"labels": {"a": 1}}]}`))
	f.Add([]byte(`{"alerts": [{"labels": {"":""}, "endsAt": "0001-01-01T00:00:00Z"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := alerts.ParseAlertmanager(body)
		checkParsed(t, got, err)
		for _, a := range got {
			if a.Source != alerts.SourceAlertmanager {
				t.Fatalf("source %q", a.Source)
			}
		}
	})
}

// Run with: go test ./internal/alerts -run '^$' -fuzz FuzzParseGeneric -fuzztime 60s
func FuzzParseGeneric(f *testing.F) {
	f.Add([]byte(`{"labels": {"alertname": "X"}, "status": "firing"}`))
	f.Add([]byte(`[{"labels": {"alertname": "X"}, "annotations": {"s": "t"}, "status": "resolved", "starts_at": "2026-01-02T15:04:05Z", "ends_at": "2026-01-02T16:04:05Z"}]`))
	f.Add([]byte(`[null, {}, []]`))
	f.Add([]byte(` [ ] `))
	f.Add([]byte(`{"labels": {"a": null}, "status": "firing", "ends_at": "0001-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := alerts.ParseGeneric(body)
		checkParsed(t, got, err)
		if err == nil && len(got) == 0 {
			t.Fatal("accepted a body with no alerts")
		}
	})
}

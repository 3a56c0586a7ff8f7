package alerts_test

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/alerts"
	"github.com/medic-dev/medic/internal/config"
	"github.com/medic-dev/medic/internal/detect"
	"github.com/medic-dev/medic/internal/signal"
	"github.com/medic-dev/medic/internal/testutil/amtest"
)

// TestAlertmanagerIntegration: the real Alertmanager delivers an alert to
// medic's handler, which parses it, and the condition engine fires and then
// resolves the alert condition following it.
func TestAlertmanagerIntegration(t *testing.T) {
	engine, err := detect.New(map[string]*config.Condition{
		"am_disk": {Alert: &config.ConditionAlert{Match: map[string]string{"alertname": "DiskFull"}}},
	}, detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	received := make(chan []detect.ExternalAlert, 16)
	hook := httptest.NewServer(alerts.AlertmanagerHandler(func(as []detect.ExternalAlert) error {
		err := engine.PushAlerts(as) // before the test hears of it: it reads the engine next
		received <- as
		return err
	}))
	t.Cleanup(hook.Close)
	base := amtest.Start(t, hook.URL+"/v1/alerts/alertmanager", "")

	wait := func(status detect.AlertStatus) detect.ExternalAlert {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case as := <-received:
				for _, a := range as {
					if a.Status == status {
						return a
					}
				}
			case <-timeout:
				t.Fatalf("no %s alert from alertmanager within 30s", status)
			}
		}
	}
	store := signal.NewStore(signal.Options{})
	starts := time.Now().UTC().Truncate(time.Millisecond)
	alert := `[{"labels": {"alertname": "DiskFull", "instance": "web/0", "severity": "page"},
	            "annotations": {"summary": "disk 95%% full"},
	            "startsAt": "%s", %s "generatorURL": "http://medic.test/graph"}]`
	amtest.Post(t, base, fmt.Sprintf(alert, starts.Format(time.RFC3339Nano), ""))

	a := wait(detect.AlertFiring)
	if a.Source != alerts.SourceAlertmanager || a.Labels["instance"] != "web/0" || a.Labels["severity"] != "page" ||
		a.Annotations["summary"] != "disk 95% full" || a.GeneratorURL != "http://medic.test/graph" || a.Fingerprint == "" {
		t.Errorf("firing alert = %+v", a)
	}
	if !a.StartsAt.Equal(starts) || !a.EndsAt.IsZero() {
		t.Errorf("firing alert times: starts %v (want %v), ends %v (want none)", a.StartsAt, starts, a.EndsAt)
	}
	trs := engine.Eval(time.Now(), store)
	if len(trs) != 1 || trs[0].Condition != "am_disk" || trs[0].To != detect.StateFiring || trs[0].Labels["instance"] != "web/0" {
		t.Fatalf("after the firing webhook: %+v", trs)
	}

	ends := time.Now().UTC().Truncate(time.Millisecond) // Alertmanager wants ends after starts
	if !ends.After(starts) {
		ends = starts.Add(time.Millisecond)
	}
	amtest.Post(t, base, fmt.Sprintf(alert, starts.Format(time.RFC3339Nano), `"endsAt": "`+ends.Format(time.RFC3339Nano)+`",`))
	r := wait(detect.AlertResolved)
	if !r.EndsAt.Equal(ends) || r.Labels["instance"] != "web/0" {
		t.Errorf("resolved alert = %+v, want ends %v", r, ends)
	}
	trs = engine.Eval(time.Now(), store)
	if len(trs) != 1 || !trs[0].Resolved() {
		t.Fatalf("after the resolved webhook: %+v", trs)
	}
}

package alerts_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/alerts"
	"github.com/medic-dev/medic/internal/detect"
)

func TestHandlers(t *testing.T) {
	var pushed []detect.ExternalAlert
	push := func(as []detect.ExternalAlert) error {
		pushed = append(pushed, as...)
		return nil
	}
	fail := func([]detect.ExternalAlert) error { return errors.New("engine stopped") }
	generic := `{"labels": {"alertname": "X"}, "status": "firing"}`
	for _, c := range []struct {
		name     string
		h        http.Handler
		method   string
		ctype    string
		body     string
		code     int
		wantBody string
	}{
		{"alertmanager ok", alerts.AlertmanagerHandler(push), "POST", "application/json", amPayload, 200, `{"accepted":2}`},
		{"generic ok", alerts.GenericHandler(push), "POST", "application/json; charset=utf-8", generic, 200, `{"accepted":1}`},
		{"no content type", alerts.GenericHandler(push), "POST", "", generic, 200, `{"accepted":1}`},
		{"get", alerts.GenericHandler(push), "GET", "", "", 405, `use POST`},
		{"form", alerts.GenericHandler(push), "POST", "application/x-www-form-urlencoded", "a=b", 415, `want application/json`},
		{"bad field", alerts.AlertmanagerHandler(push), "POST", "application/json",
			strings.Replace(amPayload, `"status": "resolved"`, `"status": "gone"`, 1), 400,
			`{"error":"alerts[1].status: want firing or resolved, got \"gone\""}`},
		{"too large", alerts.GenericHandler(push), "POST", "application/json",
			`{"labels": {"a": "` + strings.Repeat("x", alerts.MaxBody) + `"}, "status": "firing"}`, 413, "larger than 1048576 bytes"},
		{"push fails", alerts.GenericHandler(fail), "POST", "application/json", generic, 500, "engine stopped"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, "/v1/alerts", strings.NewReader(c.body))
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			rec := httptest.NewRecorder()
			c.h.ServeHTTP(rec, req)
			if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.wantBody) {
				t.Errorf("%d %s, want %d containing %s", rec.Code, rec.Body.String(), c.code, c.wantBody)
			}
			if !json.Valid(rec.Body.Bytes()) || rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("answer is not JSON: %q", rec.Body.String())
			}
		})
	}
	if len(pushed) != 4 || pushed[0].Source != "alertmanager" || pushed[2].Source != "webhook" {
		t.Errorf("pushed = %+v", pushed)
	}
}

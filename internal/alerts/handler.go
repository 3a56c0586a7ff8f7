package alerts

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/medic-dev/medic/internal/detect"
)

// MaxBody bounds a pushed payload. Alertmanager's payloads for a group are
// a few KiB; its max_alerts setting truncates larger ones.
const MaxBody = 1 << 20

// PushFunc hands parsed alerts to the condition engine
// (detect.Engine.PushAlerts is one). An error answers 500, so that the
// sender retries.
type PushFunc func([]detect.ExternalAlert) error

// AlertmanagerHandler receives Alertmanager's webhook (POST, JSON, at most
// MaxBody bytes). It answers 200 with {"accepted": N}, or 400 with
// {"error": "alerts[2].status: want firing or resolved"}.
func AlertmanagerHandler(push PushFunc) http.Handler { return handler(ParseAlertmanager, push) }

// GenericHandler receives the generic JSON webhook (see GenericAlert), with
// the same answers as AlertmanagerHandler.
func GenericHandler(push PushFunc) http.Handler { return handler(ParseGeneric, push) }

func handler(parse func([]byte) ([]detect.ExternalAlert, error), push PushFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method " + r.Method + " not allowed: use POST"})
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
				writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": fmt.Sprintf("content type %q: want application/json", ct)})
				return
			}
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("body larger than %d bytes", MaxBody)})
				return
			}
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "read body: " + err.Error()})
			return
		}
		alerts, err := parse(body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		if err := push(alerts); err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "push alerts: " + err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"accepted": len(alerts)})
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

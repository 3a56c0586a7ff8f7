package config_test

import (
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/config"
)

// TestDeployMetricsValidation: a scraped counter's name, path and
// max_increase are checked, each refusal naming the field and the line.
func TestDeployMetricsValidation(t *testing.T) {
	yml := `services:
  web:
    command: [./web]
    port: 9100
    proxy: {listen: ":8080"}
    deploy:
      strategy: canary
      metrics:
        - {name: app_errors_total}
        - {name: "bad name<script>", path: metrics, max_increase: 1.5}
        - {name: app_errors_total}
`
	_, err := config.Parse("medic.yaml", []byte(yml))
	if err == nil {
		t.Fatal("hostile metrics accepted")
	}
	got := err.Error()
	for _, want := range []string{"services.web.deploy.metrics[1].name", "services.web.deploy.metrics[1].path", "services.web.deploy.metrics[1].max_increase",
		"services.web.deploy.metrics[2].name", "medic.yaml:"} {
		if !strings.Contains(got, want) {
			t.Errorf("the error lacks %q:\n%s", want, got)
		}
	}
	good := strings.Replace(strings.Replace(yml, `        - {name: "bad name<script>", path: metrics, max_increase: 1.5}
`, "", 1), `        - {name: app_errors_total}
`, "", 1)
	cfg, err := config.Parse("medic.yaml", []byte(good))
	if err != nil {
		t.Fatalf("one good metric refused: %v", err)
	}
	d := cfg.Services["web"].Deploy
	if len(d.Metrics) != 1 || d.Metrics[0].PathOrDefault() != "/metrics" || len(d.VerdictCounters()) != 1 {
		t.Errorf("metrics %+v", d.Metrics)
	}
}

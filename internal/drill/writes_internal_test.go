package drill

import (
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/drill/load"
)

func TestWriteRTO(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ok := func(ms int) load.Sample { return load.Sample{Intended: at(ms), OK: true} }
	fail := func(ms int) load.Sample { return load.Sample{Intended: at(ms)} }
	secs := func(p *float64) string {
		if p == nil {
			return "nil"
		}
		return time.Duration(*p * float64(time.Second)).Round(time.Millisecond).String()
	}
	tests := []struct {
		name    string
		samples []load.Sample
		want    string
	}{
		{"no outage", []load.Sample{ok(0), ok(990), ok(1010), ok(1020)}, "20ms"},
		{"outage after the injection", []load.Sample{ok(900), fail(1100), ok(5000), ok(5010)}, "4.1s"},
		{"a gap before the injection does not count", []load.Sample{ok(0), ok(900), ok(1010)}, "110ms"},
		{"never recovered: up to the end", []load.Sample{ok(900), fail(1100), fail(1200)}, "9.1s"},
		{"nothing after the injection", []load.Sample{ok(100), ok(200)}, "nil"},
	}
	for _, tt := range tests {
		if got := secs(writeRTO(tt.samples, at(1000), at(10000))); got != tt.want {
			t.Errorf("%s: RTO %s, want %s", tt.name, got, tt.want)
		}
	}
}

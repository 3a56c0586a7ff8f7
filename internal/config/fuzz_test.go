package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/medic-dev/medic/internal/config"
)

// FuzzParse: Parse never panics, answers within the hostile-input bound,
// every error is Errors with positions, and whatever it accepts is valid,
// lint-able and equal to itself. It is seeded with the good and bad
// fixtures, the examples and the hostile corpus (hostile_test.go). Run with
//
//	go test ./internal/config -run '^$' -fuzz FuzzParse -fuzztime 60s -fuzzminimizetime 5s
//
// (without a short -fuzzminimizetime the engine spends most of a short run
// minimizing new inputs and reports 0 execs/sec).
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/good/*.yaml", "testdata/bad/*.yaml", "testdata/hostile/*.yaml", "../../examples/*.yaml"} {
		for _, file := range glob(f, pattern) {
			f.Add(mustRead(f, file))
		}
	}
	for _, h := range hostileCorpus(f) {
		if !strings.HasPrefix(h.name, "gen/") {
			continue // the files were added above
		}
		f.Add(h.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		cfg, err := config.Parse("fuzz.yaml", data)
		// Twice the bound: a fuzzing machine runs other workers at once.
		if took := time.Since(start); took > 2*hostileTime*slowdown {
			t.Fatalf("Parse took %v on %d bytes", took, len(data))
		}
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse returned a config and an error")
			}
			var errs config.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error is %T, want non-empty config.Errors: %v", err, err)
			}
			for _, e := range errs {
				if e.File != "fuzz.yaml" || e.Line < 1 || e.Col < 1 {
					t.Fatalf("error without a position: %+v", e)
				}
				// A panic in this package is a bug; one in the YAML parser
				// is reported as "YAML parser failed" and tolerated.
				if strings.Contains(e.Msg, "internal error") {
					t.Fatalf("panic inside Parse: %s", e.Msg)
				}
			}
			_, again := config.Parse("fuzz.yaml", data)
			if again == nil || again.Error() != err.Error() {
				t.Fatalf("Parse is not deterministic:\n%v\n---\n%v", err, again)
			}
			return
		}
		if cfg == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
		}
		for _, w := range config.Lint(cfg) {
			if w.Line < 1 {
				t.Fatalf("warning without a position: %v", w)
			}
		}
		if ch := config.Diff(cfg, cfg); !ch.Empty() {
			t.Fatalf("Diff(cfg, cfg) = %+v", ch)
		}
	})
}

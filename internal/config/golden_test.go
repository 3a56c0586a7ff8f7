package config_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/config"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.err, docs/medic.schema.json and schema_docs.go from the current output")

// mustParseFile parses a fixture under its base name, so that golden
// messages do not depend on where the test runs.
func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func glob(tb testing.TB, pattern string) []string {
	tb.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		tb.Fatalf("no fixtures match %s (%v)", pattern, err)
	}
	return files
}

// TestGood: every good fixture loads without error.
func TestGood(t *testing.T) {
	for _, f := range glob(t, "testdata/good/*.yaml") {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := config.Load(f)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if cfg.Path != f {
				t.Errorf("Path = %q, want %q", cfg.Path, f)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate after Load: %v", err)
			}
		})
	}
}

// TestBad: every bad fixture fails with exactly the errors in its .err file.
// Regenerate with -update and review the diff: every line must name
// file:line:col and the field.
func TestBad(t *testing.T) {
	for _, f := range glob(t, "testdata/bad/*.yaml") {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := config.Parse(filepath.Base(f), mustRead(t, f))
			if err == nil {
				t.Fatalf("Parse accepted %s", f)
			}
			if cfg != nil {
				t.Errorf("Parse returned a config along with errors")
			}
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want config.Errors: %v", err, err)
			}
			for _, e := range errs {
				if e.File != filepath.Base(f) || e.Line < 1 || e.Col < 1 {
					t.Errorf("error without a position: %q", e)
				}
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want := string(mustRead(t, golden))
			if got != want {
				t.Errorf("errors differ from %s (regenerate with -update)\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

// TestExample: the annotated example in the docs is valid and lint-clean.
func TestExample(t *testing.T) {
	cfg, err := config.Load("../../examples/medic.yaml")
	if err != nil {
		t.Fatalf("examples/medic.yaml: %v", err)
	}
	if ws := config.Lint(cfg); len(ws) > 0 {
		t.Errorf("examples/medic.yaml has lint warnings: %v", ws)
	}
	if len(cfg.Services) != 2 {
		t.Errorf("services = %d, want web and worker", len(cfg.Services))
	}
}

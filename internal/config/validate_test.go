package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/config"
)

// TestValidateInCode: a config built in code is validated the same way; its
// errors have no file or position, only the field.
func TestValidateInCode(t *testing.T) {
	c := &config.Config{Services: map[string]*config.Service{
		"web": {Command: []string{"./web"}, Port: 9100, Instances: 2},
		"api": {Command: []string{"./api"}, Port: 9101, DependsOn: []string{"web", "nope"}},
	}}
	c.SetDefaults()
	err := c.Validate()
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Validate() = %v (%T), want Errors", err, err)
	}
	want := `services.api.depends_on[1]: unknown service "nope"
services.web.port: instances use ports 9100-9101, overlapping services.api (port 9101)`
	if err.Error() != want {
		t.Errorf("Validate():\n%s\nwant:\n%s", err, want)
	}
	var one *config.Error
	if !errors.As(err, &one) || one.Line != 0 || one.File != "" {
		t.Errorf("errors.As(*Error) = %+v", one)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    config.Error
		want string
	}{
		{config.Error{File: "medic.yaml", Line: 7, Col: 5, Field: "services.web.instances", Msg: "must be at least 1, got 0"},
			"medic.yaml:7:5: services.web.instances: must be at least 1, got 0"},
		{config.Error{File: "medic.yaml", Line: 2, Col: 1, Msg: "YAML syntax: x"}, "medic.yaml:2:1: YAML syntax: x"},
		{config.Error{Field: "api.listen", Msg: "bad"}, "api.listen: bad"},
		{config.Error{File: "m.yaml", Msg: "unreadable"}, "m.yaml: unreadable"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	w := config.Warning{File: "m.yaml", Line: 3, Col: 9, Field: "services.a", Msg: "hm"}
	if got := w.String(); got != "m.yaml:3:9: warning: services.a: hm" {
		t.Errorf("Warning.String() = %q", got)
	}
}

// TestErrorsSorted: errors come out in file order whatever order the checks
// ran in, one per line.
func TestErrorsSorted(t *testing.T) {
	_, err := config.Parse("s.yaml", []byte(`
services:
  b: {command: [./b], instances: 0, bogus: 1}
  a: {command: [], port: 99999}
`))
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		"s.yaml:3:23: services.b.instances: must be at least 1, got 0",
		"s.yaml:3:37: services.b.bogus: unknown field \"bogus\"",
		"s.yaml:4:7: services.a.command: required: the program and its arguments, e.g. [./web, --port, \"${PORT}\"]",
		"s.yaml:4:20: services.a.port: must be 0 (no port) or from 1 to 65535, got 99999",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := config.Load(t.TempDir() + "/nope.yaml")
	if err == nil || !strings.Contains(err.Error(), "read config") {
		t.Errorf("Load(missing) = %v", err)
	}
}

// TestGuards: inputs that would make the YAML parser slow are refused with a
// position instead of being parsed.
func TestGuards(t *testing.T) {
	deep := "a: " + strings.Repeat("[", 200) + strings.Repeat("]", 200)
	_, err := config.Parse("deep.yaml", []byte(deep))
	if err == nil || err.Error() != "deep.yaml:1:103: lists and mappings nested more than 100 levels deep" {
		t.Errorf("deep: %v", err)
	}
	// Brackets in quotes and comments do not count.
	quoted := "a: '" + strings.Repeat("[", 200) + "' # " + strings.Repeat("{", 200) + "\n"
	if _, err := config.Parse("q.yaml", []byte(quoted)); err == nil || !strings.Contains(err.Error(), `unknown field "a"`) {
		t.Errorf("quoted: %v", err)
	}
	big := make([]byte, 2<<20)
	if _, err := config.Parse("big.yaml", big); err == nil || !strings.Contains(err.Error(), "big.yaml:1:1: file is") {
		t.Errorf("big: %v", err)
	}
}

// TestSectionHooks: a section's own Validate (here the proxy's) runs, and its
// issues carry the section's path and position.
func TestSectionHooks(t *testing.T) {
	_, err := config.Parse("p.yaml", []byte(`
services:
  web:
    command: [./web]
    port: 9100
    proxy: {}
`))
	var errs config.Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("a proxy without listen was accepted: %v", err)
	}
	for _, e := range errs {
		if !strings.HasPrefix(e.Field, "services.web.proxy") || e.Line != 6 || e.Col != 5 {
			t.Errorf("proxy issue at %d:%d %s, want 6:5 under services.web.proxy", e.Line, e.Col, e.Field)
		}
	}
}

package config_test

import (
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/config"
)

// goccy/go-yaml reads `[127.0.0.1:2379]` inside a flow mapping as a list
// holding the mapping {127.0.0.1: 2379}; YAML 1.2 reads a plain scalar.
// The first config writes exactly that.
func TestFlowSequencePlainScalarWithColon(t *testing.T) {
	const doc = `name: node-a
data_dir: ./.medic-a
etcd: {endpoints: [127.0.0.1:2379, "127.0.0.2:2379", etcd-3:2379], prefix: /medic/demo}
databases:
  pg:
    postgres: {data: ./.medic-a/pg, listen: 127.0.0.1:5433, user: postgres}
    proxy: {primary: 127.0.0.1:6432, replicas: 127.0.0.1:6433}
`
	c, err := config.Parse("medic.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:2379", "127.0.0.2:2379", "etcd-3:2379"}
	if got := c.Etcd.Endpoints; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("endpoints %q, want %q", got, want)
	}
}

// A real one-pair mapping (a space after the colon) where a string is
// expected is still an error, with its place.
func TestFlowSequenceMappingStillRejected(t *testing.T) {
	const doc = `etcd: {endpoints: [host: 2379]}
`
	_, err := config.Parse("medic.yaml", []byte(doc))
	if err == nil || !strings.Contains(err.Error(), "medic.yaml:1:") || !strings.Contains(err.Error(), "etcd.endpoints[0]: expected a string, got a mapping") {
		t.Fatalf("err = %v, want etcd.endpoints[0] expected a string", err)
	}
}

package config

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/invopop/jsonschema"
)

// SchemaID is the $id of the generated schema: where docs/medic.schema.json
// is published.
const SchemaID = "https://raw.githubusercontent.com/medic-dev/medic/main/docs/medic.schema.json"

const (
	// durationPattern is what time.ParseDuration accepts, without a sign.
	durationPattern = `^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`
	byteSizePattern = `^ *[0-9]+ *(B|K|KB|KiB|M|MB|MiB|G|GB|GiB)? *$`
)

// Schema returns the JSON Schema (draft 2020-12) of medic.yaml, generated
// from the Go types: the field comments in types.go become descriptions, and
// durations and sizes are strings with a pattern. It describes shape and
// simple ranges for editors; Parse remains the authority (cross-field rules
// such as timeout <= period are not in the schema).
//
// The committed copy is docs/medic.schema.json; regenerate it (and the
// descriptions in schema_docs.go) with
//
//	go test ./internal/config -run TestSchema -update
func Schema() ([]byte, error) { return schema(fieldDocs) }

// schema builds the schema with docs ("Type" and "Type.Field" to comment) as
// descriptions.
func schema(docs map[string]string) ([]byte, error) {
	r := &jsonschema.Reflector{
		ExpandedStruct: true,
		Mapper:         unitSchema,
		LookupComment: func(t reflect.Type, field string) string {
			if field == "" {
				return docs[t.Name()]
			}
			return docs[t.Name()+"."+field]
		},
	}
	s := r.Reflect(&Config{})
	s.ID = SchemaID
	s.Title = "medic.yaml"
	// Names the reflector cannot know from the Go types.
	if svcs, ok := s.Properties.Get("services"); ok {
		svcs.PropertyNames = &jsonschema.Schema{Pattern: serviceName.String()}
	}
	if svc := s.Definitions["Service"]; svc != nil {
		if env, ok := svc.Properties.Get("env"); ok {
			env.PropertyNames = &jsonschema.Schema{Pattern: envName.String()}
		}
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode config schema: %w", err)
	}
	return append(b, '\n'), nil
}

// unitSchema maps Duration and ByteSize, which YAML holds as strings (or a
// bare integer: 0 for a duration, bytes for a size).
func unitSchema(t reflect.Type) *jsonschema.Schema {
	switch t {
	case reflect.TypeFor[Duration]():
		return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
			{Type: "string", Pattern: durationPattern, Examples: []any{"250ms", "2s", "1m30s"}},
			{Type: "integer", Const: 0},
		}}
	case reflect.TypeFor[ByteSize]():
		return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
			{Type: "string", Pattern: byteSizePattern, Examples: []any{"512KiB", "10MiB"}},
			{Type: "integer", Minimum: "0"},
		}}
	}
	return nil
}

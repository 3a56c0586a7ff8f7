package config

// SchemaWithDocs builds the schema with the given descriptions, so that
// TestSchema can check docs/medic.schema.json against comments fresh from
// the sources, not the ones compiled into schema_docs.go.
func SchemaWithDocs(docs map[string]string) ([]byte, error) { return schema(docs) }

package config_test

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/medic-dev/medic/internal/config"
)

const (
	configDoc  = "../../docs/config.md"
	exampleDoc = "../../examples/medic.yaml"
	refBegin   = "<!-- BEGIN REFERENCE: generated from internal/config's types by `go test ./internal/config -run TestConfigDoc -update`; edit the Go comments, not this -->\n"
	refEnd     = "<!-- END REFERENCE -->\n"
	exBegin    = "<!-- BEGIN EXAMPLE: examples/medic.yaml, copied by `go test ./internal/config -run TestConfigDoc -update` -->\n"
	exEnd      = "<!-- END EXAMPLE -->\n"
)

// TestConfigDoc fails when the generated parts of docs/config.md (the key
// reference and the copy of examples/medic.yaml) are stale. Regenerate with
//
//	go test ./internal/config -run TestConfigDoc -update
func TestConfigDoc(t *testing.T) {
	doc := mustRead(t, configDoc)
	got := replaceBetween(t, doc, refBegin, refEnd, reference(sourceDocs(t)))
	got = replaceBetween(t, got, exBegin, exEnd, "```yaml\n"+string(mustRead(t, exampleDoc))+"```\n")
	if *update {
		if err := writeFile(configDoc, got); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(doc, got) {
		t.Errorf("docs/config.md is stale; regenerate with: go test ./internal/config -run TestConfigDoc -update")
	}
}

func replaceBetween(t *testing.T, doc []byte, begin, end, content string) []byte {
	t.Helper()
	i := bytes.Index(doc, []byte(begin))
	j := bytes.Index(doc, []byte(end))
	if i < 0 || j < i {
		t.Fatalf("docs/config.md lacks the markers %q … %q", begin, end)
	}
	var b bytes.Buffer
	b.Write(doc[:i+len(begin)])
	b.WriteString(content)
	b.Write(doc[j:])
	return b.Bytes()
}

// reference renders one table per config type, in the order they are met
// from the top level.
func reference(docs map[string]string) string {
	var order []reflect.Type
	paths := map[reflect.Type][]string{}
	var visit func(t reflect.Type, path string, depth int)
	visit = func(t reflect.Type, path string, depth int) {
		t, path = elem(t, path)
		if t.Kind() != reflect.Struct || t.PkgPath() != pkgPath || depth > 16 {
			return
		}
		if _, seen := paths[t]; !seen {
			order = append(order, t)
		}
		paths[t] = append(paths[t], path)
		for i := range t.NumField() {
			if name := yamlName(t.Field(i)); name != "" {
				visit(t.Field(i).Type, strings.TrimPrefix(path+"."+name, "."), depth+1)
			}
		}
	}
	visit(reflect.TypeFor[config.Config](), "", 0)

	var b strings.Builder
	for _, t := range order {
		if t.Name() == "Config" {
			b.WriteString("### Top level\n\n")
		} else {
			fmt.Fprintf(&b, "### %s\n\n", t.Name())
			if d := docs[t.Name()]; d != "" {
				b.WriteString(oneLine(d) + "\n\n")
			}
			var at []string
			for _, p := range paths[t] {
				at = append(at, "`"+p+"`")
			}
			fmt.Fprintf(&b, "At %s.\n\n", strings.Join(at, ", "))
		}
		var rows []string
		for i := range t.NumField() {
			f := t.Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			desc := oneLine(docs[t.Name()+"."+f.Name])
			if tag := f.Tag.Get("json"); !strings.Contains(tag, "omitempty") {
				desc = "**Required.** " + desc
			}
			rows = append(rows, fmt.Sprintf("| `%s` | %s | %s |", name, typeName(f.Type), desc))
		}
		if len(rows) == 0 {
			b.WriteString("(No keys yet.)\n\n")
			continue
		}
		b.WriteString("| key | type | meaning and default |\n|---|---|---|\n")
		b.WriteString(strings.Join(rows, "\n") + "\n\n")
	}
	return b.String()
}

// elem follows pointers, maps and lists to the element type, extending the
// path with <name> and [] as it goes.
func elem(t reflect.Type, path string) (reflect.Type, string) {
	for {
		switch t.Kind() {
		case reflect.Pointer:
			t = t.Elem()
		case reflect.Map:
			t, path = t.Elem(), path+".<name>"
		case reflect.Slice:
			t, path = t.Elem(), path+"[]"
		default:
			return t, path
		}
	}
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if !f.IsExported() || name == "-" {
		return ""
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name
}

func typeName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[config.Duration]():
		return "duration"
	case reflect.TypeFor[config.ByteSize]():
		return "size"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.Slice:
		return "list of " + plural(typeName(t.Elem()))
	case reflect.Map:
		return "map of " + plural(typeName(t.Elem()))
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Struct:
		if t.PkgPath() == pkgPath {
			return fmt.Sprintf("[%s](#%s)", t.Name(), strings.ToLower(t.Name()))
		}
	}
	return t.String()
}

func plural(name string) string {
	if strings.HasPrefix(name, "[") || strings.Contains(name, " ") {
		return name
	}
	return name + "s"
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

package config

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// decoder turns a YAML AST into Go values by reflection. A decoder that stops
// at the first problem makes the user fix a file one error at a time; this one
// reports every unknown key and type mismatch with its position, and records
// where each field was written so that semantic checks can point at it too.
//
// It supports what a hand-written config uses: block and flow collections,
// anchors and aliases, merge keys (<<), the core tags (!!str …), and any type
// implementing encoding.TextUnmarshaler (Duration, ByteSize) for scalars.
type decoder struct {
	src     *source
	errs    Errors
	anchors map[string][]*ast.AnchorNode // by name, in document order
	active  map[*ast.AnchorNode]bool     // anchors being expanded: an alias to one is a cycle
	steps   int
	fields  map[reflect.Type]map[string][]int
}

func newDecoder(src *source, body ast.Node) *decoder {
	d := &decoder{src: src, anchors: map[string][]*ast.AnchorNode{}, active: map[*ast.AnchorNode]bool{},
		fields: map[reflect.Type]map[string][]int{}}
	ast.Walk(anchorCollector(d.anchors), body)
	return d
}

type anchorCollector map[string][]*ast.AnchorNode

func (a anchorCollector) Visit(n ast.Node) ast.Visitor {
	if an, ok := n.(*ast.AnchorNode); ok && an.Name != nil {
		name := an.Name.GetToken().Value
		a[name] = append(a[name], an)
	}
	return a
}

// fail records a problem with the value at path. The path is marked bad so
// that defaults fill it and semantic checks stay quiet about it.
func (d *decoder) fail(path, format string, args ...any) {
	d.errs = append(d.errs, d.src.errorAt(path, fmt.Sprintf(format, args...)))
	d.src.bad[path] = true
}

func (d *decoder) record(path string, n ast.Node) {
	d.src.pos[path] = posOf(n)
}

func posOf(n ast.Node) position {
	if n != nil {
		if tk := n.GetToken(); tk != nil && tk.Position != nil && tk.Position.Line > 0 {
			return position{tk.Position.Line, max(tk.Position.Column, 1)}
		}
	}
	return position{1, 1}
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// textKind names what a TextUnmarshaler reads, for messages.
func textKind(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return "a duration such as 2s"
	case reflect.TypeFor[ByteSize]():
		return "a size such as 10MiB"
	}
	return "a string"
}

// decode stores node n into v (settable), reporting problems under path.
func (d *decoder) decode(path string, n ast.Node, v reflect.Value) {
	// expandedSize refused anything larger before decoding; this stays as a
	// second guard (maxSteps, in bounds.go).
	if d.steps++; d.steps > maxSteps {
		if d.steps == maxSteps+1 {
			d.fail("", "document too large: more than %d values after expanding aliases", maxSteps)
		}
		return
	}
	n, release, ok := d.resolve(path, n)
	defer release()
	if !ok {
		return
	}
	if isNull(n) {
		v.SetZero()
		return
	}
	if v.Kind() != reflect.Pointer && reflect.PointerTo(v.Type()).Implements(textUnmarshaler) {
		s, isScalar := scalarText(n)
		if !isScalar {
			d.fail(path, "expected %s, got %s", textKind(v.Type()), kind(n))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.fail(path, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.decode(path, n, p.Elem())
		v.Set(p)
	case reflect.Struct:
		d.decodeStruct(path, n, v)
	case reflect.Map:
		d.decodeMap(path, n, v)
	case reflect.Slice:
		d.decodeSlice(path, n, v)
	case reflect.String:
		switch n.(type) {
		case *ast.StringNode, *ast.LiteralNode:
			s, _ := scalarText(n)
			v.SetString(s)
		case *ast.MappingNode, *ast.MappingValueNode:
			if s, joined := flowPlain(n); joined {
				v.SetString(s)
				return
			}
			d.fail(path, "expected a string, got %s", kind(n))
		case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
			// Strict, as the schema is: "8" and 8 differ in YAML, and a
			// version 1.10 read as a number would become "1.1".
			d.fail(path, "expected a string, got %s (quote it: %q)", kind(n), n.GetToken().Value)
		default:
			d.fail(path, "expected a string, got %s", kind(n))
		}
	case reflect.Bool:
		b, isBool := n.(*ast.BoolNode)
		if !isBool {
			d.fail(path, "expected true or false, got %s", kind(n))
			return
		}
		v.SetBool(b.Value)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		d.decodeInt(path, n, v)
	case reflect.Float32, reflect.Float64:
		d.decodeFloat(path, n, v)
	default:
		d.fail(path, "cannot decode into Go type %s", v.Type())
	}
}

func (d *decoder) decodeInt(path string, n ast.Node, v reflect.Value) {
	in, isInt := n.(*ast.IntegerNode)
	if !isInt {
		// The parser reads an integer too large for 64 bits as a string.
		if sn, isStr := n.(*ast.StringNode); isStr && sn.Token.Type == token.StringType && isDigits(sn.Value) {
			d.fail(path, "integer %s is out of range", sn.Value)
			return
		}
		d.fail(path, "expected an integer, got %s", kind(n))
		return
	}
	var i int64
	switch x := in.Value.(type) {
	case int64:
		i = x
	case uint64:
		if x > math.MaxInt64 {
			d.fail(path, "integer %s is out of range", in.Token.Value)
			return
		}
		i = int64(x)
	default:
		d.fail(path, "expected an integer, got %s", kind(n))
		return
	}
	if v.CanUint() {
		if i < 0 || v.OverflowUint(uint64(i)) {
			d.fail(path, "integer %s is out of range", in.Token.Value)
			return
		}
		v.SetUint(uint64(i))
		return
	}
	if v.OverflowInt(i) {
		d.fail(path, "integer %s is out of range", in.Token.Value)
		return
	}
	v.SetInt(i)
}

func (d *decoder) decodeFloat(path string, n ast.Node, v reflect.Value) {
	var f float64
	switch x := n.(type) {
	case *ast.FloatNode:
		f = x.Value
	case *ast.IntegerNode:
		switch i := x.Value.(type) {
		case int64:
			f = float64(i)
		case uint64:
			f = float64(i)
		}
	case *ast.InfinityNode, *ast.NanNode:
		d.fail(path, "expected a finite number, got %s", n.GetToken().Value)
		return
	default:
		d.fail(path, "expected a number, got %s", kind(n))
		return
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		d.fail(path, "expected a finite number, got %s", kind(n))
		return
	}
	v.SetFloat(f)
}

func isDigits(s string) bool {
	s = strings.TrimPrefix(s, "-")
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func (d *decoder) decodeStruct(path string, n ast.Node, v reflect.Value) {
	m, isMap := n.(*ast.MappingNode)
	if !isMap {
		d.fail(path, "expected a mapping, got %s", kind(n))
		return
	}
	fields := d.structFields(v.Type())
	for _, e := range d.entries(path, m) {
		p := join(path, e.key)
		d.record(p, e.keyAt)
		idx, known := fields[e.key]
		if !known {
			d.fail(p, "%s", unknownField(e.key, fields))
			continue
		}
		d.decode(p, e.value, fieldByIndex(v, idx))
	}
}

// fieldByIndex is v.FieldByIndex that allocates nil embedded pointers.
func fieldByIndex(v reflect.Value, idx []int) reflect.Value {
	for i, x := range idx {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v
}

// unknownField says a key is not in the schema, suggesting the closest field.
// (It does not list the valid fields: docs/config.md and the schema do.)
func unknownField(key string, fields map[string][]int) string {
	return "unknown field " + quoteShort(key) + suggest(key, sortedKeys(fields))
}

// structFields maps YAML names to field indexes: the yaml tag's name, or the
// lowercased Go name; "-" and unexported fields are skipped; embedded structs
// without a name (or tagged ",inline") contribute their own fields.
func (d *decoder) structFields(t reflect.Type) map[string][]int {
	if f, ok := d.fields[t]; ok {
		return f
	}
	out := map[string][]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if (f.Anonymous && name == "" || strings.Contains(opts, "inline")) && ft.Kind() == reflect.Struct {
			for k, idx := range d.structFields(ft) {
				if _, dup := out[k]; !dup {
					out[k] = append([]int{i}, idx...)
				}
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = []int{i}
	}
	d.fields[t] = out
	return out
}

func (d *decoder) decodeMap(path string, n ast.Node, v reflect.Value) {
	m, isMap := n.(*ast.MappingNode)
	if !isMap {
		d.fail(path, "expected a mapping, got %s", kind(n))
		return
	}
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.fail(path, "cannot decode into Go type %s", t)
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(t))
	}
	for _, e := range d.entries(path, m) {
		p := join(path, e.key)
		d.record(p, e.keyAt)
		elem := reflect.New(t.Elem()).Elem()
		d.decode(p, e.value, elem)
		// "web:" with nothing under it is an empty service, not a missing
		// one: keep it so that validation says what it lacks.
		if elem.Kind() == reflect.Pointer && elem.IsNil() && t.Elem().Elem().Kind() == reflect.Struct {
			elem.Set(reflect.New(t.Elem().Elem()))
		}
		v.SetMapIndex(reflect.ValueOf(e.key).Convert(t.Key()), elem)
	}
}

func (d *decoder) decodeSlice(path string, n ast.Node, v reflect.Value) {
	s, isSeq := n.(*ast.SequenceNode)
	if !isSeq {
		d.fail(path, "expected a list, got %s", kind(n))
		return
	}
	out := reflect.MakeSlice(v.Type(), 0, len(s.Values))
	for i, el := range s.Values {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.record(p, el)
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(p, el, elem)
		out = reflect.Append(out, elem)
	}
	v.Set(out)
}

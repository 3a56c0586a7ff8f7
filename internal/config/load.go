package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

const (
	// maxFileSize bounds the file Parse accepts. A medic.yaml is a few KiB;
	// the YAML parser is quadratic on some inputs, so a huge file is refused
	// rather than parsed for minutes.
	maxFileSize = 1 << 20
	// maxNesting bounds flow-collection nesting ([[[…]]]) for the same reason.
	maxNesting = 100
)

// Load reads and parses the config file at path (see Parse). An error reading
// the file is returned wrapped; every problem in its content is an Errors.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data strictly, applies defaults, and validates the result.
// path names the file in error messages, is recorded in Config.Path, and is
// the base of the relative paths in the config (data_dir, api.tokens_file,
// services.*.dir).
//
// On any problem Parse returns a nil Config and Errors holding every problem
// found, sorted by position, each as "file:line:col: field.path: message":
// YAML syntax errors, unknown keys, values of the wrong type, and invalid
// values. Parse never panics: a failure inside the YAML parser is reported as
// an Error at 1:1.
func Parse(path string, data []byte) (cfg *Config, err error) {
	defer func() {
		if r := recover(); r != nil {
			cfg, err = nil, Errors{{File: path, Line: 1, Col: 1,
				Msg: fmt.Sprintf("internal error while loading the config (please report it): %v", r)}}
		}
	}()
	src := newSource(path)
	body, perr := parseYAML(path, data)
	if perr != nil {
		return nil, Errors{perr}
	}
	c := &Config{}
	d := newDecoder(src, body)
	src.pos[""] = posOf(body)
	d.decode("", body, reflect.ValueOf(c).Elem())
	c.Path = path
	c.src = src
	c.SetDefaults()
	errs := append(d.errs, c.validate()...)
	if len(errs) > 0 {
		return nil, sortErrors(errs)
	}
	return c, nil
}

// parseYAML returns the body of the single document in data (nil when the
// file is empty or holds only comments).
func parseYAML(path string, data []byte) (body ast.Node, _ *Error) {
	if len(data) > maxFileSize {
		return nil, &Error{File: path, Line: 1, Col: 1,
			Msg: fmt.Sprintf("file is %d bytes; a config file may not exceed %d", len(data), maxFileSize)}
	}
	if p, deep := tooDeep(data); deep {
		return nil, &Error{File: path, Line: p.line, Col: p.col,
			Msg: fmt.Sprintf("lists and mappings nested more than %d levels deep", maxNesting)}
	}
	f, err := parseBytes(data)
	if err != nil {
		e := &Error{File: path, Line: 1, Col: 1, Msg: err.Error()}
		var ye yaml.Error
		if errors.As(err, &ye) {
			e.Msg = "YAML syntax: " + ye.GetMessage()
			if tk := ye.GetToken(); tk != nil && tk.Position != nil && tk.Position.Line > 0 {
				e.Line, e.Col = tk.Position.Line, max(tk.Position.Column, 1)
			}
		}
		return nil, e
	}
	for _, doc := range f.Docs {
		if doc == nil || isNull(doc.Body) {
			continue
		}
		if body != nil {
			p := posOf(doc.Body)
			return nil, &Error{File: path, Line: p.line, Col: p.col,
				Msg: "a second YAML document; a config file holds exactly one"}
		}
		body = doc.Body
	}
	return body, nil
}

// parseBytes runs the YAML parser, turning a panic inside it into an error.
func parseBytes(data []byte) (f *ast.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fmt.Errorf("YAML parser failed on this input: %v", r)
		}
	}()
	return parser.ParseBytes(data, 0)
}

// tooDeep reports where flow collections nest deeper than maxNesting. It
// skips quoted text and comments; it need not be exact, only a guard.
func tooDeep(data []byte) (position, bool) {
	depth, line, col := 0, 1, 0
	var quote byte
	comment, escaped := false, false
	for i, b := range data {
		col++
		switch {
		case b == '\n':
			// Quotes end at the line too: a stray apostrophe must not
			// hide the rest of the file from the guard.
			line, col, comment, escaped, quote = line+1, 0, false, false, 0
		case comment:
		case escaped:
			escaped = false
		case quote != 0:
			escaped = b == '\\' && quote == '"'
			if b == quote {
				quote = 0
			}
		case b == '#' && (i == 0 || data[i-1] == ' ' || data[i-1] == '\t'):
			comment = true
		case (b == '\'' || b == '"') && (i == 0 || !isWordByte(data[i-1])):
			quote = b
		case b == '[' || b == '{':
			if depth++; depth > maxNesting {
				return position{line, col}, true
			}
		case b == ']' || b == '}':
			depth = max(depth-1, 0)
		}
	}
	return position{}, false
}

// isWordByte tells an apostrophe inside a word (don't) from a quote.
func isWordByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b >= 0x80
}

package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"syscall"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Load reads and parses the config file at path (see Parse). An error reading
// the file is returned wrapped; every problem in its content is an Errors.
// Only a regular file (or a symlink to one) is read, and at most maxFileSize
// bytes of it: /dev/zero, a FIFO or a directory is refused at once instead of
// read without end or blocked on.
func Load(path string) (*Config, error) {
	data, err := readConfig(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// ErrNotRegular reports a config path that names a directory, a device, a
// FIFO or a socket.
var ErrNotRegular = errors.New("config: not a regular file")

func readConfig(path string) ([]byte, error) {
	// Stat first: opening a FIFO blocks until a writer comes. O_NONBLOCK
	// covers a file swapped for one between the two calls.
	if err := regular(path, os.Stat); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := regular(path, func(string) (os.FileInfo, error) { return f.Stat() }); err != nil {
		return nil, err
	}
	// One byte more than the limit, so that Parse can say the file is too large.
	return io.ReadAll(io.LimitReader(f, maxFileSize+1))
}

func regular(path string, stat func(string) (os.FileInfo, error)) error {
	fi, err := stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, fileKind(fi.Mode()))
	}
	return nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.String()
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
			Msg: fmt.Sprintf("file is larger than %d bytes; a config file may not exceed it", maxFileSize)}
	}
	if b := scanBounds(data); b != nil {
		return nil, &Error{File: path, Line: b.at.line, Col: b.at.col, Msg: b.msg}
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
	if n, at := expandedSize(body); n > maxSteps {
		p := posOf(at)
		return nil, &Error{File: path, Line: p.line, Col: p.col,
			Msg: fmt.Sprintf("document too large: more than %d values once aliases and merge keys are expanded", maxSteps)}
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

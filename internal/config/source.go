package config

import "strings"

// source remembers where each field of a parsed Config was written, so that
// semantic validation and Lint can point at the offending line. A Config built
// in code has no source; its errors carry the field path only.
type source struct {
	file string
	// pos maps a field path to the position of its key (or, for list
	// elements, of the element).
	pos map[string]position
	// bad holds the paths whose value could not be decoded. Their Go value is
	// left at its default, and semantic checks on them are not reported:
	// the decode error already says what is wrong.
	bad map[string]bool
}

type position struct{ line, col int }

func newSource(file string) *source {
	return &source{file: file, pos: map[string]position{}, bad: map[string]bool{}}
}

// set reports whether the file sets path (with a value that decoded).
func (s *source) set(path string) bool {
	if s == nil {
		return false
	}
	_, ok := s.pos[path]
	return ok && !s.bad[path]
}

// at returns the position of path, or of its nearest ancestor written in the
// file when the key itself is missing. It is 1:1 for the document root.
func (s *source) at(path string) position {
	if s == nil {
		return position{}
	}
	for {
		if p, ok := s.pos[path]; ok {
			return p
		}
		if path == "" {
			return position{1, 1}
		}
		path = parent(path)
	}
}

// underBad reports whether path is, or lies under, a path that failed to
// decode.
func (s *source) underBad(path string) bool {
	if s == nil || len(s.bad) == 0 {
		return false
	}
	for ; path != ""; path = parent(path) {
		if s.bad[path] {
			return true
		}
	}
	return false
}

// errorAt builds the Error for path.
func (s *source) errorAt(path, msg string) *Error {
	if s == nil {
		return &Error{Field: path, Msg: msg}
	}
	p := s.at(path)
	return &Error{File: s.file, Line: p.line, Col: p.col, Field: path, Msg: msg}
}

// parent strips the last ".key" or "[i]" from path.
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// join appends a key to a path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

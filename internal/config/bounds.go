package config

import (
	"bytes"
	"fmt"

	"github.com/goccy/go-yaml/ast"
)

// The YAML parser and the decoder are not linear in every input: goccy/go-yaml
// takes seconds on a mapping of 10 000 keys or a flow list of 100 000 items
// (quadratic), minutes and gigabytes on "- - - …" nested 300 000 deep, and
// merge keys nested 9 deep (<<: [*a, *a, …]) expand to 9^9 values (issue 12:
// an 833-byte config wedged the agent). So the bytes are scanned first, with
// the limits below, before the parser builds anything; then the node tree is
// measured with aliases and merges expanded, before the decoder walks it. Any
// input within maxFileSize is answered in well under a second.
//
// Each limit is far above what a hand-written config needs (the examples use
// under 300 values, 8 levels of nesting and lines under 200 bytes).
const (
	// maxFileSize bounds the file Parse accepts (1 MiB). Load reads at most
	// this many bytes (plus one, to tell that the file is larger).
	maxFileSize = 1 << 20
	// maxNesting bounds how deep lists and mappings nest, block or flow (100).
	maxNesting = 100
	// maxValues bounds the lists items, mapping entries and lines written in
	// the file, before aliases are expanded (5 000).
	maxValues = 5_000
	// maxPerCollection bounds the entries of one list or mapping (1 000).
	maxPerCollection = 1_000
	// maxLines bounds the lines of the file, blank and comment lines
	// included (50 000).
	maxLines = 50_000
	// maxScalarSize bounds one line, and the text of one block scalar (| or
	// >), to 64 KiB: a longer value is not a setting, and the parser's cost
	// and memory grow with it.
	maxScalarSize = 64 << 10
	// maxSteps bounds the values of the document with every alias and merge
	// key expanded (200 000): a "billion laughs" document is refused before
	// the decoder expands anything.
	maxSteps = 200_000
)

// boundsError is a limit the raw bytes exceed, with where.
type boundsError struct {
	at  position
	msg string
}

// frame is one open block collection: the column its entries start at, how
// many it has so far, and where it began (for the error message).
type frame struct {
	col, n int
}

// scanBounds checks data against maxNesting, maxValues, maxPerCollection and
// maxScalarSize without parsing it: one pass, memory proportional to the
// nesting. It follows YAML's layout closely enough to be a guard, not a
// parser: block collections are tracked by indentation (with "- - x" and
// "- key: v" opening one level per indicator), flow collections by brackets
// outside quotes and comments, and block scalars (| and >) are skipped.
func scanBounds(data []byte) *boundsError {
	var (
		stack       []frame // open block collections, by increasing column
		flow        []int   // entries of the open flow collections
		values      int
		scalarAt    = -1 // inside a block scalar: the column its parent is at; -1 otherwise
		scalarBytes int  // the length of that block scalar so far
	)
	fail := func(line, col int, format string, args ...any) *boundsError {
		return &boundsError{position{line, max(col, 1)}, fmt.Sprintf(format, args...)}
	}
	line := 0
	for len(data) > 0 {
		if line++; line > maxLines {
			return fail(line, 1, "more than %d lines; a config file holds far fewer", maxLines)
		}
		var text []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			text, data = data[:i], data[i+1:]
		} else {
			text, data = data, nil
		}
		if len(text) > maxScalarSize {
			return fail(line, 1, "line is %d bytes; a line may not exceed %d", len(text), maxScalarSize)
		}
		indent := 0
		for indent < len(text) && text[indent] == ' ' {
			indent++
		}
		rest := bytes.TrimRight(text[indent:], " \t\r")
		if len(rest) == 0 || rest[0] == '#' && len(flow) == 0 {
			continue // blank lines and comments open nothing (nor end a block scalar)
		}
		if scalarAt >= 0 {
			if indent > scalarAt {
				// The block scalar's text: bounded as one value.
				if scalarBytes += len(text) + 1; scalarBytes > maxScalarSize {
					return fail(line, 1, "a block scalar longer than %d bytes; a value may not exceed it", maxScalarSize)
				}
				continue
			}
			scalarAt = -1
		}
		if values++; values > maxValues {
			return fail(line, indent+1, "more than %d values and lines; a config file holds far fewer", maxValues)
		}
		col := indent
		if len(flow) == 0 {
			// Block context: each "- " or "? " indicator opens a level, then
			// the key or scalar after it is an entry at its own column.
			for {
				for len(stack) > 0 && stack[len(stack)-1].col > col {
					stack = stack[:len(stack)-1]
				}
				if len(stack) > 0 && stack[len(stack)-1].col == col {
					top := &stack[len(stack)-1]
					if top.n++; top.n > maxPerCollection {
						return fail(line, col+1, "more than %d entries in one list or mapping", maxPerCollection)
					}
				} else {
					stack = append(stack, frame{col: col, n: 1})
					if len(stack) > maxNesting {
						return fail(line, col+1, "lists and mappings nested more than %d levels deep", maxNesting)
					}
				}
				next := col
				if isIndicator(text[col:]) {
					next = col + 1
				} else if v := valueAfterKey(text[col:]); v > 0 && isIndicator(text[col+v:]) {
					// "k: - - x" is not valid YAML, but the parser nests
					// it before it says so.
					next = col + v
				}
				for next < len(text) && text[next] == ' ' {
					next++
				}
				if next == col || next >= len(text) {
					break
				}
				col = next
			}
			if isBlockScalarHeader(rest) {
				scalarAt, scalarBytes = col, 0
			}
		}
		if e := scanFlow(text, col, line, &flow, &values, len(stack)); e != nil {
			return e
		}
	}
	return nil
}

// scanFlow follows the flow collections ([…] {…}) on one line from col,
// skipping quoted text and comments, and counts their entries against the
// limits. Quotes end at the line: a stray apostrophe must not hide the rest
// of the file from the guard.
func scanFlow(text []byte, col, line int, flow *[]int, values *int, blockDepth int) *boundsError {
	var quote byte
	escaped := false
	for i := col; i < len(text); i++ {
		b := text[i]
		switch {
		case escaped:
			escaped = false
		case quote != 0:
			escaped = b == '\\' && quote == '"'
			if b == quote {
				quote = 0
			}
		case b == '#' && (i == 0 || text[i-1] == ' ' || text[i-1] == '\t'):
			return nil
		case (b == '\'' || b == '"') && (i == 0 || !isWordByte(text[i-1])):
			quote = b
		case b == '[' || b == '{':
			*flow = append(*flow, 1)
			if blockDepth+len(*flow) > maxNesting {
				return &boundsError{position{line, i + 1}, fmt.Sprintf("lists and mappings nested more than %d levels deep", maxNesting)}
			}
		case b == ']' || b == '}':
			if len(*flow) > 0 {
				*flow = (*flow)[:len(*flow)-1]
			}
		case b == ',' && len(*flow) > 0:
			top := &(*flow)[len(*flow)-1]
			if *top++; *top > maxPerCollection {
				return &boundsError{position{line, i + 1}, fmt.Sprintf("more than %d entries in one list or mapping", maxPerCollection)}
			}
			if *values++; *values > maxValues {
				return &boundsError{position{line, i + 1}, fmt.Sprintf("more than %d values and lines; a config file holds far fewer", maxValues)}
			}
		}
	}
	return nil
}

// isIndicator reports whether r starts with a block indicator "- " or "? "
// (or is one alone).
func isIndicator(r []byte) bool {
	return len(r) > 0 && (r[0] == '-' || r[0] == '?') && (len(r) == 1 || r[1] == ' ')
}

// valueAfterKey returns the offset of the value after a plain or quoted key
// and ": " at the start of r, or 0 when r does not start with one.
func valueAfterKey(r []byte) int {
	start := 0
	if len(r) > 0 && (r[0] == '\'' || r[0] == '"') {
		end := bytes.IndexByte(r[1:], r[0])
		if end < 0 {
			return 0
		}
		start = end + 2
	} else if len(r) > 0 && (r[0] == '[' || r[0] == '{' || r[0] == '#') {
		return 0
	}
	i := bytes.Index(r[start:], []byte(": "))
	if i < 0 {
		return 0
	}
	return start + i + 2
}

// isBlockScalarHeader reports whether a line ends with a block scalar's
// header ("key: |", "- >-", "run: |2+"), comments stripped.
func isBlockScalarHeader(rest []byte) bool {
	if i := bytes.Index(rest, []byte(" #")); i >= 0 {
		rest = bytes.TrimRight(rest[:i], " \t")
	}
	rest = bytes.TrimRight(rest, "+-0123456789")
	n := len(rest)
	if n == 0 || rest[n-1] != '|' && rest[n-1] != '>' {
		return false
	}
	return n == 1 || rest[n-2] == ' ' || rest[n-2] == '\t'
}

// isWordByte tells an apostrophe inside a word (don't) from a quote.
func isWordByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b >= 0x80
}

// expandedSize measures the document as the decoder will see it: every
// alias counted as the size of its anchor's value, merge keys included. It
// stops counting past maxSteps and returns the alias where the limit was
// crossed (nil when within). The tree itself is small (the bytes passed
// scanBounds); only its expansion can be huge, and sizes are memoized per
// anchor, so this is linear in the tree.
func expandedSize(body ast.Node) (int, ast.Node) {
	m := &measure{anchors: map[string]int{}}
	n := m.size(body)
	return n, m.over
}

type measure struct {
	anchors map[string]int // name → expanded size of the latest anchor so far
	alias   ast.Node       // the last alias measured
	over    ast.Node       // where the total first exceeded maxSteps: at or after this alias
}

func (m *measure) size(n ast.Node) int {
	if n == nil {
		return 0
	}
	add := func(a, b int) int {
		if a+b > maxSteps && m.over == nil {
			m.over = cmpOr(m.alias, n)
		}
		return min(a+b, maxSteps+1)
	}
	switch x := n.(type) {
	case *ast.MappingNode:
		total := 1
		for _, v := range x.Values {
			total = add(total, m.size(v))
		}
		return total
	case *ast.MappingValueNode:
		return add(m.size(x.Key), m.size(x.Value))
	case *ast.SequenceNode:
		total := 1
		for _, v := range x.Values {
			total = add(total, m.size(v))
		}
		return total
	case *ast.AnchorNode:
		s := m.size(x.Value)
		if x.Name != nil && x.Name.GetToken() != nil {
			m.anchors[x.Name.GetToken().Value] = s
		}
		return s
	case *ast.AliasNode:
		m.alias = x
		s := max(m.anchors[aliasName(x)], 1) // an unknown alias is the decoder's error
		if s > maxSteps && m.over == nil {
			m.over = x
		}
		return s
	case *ast.TagNode:
		return m.size(x.Value)
	case *ast.MappingKeyNode:
		return m.size(x.Value)
	case *ast.DocumentNode:
		return m.size(x.Body)
	default:
		return 1
	}
}

func cmpOr(a, b ast.Node) ast.Node {
	if a != nil {
		return a
	}
	return b
}

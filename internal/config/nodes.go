package config

import (
	"strconv"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// resolve looks through tags, anchors and aliases to the node that holds the
// value. The returned release must be called once the value is decoded (it
// ends the cycle guard of the aliases followed); ok is false after an error.
func (d *decoder) resolve(path string, n ast.Node) (_ ast.Node, release func(), ok bool) {
	var followed []*ast.AnchorNode
	release = func() {
		for _, a := range followed {
			delete(d.active, a)
		}
	}
	for {
		switch x := n.(type) {
		case *ast.TagNode:
			tag := x.Start.Value
			switch tag {
			case "!!str":
				if s, isScalar := scalarText(x.Value); isScalar {
					return &ast.StringNode{BaseNode: &ast.BaseNode{}, Token: x.Value.GetToken(), Value: s}, release, true
				}
			case "!!int", "!!float", "!!bool", "!!null", "!!map", "!!seq":
			default:
				d.fail(path, "unsupported YAML tag %s", tag)
				return nil, release, false
			}
			n = x.Value
		case *ast.AnchorNode:
			if !d.active[x] {
				d.active[x] = true
				followed = append(followed, x)
			}
			n = x.Value
		case *ast.AliasNode:
			a := d.anchorFor(x)
			if a == nil {
				d.fail(path, "alias *%s refers to no anchor defined before it", aliasName(x))
				return nil, release, false
			}
			if d.active[a] {
				d.fail(path, "alias *%s refers to a node that contains it", aliasName(x))
				return nil, release, false
			}
			d.active[a] = true
			followed = append(followed, a)
			n = a.Value
		case *ast.MappingKeyNode: // the "? key" form
			n = x.Value
		default:
			return n, release, true
		}
	}
}

// anchorFor finds the anchor an alias names: the last one with that name
// defined before the alias.
func (d *decoder) anchorFor(al *ast.AliasNode) *ast.AnchorNode {
	at := posOf(al)
	var found *ast.AnchorNode
	for _, a := range d.anchors[aliasName(al)] {
		p := posOf(a)
		if p.line < at.line || p.line == at.line && p.col < at.col {
			found = a
		}
	}
	return found
}

func aliasName(al *ast.AliasNode) string {
	if al.Value == nil || al.Value.GetToken() == nil {
		return ""
	}
	return al.Value.GetToken().Value
}

// scalarText is the text of a scalar node: the value of a string, the source
// text of a number or boolean. ok is false for collections and null.
func scalarText(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.LiteralNode:
		if x.Value == nil {
			return "", true
		}
		return x.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return n.GetToken().Value, true
	case *ast.MappingNode, *ast.MappingValueNode:
		return flowPlain(n)
	}
	return "", false
}

// flowPlain undoes a misreading of goccy/go-yaml: inside a flow sequence it
// reads a plain scalar holding a colon not followed by a space
// (`[127.0.0.1:2379]`) as a one-pair mapping {127.0.0.1: 2379}, where YAML
// 1.2 reads the string "127.0.0.1:2379". A pair whose value starts right
// after the colon, on the same line, with both sides plain scalars, is
// rejoined; `[a: b]` (a space after the colon) stays a mapping.
func flowPlain(n ast.Node) (string, bool) {
	mv, ok := n.(*ast.MappingValueNode)
	if m, isMap := n.(*ast.MappingNode); isMap {
		if len(m.Values) != 1 {
			return "", false
		}
		mv, ok = m.Values[0], true
	}
	if !ok || mv == nil || mv.Key == nil || mv.Value == nil || mv.GetToken() == nil {
		return "", false
	}
	key, val, colon := mv.Key.GetToken(), mv.Value.GetToken(), mv.GetToken().Position
	if key == nil || val == nil || !plainScalar(mv.Key) || !plainScalar(mv.Value) {
		return "", false
	}
	kp, vp := key.Position, val.Position
	if kp.Line != colon.Line || vp.Line != colon.Line || vp.Column != colon.Column+1 {
		return "", false
	}
	return key.Value + ":" + val.Value, true
}

// plainScalar reports whether n is an unquoted scalar.
func plainScalar(n ast.Node) bool {
	switch n.(type) {
	case *ast.StringNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
	default:
		return false
	}
	t := n.GetToken()
	return t != nil && t.Type != token.SingleQuoteType && t.Type != token.DoubleQuoteType
}

func isNull(n ast.Node) bool {
	switch n.(type) {
	case nil, *ast.NullNode, *ast.CommentGroupNode, *ast.CommentNode:
		return true
	}
	return false
}

// kind names a node's YAML type for messages.
func kind(n ast.Node) string {
	switch x := n.(type) {
	case *ast.MappingNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		s, _ := scalarText(n)
		return "string " + quoteShort(s)
	case *ast.IntegerNode:
		return "integer " + x.Token.Value
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "number " + n.GetToken().Value
	case *ast.BoolNode:
		return "boolean " + x.Token.Value
	case nil, *ast.NullNode:
		return "null"
	}
	return "a " + n.Type().String()
}

func quoteShort(s string) string {
	if r := []rune(s); len(r) > 40 {
		s = string(r[:40]) + "…"
	}
	return strconv.Quote(s)
}

// entry is one key: value of a mapping, merge keys expanded.
type entry struct {
	key   string
	keyAt ast.Node
	value ast.Node
}

// entries lists a mapping's keys in document order. Keys merged with "<<"
// come after the explicit keys and never override them; among merged
// mappings the first one listed wins, as the YAML merge spec says.
func (d *decoder) entries(path string, m *ast.MappingNode) []entry {
	var own, merged []entry
	for _, mv := range m.Values {
		if mv == nil || mv.Key == nil {
			continue
		}
		if mv.Key.IsMergeKey() {
			merged = append(merged, d.mergeEntries(path, mv.Value)...)
			continue
		}
		k, release, ok := d.resolve(path, mv.Key)
		if !ok {
			release()
			continue
		}
		text, isScalar := scalarText(k)
		if _, null := k.(*ast.NullNode); null {
			text, isScalar = k.GetToken().Value, true
		}
		release()
		if !isScalar {
			d.src.pos[join(path, "?")] = posOf(mv.Key)
			d.fail(join(path, "?"), "a key must be a string, got %s", kind(k))
			continue
		}
		own = append(own, entry{key: text, keyAt: mv.Key, value: mv.Value})
	}
	seen := make(map[string]bool, len(own))
	for _, e := range own {
		seen[e.key] = true
	}
	for _, e := range merged {
		if !seen[e.key] {
			seen[e.key] = true
			own = append(own, e)
		}
	}
	return own
}

func (d *decoder) mergeEntries(path string, n ast.Node) []entry {
	n, release, ok := d.resolve(path, n)
	defer release()
	if !ok {
		return nil
	}
	switch x := n.(type) {
	case *ast.MappingNode:
		return d.entries(path, x)
	case *ast.SequenceNode:
		var out []entry
		for _, el := range x.Values {
			el, rel, ok := d.resolve(path, el)
			if m, isMap := el.(*ast.MappingNode); ok && isMap {
				out = append(out, d.entries(path, m)...)
			} else if ok {
				d.fail(path, "merge key << takes a mapping or a list of mappings, got a list holding %s", kind(el))
			}
			rel()
		}
		return out
	}
	d.fail(path, "merge key << takes a mapping or a list of mappings, got %s", kind(n))
	return nil
}

// editDistance is the optimal-string-alignment distance (Levenshtein plus
// transpositions: "paht" is one edit from "path"), for "did you mean" hints.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

package safetext

import "testing"

func TestEscapes(t *testing.T) {
	for _, c := range []struct{ in, line, block string }{
		{"GET /v1/status", "GET /v1/status", "GET /v1/status"},
		{"GET /\x1b[2J\x1b[31mpwned", `GET /\x1b[2J\x1b[31mpwned`, `GET /\x1b[2J\x1b[31mpwned`},
		{"a\nb\tc\r", `a\x0ab\x09c\x0d`, "a\nb\tc\\x0d"},
		{"é ok \u202eevil", `é ok \u202eevil`, `é ok \u202eevil`},
		{"\xff\x9b", `\xff\x9b`, `\xff\x9b`},
		{"\u009b31m", `\x9b31m`, `\x9b31m`},
	} {
		if got := Line(c.in); got != c.line {
			t.Errorf("Line(%q) = %q; want %q", c.in, got, c.line)
		}
		if got := Block(c.in); got != c.block {
			t.Errorf("Block(%q) = %q; want %q", c.in, got, c.block)
		}
	}
}

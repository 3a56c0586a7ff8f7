// Package safetext makes untrusted text safe to print on a terminal or a
// page: control characters, ANSI escape sequences, bidirectional overrides
// and invalid UTF-8 from request paths, process output or event reasons are
// shown as escapes (\x1b, \u202e) instead of acting on the reader's screen.
package safetext

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Line escapes every control character, newlines and tabs included: for one
// field on one line (a table cell, a log attribute).
func Line(s string) string { return escape(s, false) }

// Block keeps newlines and tabs and escapes every other control character:
// for multi-line text (a report, stderr shown as evidence).
func Block(s string) string { return escape(s, true) }

func escape(s string, keepLines bool) string {
	if clean(s, keepLines) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keepLines && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case unsafe(r):
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func clean(s string, keepLines bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 && !(keepLines && (c == '\n' || c == '\t')) || c == 0x7f || c >= 0x80 {
			// Non-ASCII needs the careful path (C1 controls, bidi, invalid UTF-8).
			return false
		}
	}
	return true
}

// unsafe: C0 and C1 controls, DEL, and the bidirectional controls that
// reorder what follows them ("Trojan Source").
func unsafe(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true
	}
	return false
}

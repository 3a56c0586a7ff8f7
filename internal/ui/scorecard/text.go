package scorecard

import (
	"fmt"
	"io"
	"strings"
)

// WriteText writes the card for people: one line per question with its
// answer, then each subject's answer, evidence and what to change, aligned.
func (c Card) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Resilience scorecard: %d yes, %d no, %d unknown", c.Yes, c.No, c.Unknown)
	if c.Passed {
		b.WriteString(" — required items pass\n")
	} else {
		fmt.Fprintf(&b, " — %d required item(s) answer no\n", len(c.Failed()))
	}
	width := 0
	for _, it := range c.Items {
		for _, s := range it.Subjects {
			width = max(width, len(s.Name))
		}
	}
	for _, it := range c.Items {
		req := ""
		if it.Required {
			req = "  [required]"
		}
		fmt.Fprintf(&b, "\n%d. %-7s %s%s\n", it.N, strings.ToUpper(string(it.Answer)), it.Question, req)
		for _, s := range it.Subjects {
			pad := strings.Repeat(" ", 6+width+2+8)
			first := true
			line := func(text string) {
				if first {
					fmt.Fprintf(&b, "      %-*s  %-7s %s\n", width, s.Name, s.Answer, text)
					first = false
					return
				}
				fmt.Fprintf(&b, "%s%s\n", pad, text)
			}
			for _, e := range s.Evidence {
				line(e)
			}
			for _, f := range s.Fix {
				line("→ " + f)
			}
			if first {
				line("")
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

package supervise

import (
	"strings"
	"testing"
)

func TestTailKeepsLastBytes(t *testing.T) {
	tl := newTail(8)
	tl.Write([]byte("hello "))
	tl.Write([]byte("world!"))
	if got := tl.String(); len(got) != 8 || !strings.HasSuffix(got, "world!") {
		t.Fatalf("tail = %q, want the last 8 bytes", got)
	}
}

func TestParseNotify(t *testing.T) {
	m := parseNotify("READY=1\nSTATUS=serving 3 clients\nWATCHDOG=1")
	if m["READY"] != "1" || m["WATCHDOG"] != "1" || m["STATUS"] != "serving 3 clients" {
		t.Fatalf("parsed %v", m)
	}
}

package supervise

import "testing"

func TestParseNotify(t *testing.T) {
	m := parseNotify("READY=1\nSTATUS=serving 3 clients\nWATCHDOG=1")
	if m["READY"] != "1" || m["WATCHDOG"] != "1" || m["STATUS"] != "serving 3 clients" {
		t.Fatalf("parsed %v", m)
	}
}

package supervise

import "testing"

func TestExpandOnlyBracedNames(t *testing.T) {
	vars := map[string]string{"PORT": "9100", "INSTANCE": "2"}
	lookup := func(k string) string { return vars[k] }
	for in, want := range map[string]string{
		"127.0.0.1:${PORT}":            "127.0.0.1:9100",
		"sleep 1 & echo $! > pid":      "sleep 1 & echo $! > pid",
		"$PORT ${INSTANCE}${INSTANCE}": "$PORT 22",
		"${1bad} ${} ${PORT":           "${1bad} ${} ${PORT",
		"${MISSING}x":                  "x",
	} {
		if got := expand(in, lookup); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

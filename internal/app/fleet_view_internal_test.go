package app

import "testing"

func TestFleetAPI(t *testing.T) {
	for _, tc := range []struct{ listen, address, want string }{
		{"0.0.0.0:7070", "10.0.0.11", "http://10.0.0.11:7070"},
		{":7070", "10.0.0.11", "http://10.0.0.11:7070"},
		{"[::]:7070", "web-1.internal", "http://web-1.internal:7070"},
		{"10.0.0.11:7070", "10.0.0.11", "http://10.0.0.11:7070"},
		{"127.0.0.1:7070", "10.0.0.11", ""},
		{"localhost:7070", "10.0.0.11", ""},
		{"127.0.0.1:7070", "127.0.0.2", "http://127.0.0.1:7070"},
		{"0.0.0.0:7070", "", ""},
		{"garbage", "10.0.0.11", ""},
	} {
		if got := fleetAPI(tc.listen, tc.address); got != tc.want {
			t.Errorf("fleetAPI(%q, %q) = %q, want %q", tc.listen, tc.address, got, tc.want)
		}
	}
}

package ports_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/medic-dev/medic/internal/ports"
)

func TestFreeBelowEphemeralAndNeverTwice(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		base, err := ports.Free(3)
		if err != nil {
			t.Fatal(err)
		}
		if base < 10000 || base+3 > 32768 {
			t.Fatalf("base %d: outside [10000, ephemeral range)", base)
		}
		for i := range 3 {
			if seen[base+i] {
				t.Fatalf("port %d handed out twice", base+i)
			}
			seen[base+i] = true
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				t.Fatalf("port %d not free: %v", base+i, err)
			}
			l.Close()
		}
	}
}

package bypass

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
)

func TestParseAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000000000000000000001000000:0050": "[::1]:80",
		"0000000000000000FFFF00000100007F:0016": "127.0.0.1:22",
	} {
		got, err := parseAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("%s: %v %v, want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "zz:1", "0100007F", "0100007F:zzzzz", "01:0050"} {
		if _, err := parseAddr(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestOutboundOwnProcess: a real outbound connection of this process is
// found; the inbound end of a connection to our own listener is not.
func TestOutboundOwnProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux /proc")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	in := <-accepted
	defer in.Close()
	conns, err := Outbound("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	target := netip.MustParseAddrPort(ln.Addr().String())
	var out, inbound int
	for _, cn := range conns {
		if cn.Remote == target {
			out++
		}
		if cn.Local == target {
			inbound++
		}
	}
	if out != 1 || inbound != 0 {
		t.Fatalf("connections %v: %d outbound to %v (want 1), %d inbound listed (want 0)", conns, out, target, inbound)
	}
	if _, err := Outbound("/proc", 1<<30); err == nil {
		t.Fatal("a pid that does not exist: no error")
	}
}

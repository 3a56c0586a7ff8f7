package e2e_test

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestDemoFleet runs `medic demo --fleet`: three agents in one fleet with a
// real 3-member etcd on loopback, one host killed under load; the demo must
// end on its own, restore 6 ready instances on the two survivors and print
// the recovery.
func TestDemoFleet(t *testing.T) {
	if _, err := exec.LookPath("etcd"); err != nil {
		if os.Getenv("MEDIC_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("etcd not found (install the Debian package etcd-server)")
		}
		t.Skip("etcd not found (install the Debian package etcd-server)")
	}
	cmd := exec.Command(medicBin, "demo", "--fleet")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("medic demo --fleet: %v\n%s", err, out.String())
		}
	case <-time.After(4 * time.Minute):
		cmd.Process.Signal(os.Interrupt)
		<-done
		t.Fatalf("medic demo --fleet did not end within 4m:\n%s", out.String())
	}
	m := regexp.MustCompile(`suspect after ([0-9.]+)s, lost after ([0-9.]+)s, capacity \(6 ready\) restored after ([0-9.]+)s; GETs through h1 and h2: (\d+), failed (\d+)`).
		FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no recovery line:\n%s", out.String())
	}
	suspect, _ := strconv.ParseFloat(m[1], 64)
	lost, _ := strconv.ParseFloat(m[2], 64)
	restored, _ := strconv.ParseFloat(m[3], 64)
	sent, _ := strconv.Atoi(m[4])
	// lease_ttl 2s, grace 2s: lost no sooner than the grace after suspect;
	// restored after lost; generous bounds for a loaded machine.
	if lost-suspect < 1.9 || restored < lost || restored > 30 || sent == 0 {
		t.Fatalf("suspect %.2fs, lost %.2fs, restored %.2fs, %d GETs:\n%s", suspect, lost, restored, sent, out.String())
	}
	t.Logf("%s", out.String())
}

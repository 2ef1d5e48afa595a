package storage

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// TestDevicesInOneTransaction: PutDevices caches many devices at once, and
// DeleteDevices removes them with the states of those it is told to
// forget only; missing names are no error, and an unnamed device is
// refused with nothing written.
func TestDevicesInOneTransaction(t *testing.T) {
	db := openT(t, filepath.Join(t.TempDir(), "p.db"), Options{})
	var devs []meshmon.Device
	for i := range 300 {
		devs = append(devs, meshmon.Device{Name: fmt.Sprintf("d%03d", i), Address: "10.0.0.1", Checks: []string{meshmon.CheckICMP}, Interval: meshmon.Duration(time.Minute)})
	}
	if err := db.PutDevices(devs); err != nil {
		t.Fatal(err)
	}
	if err := db.PutDevices(append(devs[:1:1], meshmon.Device{Address: "x"})); err == nil {
		t.Fatal("PutDevices with an unnamed device: no error")
	}
	got, err := db.Devices()
	if err != nil || len(got) != 300 {
		t.Fatalf("Devices: %d, %v", len(got), err)
	}
	for _, d := range []string{"d000", "d001"} {
		if err := db.Commit(nil, []StateUpdate{{Device: d, Check: "icmp", Value: []byte(`{"state":"down"}`)}}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for _, d := range devs[:100] {
		names = append(names, d.Name)
	}
	if err := db.DeleteDevices(append(names, "missing"), []string{"d000", "missing"}); err != nil {
		t.Fatal(err)
	}
	if got, _ = db.Devices(); len(got) != 200 || got[0].Name != "d100" {
		t.Fatalf("after deleting 100: %d devices, first %s", len(got), got[0].Name)
	}
	if s, _ := db.States("d000"); len(s) != 0 {
		t.Errorf("d000 states kept: %v", s)
	}
	if s, _ := db.States("d001"); len(s) != 1 {
		t.Errorf("d001 states (not to forget): %v", s)
	}
}

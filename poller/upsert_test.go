package poller

import (
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/storage"
)

// BenchmarkTakeOverSchedule schedules what a survivor of a three-member
// group of 30,000 devices wants after a take-over: the 10,000 devices it
// kept, unchanged, and the 5,000 it gained, as reconcile does (issue 23:
// this step took 194-431 ms at 30,000 devices, before any first poll).
//
//	go test -run '^$' -bench TakeOverSchedule -benchmem ./poller
func BenchmarkTakeOverSchedule(b *testing.B) {
	store, err := storage.Open(filepath.Join(b.TempDir(), "poller.db"), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	cfg := DefaultConfig()
	cfg.Name, cfg.Site = "p1", "lab"
	device := func(i int) *meshmon.Device {
		return &meshmon.Device{Name: fmt.Sprintf("dev%05d", i), Address: fmt.Sprintf("127.%d.%d.%d", 1+i>>16, i>>8&255, i&255),
			Checks: []string{meshmon.CheckSNMP}, Interval: meshmon.Duration(time.Minute),
			SNMP: &meshmon.SNMP{Version: "2c", Community: "public", Port: 16100}, Revision: uint64(i + 1)}
	}
	const kept, gained = 10000, 5000
	var want []*meshmon.Device
	for i := range kept + gained {
		want = append(want, device(i))
	}
	for b.Loop() {
		b.StopTimer()
		p, err := New(cfg, nil, store, nil, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		p.upsertAll(want[:kept], true, true, nil)
		moved := map[string]bool{}
		for _, d := range want[kept:] {
			moved[d.Name] = true
		}
		b.StartTimer()
		p.upsertAll(want, true, false, moved)
	}
}

// TestSameDeviceSeesEveryField: a device that differs from another in any
// setting, its own or its SNMP settings', is not the same device; one
// that differs in its revision only is. A field added to meshmon.Device
// or meshmon.SNMP without a comparison in sameDevice fails here.
func TestSameDeviceSeesEveryField(t *testing.T) {
	base := meshmon.Device{Name: "sw1", Address: "127.0.0.1", Checks: []string{meshmon.CheckSNMP},
		Interval: meshmon.Duration(time.Minute), SNMP: &meshmon.SNMP{Version: "2c", Community: "public"}}
	changed := func(v reflect.Value) {
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "x")
		case reflect.Int, reflect.Int64:
			v.SetInt(v.Int() + 1)
		case reflect.Uint64:
			v.SetUint(v.Uint() + 1)
		case reflect.Slice:
			v.Set(reflect.Append(v, reflect.ValueOf("x")))
		default:
			t.Fatalf("sameDevice's test cannot change a %s field", v.Kind())
		}
	}
	dt := reflect.TypeFor[meshmon.Device]()
	for i := range dt.NumField() {
		f := dt.Field(i)
		if f.Name == "SNMP" {
			st := reflect.TypeFor[meshmon.SNMP]()
			for j := range st.NumField() {
				d, snmp := base, *base.SNMP
				d.SNMP = &snmp
				changed(reflect.ValueOf(&snmp).Elem().Field(j))
				if sameDevice(base, d) {
					t.Errorf("a device whose SNMP %s differs is the same to sameDevice", st.Field(j).Name)
				}
			}
			d := base
			d.SNMP = nil
			if sameDevice(base, d) {
				t.Error("a device without SNMP settings is the same as one with them to sameDevice")
			}
			continue
		}
		d := base
		d.Checks = slices.Clone(base.Checks)
		changed(reflect.ValueOf(&d).Elem().Field(i))
		if got, want := sameDevice(base, d), f.Name == "Revision"; got != want {
			t.Errorf("a device whose %s differs: sameDevice says %v, want %v", f.Name, got, want)
		}
	}
	d := base
	snmp := *base.SNMP
	d.SNMP = &snmp
	if !sameDevice(base, d) {
		t.Error("equal SNMP settings in another copy are not the same to sameDevice")
	}
}

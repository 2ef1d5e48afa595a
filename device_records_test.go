package meshmon

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseDevices(t *testing.T) {
	one := `{"name":"r1","address":"10.0.0.1","checks":["snmp"],"interval":"1m","revision":7,"snmp":{"version":"2c","community":"s3cret"}}`
	devs, err := ParseDevices([]byte("  " + one + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].Name != "r1" || devs[0].Revision != 0 || devs[0].SNMP.Community != "s3cret" {
		t.Fatalf("one device: got %+v", devs)
	}
	devs, err = ParseDevices([]byte("[" + one + "," + strings.Replace(one, "r1", "r2", 1) + "]"))
	if err != nil || len(devs) != 2 || devs[1].Name != "r2" {
		t.Fatalf("a list: got %+v, %v", devs, err)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"unknown field", `{"name":"r1","adress":"x"}`, `not a device or a list of devices: json: unknown field "adress"`},
		{"not json", `r1`, "not a device or a list of devices"},
		{"invalid device", `{"name":"r1","checks":["icmp"],"interval":"1m"}`, "address"},
		{"masked", strings.Replace(one, "s3cret", Masked, 1), "device r1: snmp community is masked (********); export with 'device list --json --show-secrets'"},
		{"second invalid", "[" + one + `,{"name":"bad name"}]`, "bad name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			devs, err := ParseDevices([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, %v; want an error with %q", devs, err, tc.want)
			}
			if tc.name == "invalid device" && !errors.Is(err, ErrInvalidDevice) {
				t.Fatalf("%v does not wrap ErrInvalidDevice", err)
			}
		})
	}
}

func TestRedactedAndSummary(t *testing.T) {
	d := Device{Name: "r1", SNMP: &SNMP{Version: SNMPv3, User: "u", AuthProtocol: "SHA", AuthPassword: "authpass1", PrivProtocol: "AES", PrivPassword: "privpass1"}}
	r := d.Redacted()
	if r.SNMP.AuthPassword != Masked || r.SNMP.PrivPassword != Masked || r.SNMP.Community != "" {
		t.Fatalf("redacted: %+v", r.SNMP)
	}
	if d.SNMP.AuthPassword != "authpass1" {
		t.Fatal("Redacted changed the device it was called on")
	}
	if (Device{Name: "x"}).Redacted().SNMP != nil {
		t.Fatal("a device without SNMP gained one")
	}
	for _, tc := range []struct {
		s    *SNMP
		want string
	}{
		{nil, "-"},
		{&SNMP{Version: SNMPv2c}, "v2c:161"},
		{&SNMP{Version: SNMPv1, Port: 1161}, "v1:1161"},
		{d.SNMP, "v3:161 user=u " + d.SNMP.SecurityLevel()},
	} {
		if got := tc.s.Summary(); got != tc.want {
			t.Errorf("Summary of %+v = %q, want %q", tc.s, got, tc.want)
		}
	}
}

// TestWriteDevices: device list's table and device show's fields sum up
// the SNMP settings and never print a secret.
func TestWriteDevices(t *testing.T) {
	d := Device{Name: "r1", Address: "10.0.0.1", Checks: []string{CheckICMP, CheckSNMP}, Interval: Duration(time.Minute), Retries: 2, Revision: 3,
		SNMP: &SNMP{Version: SNMPv2c, Community: "s3cret"}}
	var b bytes.Buffer
	if err := WriteDevices(&b, []Device{d}); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.HasPrefix(out, "NAME") || !strings.Contains(out, "10.0.0.1") || !strings.Contains(out, "v2c:161") || strings.Contains(out, "s3cret") {
		t.Errorf("table:\n%s", out)
	}
	b.Reset()
	if err := d.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name:      r1\n", "address:   10.0.0.1\n", "checks:    icmp,snmp\n", "retries:   2\n", "snmp:      v2c:161\n", "revision:  3\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("%q missing from\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "s3cret") {
		t.Errorf("device show prints the community:\n%s", b.String())
	}
}

// TestDeviceChange: what device add and rm print, as text and as JSON
// (secrets masked).
func TestDeviceChange(t *testing.T) {
	d := Device{Name: "sw1", Address: "10.0.0.1", Checks: []string{CheckICMP, CheckSNMP}, Interval: Duration(time.Minute),
		SNMP: &SNMP{Version: SNMPv2c, Community: "secret"}}
	for _, tt := range []struct {
		ch         DeviceChange
		text, json string
	}{
		{NewDeviceChange("added", d), "device sw1 added (10.0.0.1, checks icmp,snmp, every 1m0s)\n", `"community":"********"`},
		{NewDeviceChange("removed", Device{Name: "sw1"}), "device sw1 removed\n", `{"result":"removed","name":"sw1"}`},
	} {
		var b strings.Builder
		if err := tt.ch.WriteText(&b); err != nil || b.String() != tt.text {
			t.Errorf("text %q, %v; want %q", b.String(), err, tt.text)
		}
		j, err := json.Marshal(tt.ch)
		if err != nil || !strings.Contains(string(j), tt.json) {
			t.Errorf("json %s, %v; want it to hold %s", j, err, tt.json)
		}
	}
}

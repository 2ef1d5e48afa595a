package meshmon_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/meshmon/meshmon"
)

// FuzzDeviceJSON reads a device record as 'device import' does (strict:
// unknown fields are errors) and checks it as every writer of the
// inventory does. A failed check wraps ErrInvalidDevice; a device that
// passes encodes, reads back strictly to the same record, and passes again.
func FuzzDeviceJSON(f *testing.F) {
	for _, s := range []string{
		`{"name":"r1","address":"192.0.2.1","checks":["icmp"],"interval":"30s"}`,
		`{"name":"core-1","address":"core-1.example.net","checks":["icmp","snmp"],"interval":"1m","timeout":"2s","retries":2,
		  "snmp":{"version":"2c","community":"public","port":1161}}`,
		`{"name":"sw-3","address":"2001:db8::3","checks":["snmp"],"interval":60000000000,
		  "snmp":{"version":"3","user":"meshmon","auth_protocol":"SHA256","auth_password":"meshmon-auth",
		  "priv_protocol":"AES256C","priv_password":"meshmon-priv","context":"vlan-1"}}`,
		`{"name":"x","address":"10.0.0.256","checks":["icmp"],"interval":"1s"}`,
		`{"name":"x","address":"h:161","checks":["icmp"],"interval":"1s","revision":3}`,
		`{"name":"x","bogus":1}`,
	} {
		f.Add([]byte(s))
	}
	strict := func(b []byte, d *meshmon.Device) error {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		return dec.Decode(d)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var d meshmon.Device
		if strict(data, &d) != nil {
			return
		}
		err := d.Validate()
		if err != nil {
			if !errors.Is(err, meshmon.ErrInvalidDevice) {
				t.Fatalf("Validate: %v does not wrap ErrInvalidDevice", err)
			}
			if !strings.Contains(err.Error(), "invalid device") {
				t.Fatalf("Validate: %q does not say it is about the device", err)
			}
			return
		}
		b1, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("a valid device does not encode: %v", err)
		}
		var d2 meshmon.Device
		if err := strict(b1, &d2); err != nil {
			t.Fatalf("an encoded device does not decode strictly: %v\n%s", err, b1)
		}
		if err := d2.Validate(); err != nil {
			t.Fatalf("a valid device is invalid after a round trip: %v\n%s", err, b1)
		}
		b2, _ := json.Marshal(d2)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("round trip not stable:\n%s\n%s", b1, b2)
		}
	})
}

package meshmon_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		in   string
		rule string // part of the error; "" means valid
	}{
		{"core-sw1", ""},
		{"a", ""},
		{"0_x", ""},
		{strings.Repeat("a", 63), ""},
		{"", "empty"},
		{strings.Repeat("a", 64), "at most 63"},
		{"a.b", "'.'"},
		{"a*", "wildcard"},
		{"a>", "wildcard"},
		{"a b", "white space"},
		{"Router", "lowercase"},
		{"rüter", "ASCII"},
		{"-x", "start with"},
		{"_x", "start with"},
		{"a/b", "may contain only"},
	}
	for _, tt := range tests {
		err := meshmon.ValidateName("device", tt.in)
		switch {
		case tt.rule == "" && err != nil:
			t.Errorf("%q: unexpected error %v", tt.in, err)
		case tt.rule != "" && err == nil:
			t.Errorf("%q: accepted, want error about %s", tt.in, tt.rule)
		case tt.rule != "" && (!errors.Is(err, meshmon.ErrInvalidName) || !strings.Contains(err.Error(), tt.rule) || !strings.Contains(err.Error(), "device")):
			t.Errorf("%q: error %q should wrap ErrInvalidName, name the field and say %q", tt.in, err, tt.rule)
		}
	}
}

func TestDeviceValidate(t *testing.T) {
	ok := func() meshmon.Device {
		return meshmon.Device{Name: "r1", Address: "192.0.2.1", Checks: []string{"icmp", "snmp"}, Interval: meshmon.Duration(time.Minute),
			SNMP: &meshmon.SNMP{Version: "2c", Community: "public"}}
	}
	tests := []struct {
		name   string
		mutate func(*meshmon.Device)
		rule   string
	}{
		{"valid", func(*meshmon.Device) {}, ""},
		{"valid v3 authPriv", func(d *meshmon.Device) {
			d.SNMP = &meshmon.SNMP{Version: "3", User: "u", AuthProtocol: "SHA", AuthPassword: "12345678", PrivProtocol: "AES", PrivPassword: "12345678"}
		}, ""},
		{"host name", func(d *meshmon.Device) { d.Address = "sw1.example.net" }, ""},
		{"ipv6", func(d *meshmon.Device) { d.Address = "2001:db8::1" }, ""},
		{"bad name", func(d *meshmon.Device) { d.Name = "a.b" }, "'.'"},
		{"no address", func(d *meshmon.Device) { d.Address = "" }, "address is empty"},
		{"address with port", func(d *meshmon.Device) { d.Address = "192.0.2.1:161" }, "without port"},
		{"no checks", func(d *meshmon.Device) { d.Checks = nil }, "checks is empty"},
		{"unknown check", func(d *meshmon.Device) { d.Checks = []string{"http"} }, `check "http" is unknown`},
		{"interval too short", func(d *meshmon.Device) { d.Interval = meshmon.Duration(time.Millisecond) }, "interval"},
		{"timeout above interval", func(d *meshmon.Device) { d.Timeout = meshmon.Duration(2 * time.Minute) }, "timeout"},
		{"retries", func(d *meshmon.Device) { d.Retries = 11 }, "retries"},
		{"snmp missing", func(d *meshmon.Device) { d.SNMP = nil }, "needs SNMP settings"},
		{"version", func(d *meshmon.Device) { d.SNMP.Version = "4" }, "version"},
		{"no community", func(d *meshmon.Device) { d.SNMP.Community = "" }, "community is empty"},
		{"v3 no user", func(d *meshmon.Device) { d.SNMP = &meshmon.SNMP{Version: "3"} }, "user is empty"},
		{"v3 short pass", func(d *meshmon.Device) {
			d.SNMP = &meshmon.SNMP{Version: "3", User: "u", AuthProtocol: "SHA", AuthPassword: "short"}
		}, "at least 8"},
		{"v3 bad proto", func(d *meshmon.Device) {
			d.SNMP = &meshmon.SNMP{Version: "3", User: "u", AuthProtocol: "SHA1024", AuthPassword: "12345678"}
		}, "auth protocol"},
		{"v3 priv without auth", func(d *meshmon.Device) {
			d.SNMP = &meshmon.SNMP{Version: "3", User: "u", PrivProtocol: "AES", PrivPassword: "12345678"}
		}, "auth protocol is empty"},
		{"port", func(d *meshmon.Device) { d.SNMP.Port = 70000 }, "port"},
		{"parent", func(d *meshmon.Device) { d.Parent = "core1" }, ""},
		{"bad parent", func(d *meshmon.Device) { d.Parent = "Core 1" }, "parent"},
		{"parent itself", func(d *meshmon.Device) { d.Parent = "r1" }, "the device itself"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := ok()
			tt.mutate(&d)
			err := d.Validate()
			if tt.rule == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, meshmon.ErrInvalidDevice) || !strings.Contains(err.Error(), tt.rule) {
				t.Fatalf("error %v: want ErrInvalidDevice mentioning %q", err, tt.rule)
			}
		})
	}
}

func TestMsgIDIsAPureFunction(t *testing.T) {
	slot := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)
	a := meshmon.MsgID("t", "s", "d", "if.1", slot)
	if a != meshmon.MsgID("t", "s", "d", "if.1", slot) {
		t.Fatal("same observation, different ids")
	}
	for _, b := range []string{
		meshmon.MsgID("t2", "s", "d", "if.1", slot),
		meshmon.MsgID("t", "s2", "d", "if.1", slot),
		meshmon.MsgID("t", "s", "d2", "if.1", slot),
		meshmon.MsgID("t", "s", "d", "if.2", slot),
		meshmon.MsgID("t", "s", "d", "if.1", slot.Add(time.Minute)),
		meshmon.MsgID("ts", "", "d", "if.1", slot),
	} {
		if a == b {
			t.Fatal("different observations share an id")
		}
	}
}

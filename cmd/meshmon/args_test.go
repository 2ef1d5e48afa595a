package main

import (
	"slices"
	"testing"
)

func TestInterspersed(t *testing.T) {
	app := newApp()
	tests := []struct{ in, want []string }{
		{[]string{"meshmon", "device", "add", "r1", "--address", "192.0.2.1"},
			[]string{"meshmon", "device", "add", "--address", "192.0.2.1", "--", "r1"}},
		{[]string{"meshmon", "--server", "nats://x:4222", "device", "add", "r1", "--replace", "--address=192.0.2.1"},
			[]string{"meshmon", "--server", "nats://x:4222", "device", "add", "--replace", "--address=192.0.2.1", "--", "r1"}},
		{[]string{"meshmon", "device", "add", "--address", "192.0.2.1", "r1"},
			[]string{"meshmon", "device", "add", "--address", "192.0.2.1", "--", "r1"}},
		{[]string{"meshmon", "device", "show", "--json", "r1"},
			[]string{"meshmon", "device", "show", "--json", "--", "r1"}},
		{[]string{"meshmon", "device", "add", "-x", "--", "-r1"},
			[]string{"meshmon", "device", "add", "-x", "--", "-r1"}},
		{[]string{"meshmon", "status", "--json"}, []string{"meshmon", "status", "--json"}},
		{[]string{"meshmon", "device"}, []string{"meshmon", "device"}},
	}
	for _, tt := range tests {
		if got := interspersed(app, tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("interspersed(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

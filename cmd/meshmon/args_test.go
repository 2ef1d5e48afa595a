package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/meshmon/meshmon/internal/cliflags"
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
		if got := cliflags.Interspersed(app, tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("interspersed(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

// TestUnknownCommand: a word that is no command, and a flag given before a
// command it does not belong to, are named; what parses is left alone.
func TestUnknownCommand(t *testing.T) {
	app := newApp()
	tests := []struct {
		args []string
		want string // "" for no error
	}{
		{[]string{"meshmon", "devic", "list"}, "'meshmon devic' is not a command"},
		{[]string{"meshmon", "device", "lst"}, "'meshmon device lst' is not a command"},
		{[]string{"meshmon", "--keys", "k", "tenant", "list"}, "'meshmon' has no flag --keys"},
		{[]string{"meshmon", "tenant", "--keys=k", "list"}, "'meshmon tenant' has no flag --keys"},
		{[]string{"meshmon", "--bogus", "status"}, "'meshmon' has no flag --bogus"},
		{[]string{"meshmon", "tenant", "list", "--keys", "k"}, ""},
		{[]string{"meshmon", "--server", "nats://x:4222", "--timeout=3s", "status", "--json"}, ""},
		{[]string{"meshmon", "--version"}, ""},
		{[]string{"meshmon", "tenant", "--help"}, ""},
		{[]string{"meshmon", "device", "add", "--bogus"}, ""}, // the leaf command's parser names it
	}
	for _, tt := range tests {
		err := cliflags.UnknownCommand(app, tt.args)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: %v, want no error", tt.args, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: %v, want one with %q", tt.args, err, tt.want)
		}
	}
}

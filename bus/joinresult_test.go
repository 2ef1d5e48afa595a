package bus

import (
	"bytes"
	"strings"
	"testing"
)

// TestJoinResult: site add's result carries a token that parses back to
// the site and its join info, a command that reads the token from the
// file's base name, and for people never the token itself; the token
// file is named for the site (and tenant).
func TestJoinResult(t *testing.T) {
	if f, g := JoinFile("", "paris"), JoinFile("acme", "paris"); f != "paris.token" || g != "acme-paris.token" {
		t.Errorf("join files: %s and %s", f, g)
	}
	info := JoinInfo{Tenant: "default", Central: []string{"nats-leaf://central:7422"}, User: "leaf", Password: "secret-secret"}
	r := NewJoinResult("added", "paris", info, "/tmp/x/paris.token")
	site, got, err := ParseJoinToken(r.Token)
	if err != nil || site != "paris" || got.Password != "secret-secret" {
		t.Fatalf("token: site %q, info %+v, %v", site, got, err)
	}
	if want := "meshmon peer run --role site --data-dir /var/lib/meshmon/peer --join-file paris.token"; r.Command != want {
		t.Errorf("command %q, want %q", r.Command, want)
	}
	r.TokenFile = "/tmp/x/paris.token"
	var b bytes.Buffer
	r.WriteText(&b)
	want := "site paris added; central dials nothing: the site peer dials [nats-leaf://central:7422]\n" +
		"join token written to /tmp/x/paris.token (mode 0600; it holds the tenant's leaf credential: keep it secret).\n" +
		"copy it to the site machine and run:\n\n  " + r.Command + "\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	if strings.Contains(b.String(), r.Token) || strings.Contains(b.String(), "secret-secret") {
		t.Error("the text output shows the token")
	}
}

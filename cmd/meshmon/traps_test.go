package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/poller"
)

// TestPollerTrapUsersFile: a bad trap users file fails `poller run` before
// it connects anywhere, naming the rule.
func TestPollerTrapUsersFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.yaml")
	if err := os.WriteFile(path, []byte("users:\n  - name: a\n    auth_protocol: SHA\n    auth_pasword: 12345678\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := newApp().Run([]string{"meshmon", "poller", "run", "--site", "paris", "--data-dir", dir, "--trap-users-file", path})
	if !errors.Is(err, poller.ErrTrapUsers) {
		t.Fatalf("poller run with an unknown key in the users file: %v, want ErrTrapUsers", err)
	}
}

func TestPrintTrapDrops(t *testing.T) {
	var b bytes.Buffer
	printTrapDrops(&b, []meshmon.PollerInfo{
		{Name: "p1", TrapsInvalid: map[string]uint64{"malformed": 10, "bad_auth": 3}, TrapsDropped: 2},
		{Name: "p2"},
		{Name: "p3", TrapsInvalid: map[string]uint64{"no_trap_oid": 1}},
	})
	want := "traps dropped by p1: bad_auth 3, malformed 10, queue_full 2\ntraps dropped by p3: no_trap_oid 1\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

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

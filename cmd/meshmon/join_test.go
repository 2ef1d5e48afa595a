package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestJoinFileErrorsNameTheFile: a join file that is missing or holds no
// token is refused before anything starts, and the error names the flag
// and the file.
func TestJoinFileErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "paris.token")
	if err := os.WriteFile(bad, []byte("not a token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "lyon.token")
	for file, want := range map[string]string{bad: "join token: does not start with", missing: "no such file"} {
		err := newApp().Run([]string{"meshmon", "peer", "run", "--role", "site", "--data-dir", t.TempDir(), "--insecure", "--join-file", file})
		if err == nil || !strings.Contains(err.Error(), "--join-file") || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), want) {
			t.Errorf("--join-file %s: %v, want an error naming the flag, the file and %q", file, err, want)
		}
	}
}

// TestPeerMaxStore: --max-store bounds what JetStream may use, and a
// store whose streams' limits do not fit it is refused at start, naming
// the limit.
func TestPeerMaxStore(t *testing.T) {
	err := newApp().Run([]string{"meshmon", "peer", "run", "--role", "central", "--data-dir", t.TempDir(), "--insecure", "--listen", "127.0.0.1:0",
		"--max-store", "64MiB", "--events-max-bytes", "1GiB"})
	if err == nil || !strings.Contains(err.Error(), "do not fit the 64MiB JetStream may use") || !strings.Contains(err.Error(), "raise --max-store") {
		t.Fatalf("error %v, want one naming the 64 MiB --max-store", err)
	}
	err = newApp().Run([]string{"meshmon", "peer", "run", "--data-dir", t.TempDir(), "--max-store", "-1"})
	if err == nil || !strings.Contains(err.Error(), "-max-store") {
		t.Fatalf("a negative --max-store: %v, want it refused", err)
	}
}

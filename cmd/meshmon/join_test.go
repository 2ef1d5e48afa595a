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

package tenancy

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteFileReplacesMode: a secret written over an existing file that
// others could read ends up 0600, with the new content and no temporary
// file left behind.
func TestWriteFileReplacesMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.creds")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("secret")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o after replacing a 0644 file, want 0600", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); string(b) != "secret" {
		t.Fatalf("content %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("%d files in the directory, want 1: %v", len(entries), entries)
	}
	// A new file is 0600 too.
	if err := WriteFile(filepath.Join(dir, "b.creds"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "b.creds")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("new file mode %04o, want 0600", fi.Mode().Perm())
	}
}

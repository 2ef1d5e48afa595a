package pki

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestIssuedWriteInitCALoopback(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	caFile, err := InitCA(filepath.Join(dir, "ca"), "test CA", now)
	if err != nil {
		t.Fatal(err)
	}
	if caFile != filepath.Join(dir, "ca", CAFile) {
		t.Fatalf("InitCA returned %s", caFile)
	}
	if _, err := InitCA(filepath.Join(dir, "ca"), "test CA", now); !errors.Is(err, os.ErrExist) {
		t.Fatalf("a second InitCA into the same dir: %v, want ErrExist", err)
	}
	ca, err := LoadCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.Issue("p1", []string{"127.0.0.1"}, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "p1")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	files, err := is.Write(out, ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	checkFiles(t, files)

	lb, err := Loopback(filepath.Join(dir, "lb"), "demo-peer", now)
	if err != nil {
		t.Fatal(err)
	}
	if lb.Cert != filepath.Join(dir, "lb", "demo-peer", CertFile) {
		t.Fatalf("Loopback wrote %s", lb.Cert)
	}
	checkFiles(t, lb)
}

// checkFiles checks that files hold a key pair that verifies against their
// CA, and that the key is private.
func checkFiles(t *testing.T, files Files) {
	t.Helper()
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if err := CheckPair(read(files.Cert), read(files.Key), read(files.CA)); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(files.Cert, files.Key); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(files.Key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode: %v, %v", st.Mode(), err)
	}
}

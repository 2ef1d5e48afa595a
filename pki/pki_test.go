package pki

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCAIssueLoad(t *testing.T) {
	now := time.Now()
	ca, err := NewCA("test CA", now)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(dir); !errors.Is(err, os.ErrExist) {
		t.Fatalf("saving over a CA: %v, want os.ErrExist", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, CAKey)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca key mode: %v %v", fi.Mode(), err)
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	is, err := loaded.Issue("c1", []string{"central1.example.net", "10.0.0.5"}, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPair(is.CertPEM, is.KeyPEM, ca.CertPEM); err != nil {
		t.Fatal(err)
	}
	certs, _ := ParseCerts(is.CertPEM)
	pool, _ := Pool(ca.CertPEM)
	for _, host := range []string{"central1.example.net", "10.0.0.5"} {
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.example.net"}); err == nil {
		t.Error("verified for a host it was not issued for")
	}
	other, _ := NewCA("other", now)
	if err := CheckPair(is.CertPEM, is.KeyPEM, other.CertPEM); !errors.Is(err, ErrInvalid) {
		t.Fatalf("check against another CA: %v", err)
	}
	for _, bad := range [][]string{nil, {"bad host!"}, {"-x.example"}} {
		if _, err := ca.Issue("c1", bad, now, 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("hosts %q: %v, want ErrInvalid", bad, err)
		}
	}
}

// TestWriteSecretReplaces: a secret written over a world-readable file
// ends 0600.
func TestWriteSecretReplaces(t *testing.T) {
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteSecret(p, []byte("new")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v (%v), want 0600", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Fatalf("content %q", b)
	}
}

package pki

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestIssueInto: one certificate goes into the directory itself, several
// each into a directory of its name, valid for that name too, with the CA
// beside them; the JSON of a certificate is as 'tls issue --json' prints.
func TestIssueInto(t *testing.T) {
	now := time.Now()
	ca, err := NewCA("test CA", now)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	one, err := ca.IssueInto(out, []string{"central"}, []string{"127.0.0.1"}, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(one) != 1 || one[0].Cert != filepath.Join(out, CertFile) || !slices.Equal(one[0].Hosts, []string{"127.0.0.1"}) {
		t.Fatalf("one: %+v", one)
	}
	b, _ := json.Marshal(one[0])
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || len(m) != 5 || m["name"] != "central" || m["key"] != filepath.Join(out, KeyFile) {
		t.Errorf("JSON: %s", b)
	}
	several, err := ca.IssueInto(out, []string{"a", "b"}, []string{"localhost"}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, is := range several {
		if filepath.Dir(is.Cert) != filepath.Join(out, is.Name) || !slices.Equal(is.Hosts, []string{is.Name, "localhost"}) {
			t.Errorf("%s: %+v", is.Name, is)
		}
		cert, _ := os.ReadFile(is.Cert)
		key, _ := os.ReadFile(is.Key)
		if err := CheckPair(cert, key, ca.CertPEM); err != nil {
			t.Errorf("%s: %v", is.Name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, CAFile)); err != nil {
		t.Errorf("the CA for clients: %v", err)
	}
	if _, err := ca.IssueInto(out, []string{"c"}, nil, now, -time.Hour); err == nil || err.Error() != "c: --validity must be more than 0" {
		t.Errorf("negative validity: %v", err)
	}
}

// TestOpenCA: a CA that is not there is an error unless OpenCA makes it;
// made, it is the one loaded next.
func TestOpenCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	now := time.Now()
	if _, err := OpenCA(dir, "test CA", false, now); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("no CA, not made: %v; want os.ErrNotExist", err)
	}
	made, err := OpenCA(dir, "test CA", true, now)
	if err != nil {
		t.Fatal(err)
	}
	again, err := OpenCA(dir, "other", true, now)
	if err != nil || !again.Cert.Equal(made.Cert) {
		t.Fatalf("opened again: %v; want the CA made", err)
	}
}

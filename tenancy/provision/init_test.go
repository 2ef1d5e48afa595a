package provision_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshmon/meshmon/pki"
	"github.com/meshmon/meshmon/tenancy"
	"github.com/meshmon/meshmon/tenancy/provision"
)

// TestInit: the trust file holds the store's trust and the CA loads; a
// second Init into the same directory is refused.
func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	in, err := provision.Init(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(in.TrustFile)
	if err != nil {
		t.Fatal(err)
	}
	var trust tenancy.Trust
	if err := json.Unmarshal(b, &trust); err != nil {
		t.Fatal(err)
	}
	if trust.Operator != in.Trust.Operator || trust.SystemAccount == "" || trust.SystemAccount != in.Trust.SystemAccount {
		t.Fatalf("trust file %+v, want %+v", trust, in.Trust)
	}
	if _, err := pki.LoadCA(filepath.Dir(in.CAFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := tenancy.Open(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := provision.Init(dir, "test"); !errors.Is(err, tenancy.ErrExists) {
		t.Fatalf("a second init: %v, want %v", err, tenancy.ErrExists)
	}
}

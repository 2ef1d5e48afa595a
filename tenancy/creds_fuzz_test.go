package tenancy_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshmon/meshmon/tenancy"
)

// FuzzCredsIdentity reads a .creds file as 'poller run --creds' does (to
// learn its tenant, role and site) and as every CLI connection does (the
// JWT and the seed): either accepts it or fails with one error that says
// it is about the credentials, and never panics.
func FuzzCredsIdentity(f *testing.F) {
	st, err := tenancy.Init(filepath.Join(f.TempDir(), "keys"), "fuzz-op")
	if err != nil {
		f.Fatal(err)
	}
	if _, err := st.CreateTenant("acme", tenancy.DefaultLimits()); err != nil {
		f.Fatal(err)
	}
	for _, u := range []struct {
		name string
		role tenancy.Role
		site string
	}{{"p1", tenancy.RolePoller, "paris"}, {"n1", tenancy.RoleNOC, ""}, {"a1", tenancy.RoleAdmin, ""}} {
		_, creds, err := st.IssueUser("acme", u.name, u.role, u.site)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(creds)
	}
	f.Add([]byte("-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.x\n------END NATS USER JWT------\n"))
	f.Add([]byte("SUAIO3FHUX5PNV2LQIIP7TZ3N4L7TX3W53MQGEIVYFIGA635OZCKEYHFLM\n"))
	f.Fuzz(func(t *testing.T, creds []byte) {
		if _, err := tenancy.CredsIdentity(creds); err != nil && !strings.HasPrefix(err.Error(), "credentials: ") {
			t.Fatalf("CredsIdentity: %v does not say it is about the credentials", err)
		}
		if _, err := tenancy.CredsOption(creds); err != nil && !strings.HasPrefix(err.Error(), "credentials: ") {
			t.Fatalf("CredsOption: %v does not say it is about the credentials", err)
		}
	})
}

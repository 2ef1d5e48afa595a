package tenancy_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshmon/meshmon/tenancy"
)

// TestPollerFlagsFromCreds: a poller credential fills the tenant, site and
// name the flags left out, refuses flags that contradict it, and a NOC's
// credential, which cannot publish, is refused.
func TestPollerFlagsFromCreds(t *testing.T) {
	st := newStore(t)
	if _, err := st.CreateTenant("acme", tenancy.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(user string, role tenancy.Role, site string) string {
		_, creds, err := st.IssueUser("acme", user, role, site)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, user+".creds")
		if err := tenancy.WriteFile(path, creds); err != nil {
			t.Fatal(err)
		}
		return path
	}
	poller, noc := write("p1", tenancy.RolePoller, "paris"), write("noc", tenancy.RoleNOC, "")

	f := tenancy.PollerFlags{Name: "host-1"}
	if err := f.FromCreds(poller); err != nil {
		t.Fatal(err)
	}
	if f.Tenant != "acme" || f.Site != "paris" || f.Name != "p1" {
		t.Errorf("from the credential: %+v", f)
	}
	same := tenancy.PollerFlags{Tenant: "acme", TenantSet: true, Site: "paris", SiteSet: true}
	if err := same.FromCreds(poller); err != nil {
		t.Errorf("flags that agree: %v", err)
	}
	for _, tt := range []struct {
		f    tenancy.PollerFlags
		path string
		want string
	}{
		{tenancy.PollerFlags{Site: "lyon", SiteSet: true}, poller, `--site "lyon": the credential in ` + poller + ` is for site paris`},
		{tenancy.PollerFlags{Name: "p2", NameSet: true}, poller, `--name "p2": the credential in ` + poller + ` is poller p1's`},
		{tenancy.PollerFlags{}, noc, "a noc credential cannot publish events"},
		{tenancy.PollerFlags{}, filepath.Join(dir, "missing.creds"), "--creds: "},
	} {
		if err := tt.f.FromCreds(tt.path); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v with %s: %v, want %q", tt.f, filepath.Base(tt.path), err, tt.want)
		}
	}
	none := tenancy.PollerFlags{Site: "x"}
	if err := none.FromCreds(""); err != nil || none.Site != "x" {
		t.Errorf("no --creds: %+v, %v", none, err)
	}
}

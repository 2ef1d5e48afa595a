package tenancy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/meshmon/meshmon/tenancy"
)

// TestReservedTenantNames: meshmon's own account and domain names are
// refused as tenants, with an error naming the rule.
func TestReservedTenantNames(t *testing.T) {
	st := newStore(t)
	for _, name := range []string{"ops", "sys", "system", "hub", "default"} {
		_, err := st.CreateTenant(name, tenancy.DefaultLimits())
		if !errors.Is(err, tenancy.ErrReservedName) || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("tenant %q: %v, want ErrReservedName", name, err)
		}
	}
	if _, err := st.CreateTenant("systems", tenancy.DefaultLimits()); err != nil {
		t.Errorf("tenant systems: %v", err)
	}
}

// TestCheckSite: a tenant's sites are those it issued a site bundle for
// and did not revoke; another tenant's site is not one of them.
func TestCheckSite(t *testing.T) {
	st := newStore(t)
	for _, n := range []string{"acme", "beta"} {
		if _, err := st.CreateTenant(n, tenancy.DefaultLimits()); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CheckSite("acme", "paris"); !errors.Is(err, tenancy.ErrNoSite) {
		t.Fatalf("a site never added: %v, want ErrNoSite", err)
	}
	if _, err := st.IssueSite("acme", "paris"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.IssueSite("beta", "berlin"); err != nil {
		t.Fatal(err)
	}
	if err := st.CheckSite("acme", "paris"); err != nil {
		t.Fatalf("acme's own site: %v", err)
	}
	if err := st.CheckSite("acme", "berlin"); !errors.Is(err, tenancy.ErrNoSite) || !strings.Contains(err.Error(), "paris") {
		t.Fatalf("beta's site for acme: %v, want ErrNoSite naming acme's sites", err)
	}
	if _, err := st.RevokeUser("acme", "leaf-paris"); err != nil {
		t.Fatal(err)
	}
	if err := st.CheckSite("acme", "paris"); !errors.Is(err, tenancy.ErrNoSite) {
		t.Fatalf("a site whose leaf user is revoked: %v, want ErrNoSite", err)
	}
	if err := st.CheckSite("nobody", "paris"); !errors.Is(err, tenancy.ErrNoTenant) {
		t.Fatalf("no tenant: %v, want ErrNoTenant", err)
	}
}

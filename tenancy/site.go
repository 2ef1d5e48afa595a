package tenancy

import "fmt"

// SiteBundle is what a site peer needs to serve a tenant: the tenant's
// account JWT (its limits), the operator's trust, the site's leaf
// credential, and the credential the site peer makes the tenant's streams
// with. It holds user credentials, never a signing key.
type SiteBundle struct {
	Trust       Trust
	Account     string // the tenant's account public key
	AccountJWT  string
	LeafCreds   []byte
	UpkeepCreds []byte
}

// SiteUpkeepUser is the name of the site's upkeep user, whose inbox prefix
// the site peer's own connections use (peer's in-process user).
func SiteUpkeepUser(site string) string { return "site-" + site }

// IssueSite issues the site's users in the tenant's account (leaf-<site>
// for its link, site-<site> for the peer's own upkeep; each may do what
// that needs at that site only, see permissions), makes the signing key of
// the site's pollers unless the tenant has it (EnsurePollerKey; call that
// first, and push the tenant if it changed, so that central has the key
// before the site's pollers connect) and returns the bundle. It fails with an error wrapping ErrExists when the
// site's users exist and are not revoked.
func (s *Store) IssueSite(tenant, site string) (SiteBundle, error) {
	t, err := s.Tenant(tenant)
	if err != nil {
		return SiteBundle{}, err
	}
	leaf, upkeep := "leaf-"+site, SiteUpkeepUser(site)
	for _, u := range t.Users {
		if (u.Name == leaf || u.Name == upkeep) && !u.Revoked {
			return SiteBundle{}, fmt.Errorf("site %s of tenant %s: user %s: %w; revoke %s and %s to give the site a new token",
				site, tenant, u.Name, ErrExists, leaf, upkeep)
		}
	}
	trust, err := s.Trust()
	if err != nil {
		return SiteBundle{}, err
	}
	// The site's pollers' key, in the account JWT the token carries.
	if _, _, err := s.EnsurePollerKey(tenant, site); err != nil {
		return SiteBundle{}, err
	}
	_, lc, err := s.IssueUser(tenant, leaf, RoleLeaf, site)
	if err != nil {
		return SiteBundle{}, err
	}
	_, uc, err := s.IssueUser(tenant, upkeep, RoleSite, site)
	if err != nil {
		return SiteBundle{}, err
	}
	t, err = s.Tenant(tenant)
	if err != nil {
		return SiteBundle{}, err
	}
	return SiteBundle{Trust: trust, Account: t.Account, AccountJWT: t.JWT, LeafCreds: lc, UpkeepCreds: uc}, nil
}

package tenancy

import (
	"fmt"
	"os"
)

// PollerFlags are a poller's tenant, site and name as its flags give them;
// the *Set ones were given (on the command line, in the environment or in
// --config).
type PollerFlags struct {
	Tenant, Site, Name          string
	TenantSet, SiteSet, NameSet bool
}

// FromCreds checks f against a poller credential of meshmon's (the .creds
// file at path, --creds), whose user JWT names its tenant, site and user,
// and takes them from it when the flags are not given (the poller's name is
// its user's). A credential that cannot publish events is refused at once
// rather than at the first publish. An empty path leaves f as it is.
func (f *PollerFlags) FromCreds(path string) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--creds: %w", err)
	}
	id, err := CredsIdentity(b)
	if err != nil {
		return fmt.Errorf("--creds %s: %w", path, err)
	}
	switch id.Role {
	case RoleNOC, RoleLeaf:
		return fmt.Errorf("--creds %s: a %s credential cannot publish events; issue a poller's with 'meshmon tenant creds TENANT --role poller --site SITE'", path, id.Role)
	}
	if id.Tenant != "" {
		if f.TenantSet && f.Tenant != id.Tenant {
			return fmt.Errorf("--tenant %q: the credential in %s is tenant %s's", f.Tenant, path, id.Tenant)
		}
		f.Tenant = id.Tenant
	}
	if id.Site != "" {
		if f.SiteSet && f.Site != id.Site {
			return fmt.Errorf("--site %q: the credential in %s is for site %s", f.Site, path, id.Site)
		}
		f.Site = id.Site
	}
	if id.Role == RolePoller && id.User != "" {
		// A poller credential may write its own heartbeat only, whose key
		// is its user name (bus.PollerKey): the poller is named for it.
		if f.NameSet && f.Name != id.User {
			return fmt.Errorf("--name %q: the credential in %s is poller %s's; drop --name or issue a credential with 'meshmon tenant creds %s --role poller --site %s --user %s'",
				f.Name, path, id.User, id.Tenant, id.Site, f.Name)
		}
		f.Name = id.User
	}
	return nil
}

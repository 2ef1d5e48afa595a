package tenancy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/meshmon/meshmon"
)

// pollerKVPublish returns the key-value subjects a poller user may publish
// to: its own heartbeat in the pollers bucket (the poller is named for its
// user) and its own site's group keys, the leader's lease and the
// assignment (its index and its shards). Every write of a key (put, create, update, delete) is a
// publish to that key's subject, so a poller can neither forge another
// poller's heartbeat nor write the group of another site, even at that
// site's peer: the keys it may write there are its own site's, which that
// site's pollers never read.
//
// The subjects are bus's (bus.KVSubject with bus.PollerKey,
// bus.GroupLeaderKey, bus.GroupAssignmentKey and bus.ShardKey), spelled out here because
// bus imports tenancy; TestPollerKVPermissions writes them through bus.
func pollerKVPublish(site, user string) []string {
	return []string{
		"$KV.pollers." + site + "." + user,
		"$KV.group." + site + ".leader",
		"$KV.group." + site + ".assignment",
		"$KV.group." + site + ".assignment.*", // its shards (bus.ShardKey)
	}
}

// A site's pollers are signed with a signing key of the tenant's account
// scoped to that site (jwt.UserScope): its role is PollerScopeRole(site)
// and its template the poller's permissions, with {{name()}} where the
// user's name goes (nats-server puts the user JWT's name there at
// connect). A poller's JWT carries no permissions of its own (the server
// refuses a scoped user that does). Each site peer drops from the
// account claims it applies the other sites' poller keys, so a poller
// credential is refused at any site but its own; central keeps them all.

// PollerScopePrefix begins the role of every site's poller key.
const PollerScopePrefix = "meshmon-poller:"

// PollerScopeRole is the role of the signing key of site's pollers.
func PollerScopeRole(site string) string { return PollerScopePrefix + site }

// pollerKeyFile is the file, in the tenant's directory, of the signing key
// of site's pollers.
func pollerKeyFile(site string) string { return "poller-" + site + ".nk" }

// pollerScope is the scope of the signing key pub of site's pollers.
func pollerScope(pub, site string) *jwt.UserScope {
	sc := jwt.NewUserScope()
	sc.Key = pub
	sc.Role = PollerScopeRole(site)
	sc.Template.Pub, sc.Template.Sub, sc.Template.Resp = permissions(RolePoller, "{{name()}}", site)
	return sc
}

// EnsurePollerKey makes the signing key of the site's pollers in the
// tenant's account, unless it has it already, and returns the tenant and
// whether its account JWT changed: a change must be pushed (Push, and the
// tenant bucket its sites follow) before a poller signed with the key
// connects anywhere. A poller's permissions are those of the store that
// made its site's key; issuing again after a change of them replaces the
// key's template.
func (s *Store) EnsurePollerKey(tenant, site string) (Tenant, bool, error) {
	if err := meshmon.ValidateName("site", site); err != nil {
		return Tenant{}, false, err
	}
	ac, _, err := s.tenantAccount(tenant)
	if err != nil {
		return Tenant{}, false, err
	}
	file := filepath.Join(tenantDir(tenant), pollerKeyFile(site))
	kp, err := s.readKey(file)
	if errors.Is(err, fs.ErrNotExist) {
		if kp, err = nkeys.CreateAccount(); err != nil {
			return Tenant{}, false, fmt.Errorf("site %s: poller key: %w", site, err)
		}
		if err := s.writeKey(file, kp); err != nil {
			return Tenant{}, false, err
		}
	} else if err != nil {
		return Tenant{}, false, err
	}
	pub, _ := kp.PublicKey()
	want := pollerScope(pub, site)
	if have, ok := ac.SigningKeys[pub]; ok && sameScope(have, want) {
		t, err := s.Tenant(tenant)
		return t, false, err
	}
	ac.SigningKeys.AddScopedSigner(want)
	if err := s.saveAccount(tenantDir(tenant), ac); err != nil {
		return Tenant{}, false, err
	}
	t, err := s.Tenant(tenant)
	return t, true, err
}

// sameScope reports whether a, as decoded from an account JWT, is b.
func sameScope(a, b jwt.Scope) bool {
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return erra == nil && errb == nil && string(ja) == string(jb)
}

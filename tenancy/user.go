package tenancy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/meshmon/meshmon"
)

// Role is what a tenant's user may do.
type Role string

const (
	// RolePoller publishes one site's events and samples and uses that
	// site's buckets; it can neither read other sites' events nor manage
	// streams.
	RolePoller Role = "poller"
	// RoleNOC reads events and samples, live and replayed from the
	// streams; it cannot publish, purge or delete anything.
	RoleNOC Role = "noc"
	// RoleAdmin manages the tenant's devices and streams; it does not
	// publish events.
	RoleAdmin Role = "admin"
	// RoleLeaf is a site peer's leaf link to central.
	RoleLeaf Role = "leaf"
)

// Roles lists the roles a tenant user can have.
var Roles = []Role{RolePoller, RoleNOC, RoleAdmin, RoleLeaf}

// User is a user issued in a tenant's account.
type User struct {
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Site      string    `json:"site,omitempty"` // a poller's site
	PublicKey string    `json:"public_key"`
	Issued    time.Time `json:"issued"`
	Revoked   bool      `json:"revoked,omitempty"`
}

// jsAPI lists JetStream API subjects in the local domain and in central's
// (hub) and a site's domain, for a client that names the domain.
func jsAPI(site string, subjects ...string) []string {
	var out []string
	for _, s := range subjects {
		out = append(out, "$JS.API."+s, "$JS.hub.API."+s)
		if site != "" {
			out = append(out, "$JS."+site+".API."+s)
		}
	}
	return out
}

// permissions returns what role may publish and subscribe to.
func permissions(role Role, site string) (pub, sub jwt.Permission) {
	// Every role reads replies to its requests.
	sub.Allow.Add("_INBOX.>")
	switch role {
	case RolePoller:
		pub.Allow.Add("ev."+site+".>", "mx."+site+".>", "$JS.FC.>", "$JS.ACK.>")
		pub.Allow.Add(jsAPI(site, "INFO", "STREAM.INFO.*", "STREAM.MSG.GET.*", "DIRECT.GET.>",
			"CONSUMER.CREATE.>", "CONSUMER.DURABLE.CREATE.KV_*.>", "CONSUMER.INFO.*.*", "CONSUMER.DELETE.*.*",
			"CONSUMER.MSG.NEXT.*.*")...)
		// Its buckets' changes arrive on the consumers' delivery subjects.
		sub.Allow.Add("$KV.>")
	case RoleNOC:
		pub.Allow.Add("$JS.FC.>", "$JS.ACK.>")
		pub.Allow.Add(jsAPI("", "INFO", "STREAM.NAMES", "STREAM.LIST", "STREAM.INFO.*", "STREAM.MSG.GET.*",
			"DIRECT.GET.>", "CONSUMER.CREATE.>", "CONSUMER.DURABLE.CREATE.*.*", "CONSUMER.INFO.*.*",
			"CONSUMER.NAMES.*", "CONSUMER.LIST.*", "CONSUMER.MSG.NEXT.*.*")...)
		sub.Allow.Add("ev.>", "mx.>")
	case RoleAdmin:
		pub.Allow.Add("$JS.API.>", "$JS.*.API.>", "$KV.>", "$JS.FC.>", "$JS.ACK.>", "meshmon.>")
		pub.Deny.Add("ev.>", "mx.>")
		sub.Allow.Add(">")
	case RoleLeaf:
		// A leaf link carries the site's JetStream API and sourcing both
		// ways; what crosses is bounded by the account, not the user.
		pub.Allow.Add(">")
		sub.Allow.Add(">")
	}
	return pub, sub
}

// IssueUser issues a user of role in the tenant's account and returns its
// credentials (a .creds file: the user's JWT and its private key). site is
// required for a poller: it may publish only that site's subjects. It fails
// with an error wrapping ErrExists when the tenant already has a user of
// that name that is not revoked.
func (s *Store) IssueUser(tenant, name string, role Role, site string) (User, []byte, error) {
	if err := meshmon.ValidateName("user", name); err != nil {
		return User{}, nil, err
	}
	if !slices.Contains(Roles, role) {
		return User{}, nil, fmt.Errorf("role %q: use one of %v", role, Roles)
	}
	switch {
	case role == RolePoller || role == RoleLeaf:
		if err := meshmon.ValidateName("site", site); err != nil {
			return User{}, nil, fmt.Errorf("a %s user belongs to a site: %w", role, err)
		}
	case site != "":
		return User{}, nil, fmt.Errorf("site %q: only poller and leaf users belong to a site", site)
	}
	t, err := s.Tenant(tenant)
	if err != nil {
		return User{}, nil, err
	}
	us := t.Users
	for _, u := range us {
		if u.Name == name && !u.Revoked {
			return User{}, nil, fmt.Errorf("user %s of tenant %s: %w; revoke it first, or choose another name", name, tenant, ErrExists)
		}
	}
	issued := s.now().Truncate(time.Second)
	pub, creds, err := s.signUser(tenantDir(tenant), name, 0, func(uc *jwt.UserClaims) {
		uc.Tags.Add("meshmon-tenant:" + tenant)
		uc.Tags.Add("meshmon-role:" + string(role))
		if site != "" {
			uc.Tags.Add("meshmon-site:" + site)
		}
		uc.Pub, uc.Sub = permissions(role, site)
		if role == RolePoller {
			uc.Pub.Allow.Add(pollerKVPublish(site, name)...)
		}
	})
	if err != nil {
		return User{}, nil, err
	}
	u := User{Name: name, Role: role, Site: site, PublicKey: pub, Issued: issued.UTC()}
	us = slices.DeleteFunc(us, func(o User) bool { return o.Name == name })
	us = append(us, u)
	if err := s.saveUsers(tenantDir(tenant), us); err != nil {
		return User{}, nil, err
	}
	return u, creds, nil
}

// RevokeUser revokes the tenant's user of that name: its credentials are
// refused once the returned tenant's JWT is pushed (Push). It fails with an
// error wrapping ErrNoUser when the tenant has no such user.
func (s *Store) RevokeUser(tenant, name string) (Tenant, error) {
	t, err := s.Tenant(tenant)
	if err != nil {
		return Tenant{}, err
	}
	i := slices.IndexFunc(t.Users, func(u User) bool { return u.Name == name })
	if i < 0 {
		return Tenant{}, fmt.Errorf("user %s of tenant %s: %w", name, tenant, ErrNoUser)
	}
	ac, _, err := s.tenantAccount(tenant)
	if err != nil {
		return Tenant{}, err
	}
	// Every user has its own key: revoking the key at any time after its
	// issue refuses it, and JWT times are whole seconds.
	ac.RevokeAt(t.Users[i].PublicKey, s.now().Add(time.Second))
	if err := s.saveAccount(tenantDir(tenant), ac); err != nil {
		return Tenant{}, err
	}
	return s.Tenant(tenant)
}

// SystemCreds issues credentials of a user in the system account, for the
// CLI to push account JWTs to the peers' resolver. They stay valid for
// ttl.
func (s *Store) SystemCreds(ttl time.Duration) ([]byte, error) {
	return s.accountCreds(systemDir, "meshmon-cli", ttl, nil)
}

// AdminCreds issues short-lived admin credentials in the tenant's account,
// for the CLI's own work in it (making its streams).
func (s *Store) AdminCreds(tenant string, ttl time.Duration) ([]byte, error) {
	if _, _, err := s.tenantAccount(tenant); err != nil {
		return nil, err
	}
	return s.accountCreds(tenantDir(tenant), "meshmon-cli", ttl, func(uc *jwt.UserClaims) {
		uc.Pub, uc.Sub = permissions(RoleAdmin, "")
	})
}

func (s *Store) accountCreds(sub, name string, ttl time.Duration, f func(*jwt.UserClaims)) ([]byte, error) {
	_, creds, err := s.signUser(sub, name, ttl, f)
	return creds, err
}

// signUser makes a user of the account in sub, signed with the account's
// signing key, valid for ttl (0: no expiry), with f's claims, and returns
// its public key and credentials.
func (s *Store) signUser(sub, name string, ttl time.Duration, f func(*jwt.UserClaims)) (string, []byte, error) {
	ac, _, err := s.account(sub)
	if err != nil {
		return "", nil, err
	}
	sk, err := s.readKey(sub + "/" + signingKey)
	if err != nil {
		return "", nil, err
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", nil, fmt.Errorf("user %s: %w", name, err)
	}
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	uc.IssuerAccount = ac.Subject
	if ttl > 0 {
		uc.Expires = s.now().Add(ttl).Unix()
	}
	if f != nil {
		f(uc)
	}
	tok, err := uc.Encode(sk)
	if err != nil {
		return "", nil, fmt.Errorf("user %s: sign: %w", name, err)
	}
	seed, _ := kp.Seed()
	creds, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		return "", nil, fmt.Errorf("user %s: %w", name, err)
	}
	return pub, creds, nil
}

// Identity is whom a user credential of meshmon's speaks for, read from its
// user JWT's tags.
type Identity struct {
	User   string
	Tenant string // empty for credentials issued before tenants were tagged
	Role   Role
	Site   string // for poller and leaf users
}

// CredsIdentity reads the identity of the user in a .creds file's content.
// It does not check the signature: the server does, at connect.
func CredsIdentity(creds []byte) (Identity, error) {
	tok, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return Identity{}, fmt.Errorf("credentials: %w", err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return Identity{}, fmt.Errorf("credentials: not a user JWT: %w", err)
	}
	id := Identity{User: uc.Name}
	for _, tag := range uc.Tags {
		k, v, _ := strings.Cut(tag, ":")
		switch k {
		case "meshmon-tenant":
			id.Tenant = v
		case "meshmon-role":
			id.Role = Role(v)
		case "meshmon-site":
			id.Site = v
		}
	}
	return id, nil
}

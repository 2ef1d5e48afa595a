package tenancy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/meshmon/meshmon"
)

// Limits are a tenant's resource limits, enforced by every peer on the
// tenant's account.
type Limits struct {
	DiskBytes   int64 `json:"disk_bytes"`   // JetStream file storage
	MemoryBytes int64 `json:"memory_bytes"` // JetStream memory storage
	Streams     int64 `json:"streams"`      // JetStream streams (KV buckets included)
	Consumers   int64 `json:"consumers"`    // JetStream consumers
	Conns       int64 `json:"connections"`  // client connections
	LeafConns   int64 `json:"leaf_connections"`
}

// DefaultLimits are a tenant's limits unless set: room for the default
// EVENTS and METRICS streams (10 GiB each) and a site's buckets, all on
// disk. No memory storage: a peer that is not clustered reserves every
// account's memory and disk limits against its own (and refuses JetStream
// to accounts beyond), and meshmon keeps nothing in memory streams.
func DefaultLimits() Limits {
	return Limits{DiskBytes: 21 << 30, MemoryBytes: 0, Streams: 20, Consumers: 1000, Conns: 100, LeafConns: 20}
}

// Validate names the first limit that breaks its rule.
func (l Limits) Validate() error {
	for _, f := range []struct {
		name     string
		v, least int64
		size     bool
	}{
		{"disk", l.DiskBytes, 1 << 20, true}, {"memory", l.MemoryBytes, 0, true}, {"streams", l.Streams, 2, false},
		{"consumers", l.Consumers, 1, false}, {"connections", l.Conns, 1, false}, {"leaf connections", l.LeafConns, 0, false},
	} {
		switch {
		case f.v >= f.least:
		case f.size:
			return fmt.Errorf("tenant limit %s %s: at least %s", f.name, meshmon.FormatSize(f.v), meshmon.FormatSize(f.least))
		default:
			return fmt.Errorf("tenant limit %s %d: at least %d", f.name, f.v, f.least)
		}
	}
	return nil
}

func (l Limits) apply(ac *jwt.AccountClaims) {
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{
		DiskStorage: l.DiskBytes, MemoryStorage: l.MemoryBytes, Streams: l.Streams, Consumer: l.Consumers,
	}
	ac.Limits.Conn = l.Conns
	ac.Limits.LeafNodeConn = l.LeafConns
}

func limitsOf(ac *jwt.AccountClaims) Limits {
	js := ac.Limits.JetStreamLimits
	return Limits{DiskBytes: js.DiskStorage, MemoryBytes: js.MemoryStorage, Streams: js.Streams, Consumers: js.Consumer,
		Conns: ac.Limits.Conn, LeafConns: ac.Limits.LeafNodeConn}
}

// Tenant is a tenant's account as the key store holds it.
type Tenant struct {
	Name    string    `json:"name"`
	Account string    `json:"account"` // the account's public key
	Limits  Limits    `json:"limits"`
	Created time.Time `json:"created"`
	Users   []User    `json:"users"`
	JWT     string    `json:"-"`
}

// ReservedTenants are names a tenant may not take: the ops account's, the
// system account's (SYS, and nats-server's $SYS as a subject token), central's
// JetStream domain (hub), and the tenant of a mesh without tenants (default),
// whose events would be mistaken for a tenant's in the ops view.
var ReservedTenants = []string{OpsAccount, "sys", "system", "hub", "default"}

// Sites returns the tenant's sites, sorted: those it holds a leaf user of
// that is not revoked (IssueSite issues one per site).
func (t Tenant) Sites() []string {
	var out []string
	for _, u := range t.Users {
		if u.Role == RoleLeaf && u.Site != "" && !u.Revoked && !slices.Contains(out, u.Site) {
			out = append(out, u.Site)
		}
	}
	slices.Sort(out)
	return out
}

// CheckSite fails with an error wrapping ErrNoSite unless site is one of the
// tenant's sites (Sites): credentials that belong to a site are issued only
// for the tenant's own.
func (s *Store) CheckSite(tenant, site string) error {
	t, err := s.Tenant(tenant)
	if err != nil {
		return err
	}
	if slices.Contains(t.Sites(), site) {
		return nil
	}
	sites := "none yet"
	if ss := t.Sites(); len(ss) > 0 {
		sites = strings.Join(ss, ", ")
	}
	return fmt.Errorf("site %q: %w of tenant %s (its sites: %s); add it with 'meshmon site add %s --tenant %s'", site, ErrNoSite, tenant, sites, site, tenant)
}

func tenantDir(name string) string { return filepath.Join(tenantsDir, name) }

// CreateTenant creates the tenant's account with its limits. It fails with
// an error wrapping meshmon.ErrInvalidName for a bad name, ErrExists when
// the tenant exists.
func (s *Store) CreateTenant(name string, lim Limits) (Tenant, error) {
	if err := meshmon.ValidateName("tenant", name); err != nil {
		return Tenant{}, err
	}
	if slices.Contains(ReservedTenants, name) {
		return Tenant{}, fmt.Errorf("tenant %q: %w: %v are meshmon's own accounts and domains; choose another", name, ErrReservedName, ReservedTenants)
	}
	if err := lim.Validate(); err != nil {
		return Tenant{}, err
	}
	if _, err := os.Stat(filepath.Join(s.dir, tenantDir(name))); err == nil {
		return Tenant{}, fmt.Errorf("tenant %s: %w", name, ErrExists)
	}
	if err := os.MkdirAll(filepath.Join(s.dir, tenantsDir), 0o700); err != nil {
		return Tenant{}, fmt.Errorf("tenant %s: %w", name, err)
	}
	if _, err := s.newAccount(tenantDir(name), name, &lim); err != nil {
		os.RemoveAll(filepath.Join(s.dir, tenantDir(name)))
		return Tenant{}, err
	}
	return s.Tenant(name)
}

// SetLimits changes the tenant's limits; push the returned tenant's JWT to
// the peers (Push) for them to apply it.
func (s *Store) SetLimits(name string, lim Limits) (Tenant, error) {
	if err := lim.Validate(); err != nil {
		return Tenant{}, err
	}
	ac, _, err := s.tenantAccount(name)
	if err != nil {
		return Tenant{}, err
	}
	lim.apply(ac)
	if err := s.saveAccount(tenantDir(name), ac); err != nil {
		return Tenant{}, err
	}
	return s.Tenant(name)
}

// Tenant returns the tenant. It fails with an error wrapping ErrNoTenant
// when there is none of that name.
func (s *Store) Tenant(name string) (Tenant, error) {
	ac, tok, err := s.tenantAccount(name)
	if err != nil {
		return Tenant{}, err
	}
	us, err := s.users(tenantDir(name))
	if err != nil {
		return Tenant{}, err
	}
	if us == nil {
		us = []User{}
	}
	for i := range us {
		us[i].Revoked = ac.Revocations.IsRevoked(us[i].PublicKey, time.Unix(us[i].Issued.Unix(), 0))
	}
	fi, err := os.Stat(filepath.Join(s.dir, tenantDir(name), accountKey))
	if err != nil {
		return Tenant{}, fmt.Errorf("tenant %s: %w", name, err)
	}
	return Tenant{Name: name, Account: ac.Subject, Limits: limitsOf(ac), Created: fi.ModTime().UTC(), Users: us, JWT: tok}, nil
}

func (s *Store) tenantAccount(name string) (*jwt.AccountClaims, string, error) {
	if err := meshmon.ValidateName("tenant", name); err != nil {
		return nil, "", err
	}
	if _, err := os.Stat(filepath.Join(s.dir, tenantDir(name), accountJWT)); errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("tenant %s: %w", name, ErrNoTenant)
	}
	return s.account(tenantDir(name))
}

// Tenants returns every tenant, sorted by name.
func (s *Store) Tenants() ([]Tenant, error) {
	names, err := s.tenantNames()
	if err != nil {
		return nil, err
	}
	out := []Tenant{}
	for _, n := range names {
		t, err := s.Tenant(n)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// tenantNames lists the tenants' names, sorted (os.ReadDir sorts).
func (s *Store) tenantNames() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, tenantsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tenants: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// RemoveTenant deletes the tenant's keys from the store; remove its account
// from the peers first (Unpush), while the store can still sign that.
func (s *Store) RemoveTenant(name string) error {
	if _, _, err := s.tenantAccount(name); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(s.dir, tenantDir(name))); err != nil {
		return fmt.Errorf("remove tenant %s: %w", name, err)
	}
	return nil
}

// Trust is what a peer needs to trust the store's operator: the operator's
// JWT, the system account's public key, and the JWTs of the system and ops
// accounts to preload (tenants' come through the resolver at run time).
type Trust struct {
	Operator      string            `json:"operator"`
	SystemAccount string            `json:"system_account"`
	Preload       map[string]string `json:"preload"` // account public key -> JWT
}

// Trust returns what a peer needs to trust this store's operator. It holds
// no private key.
func (s *Store) Trust() (Trust, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, operatorJWT))
	if err != nil {
		return Trust{}, fmt.Errorf("trust: %w", err)
	}
	oc, err := jwt.DecodeOperatorClaims(string(b))
	if err != nil {
		return Trust{}, fmt.Errorf("trust: %w", err)
	}
	t := Trust{Operator: string(b), SystemAccount: oc.SystemAccount, Preload: map[string]string{}}
	for _, sub := range []string{systemDir, opsDir} {
		ac, tok, err := s.account(sub)
		if err != nil {
			return Trust{}, err
		}
		t.Preload[ac.Subject] = tok
	}
	return t, nil
}

package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/backoff"
	"github.com/meshmon/meshmon/tenancy"
)

// Dialers connect to central as the system account (System) and as a
// tenant's admin (Admin), with in-memory credentials, when a change of a
// tenant must reach central: commands that change only the key store
// connect to nothing.
type Dialers struct {
	System Dialer
	Admin  Dialer
}

// SystemConn connects to central as the store's system account, with a
// credential valid for a minute. The caller closes the connection.
func (d Dialers) SystemConn(st *tenancy.Store) (*nats.Conn, error) {
	creds, err := st.SystemCreds(time.Minute)
	if err != nil {
		return nil, err
	}
	return d.System(creds)
}

// AdminJS connects to central as a short-lived admin of tenant, to
// JetStream in the hub domain. The caller closes the connection.
func AdminJS(st *tenancy.Store, dial Dialer, tenant string) (*nats.Conn, jetstream.JetStream, error) {
	creds, err := st.AdminCreds(tenant, 5*time.Minute)
	if err != nil {
		return nil, nil, err
	}
	nc, err := dial(creds)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to central as tenant %s: %w", tenant, err)
	}
	js, err := jetstream.NewWithDomain(nc, bus.HubDomain)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// PushTenant pushes t's account JWT to central's resolver, as the system
// account, and records it in the tenant's bucket at central, as its
// admin, where its sites follow it. The first push of a tenant signed by a
// release before, since signed again, pushes the ops account too, without
// its imports of the tenant's events and tasks (the tenant's JWT imports
// them now; tenancy.OpsAccount).
func PushTenant(ctx context.Context, st *tenancy.Store, d Dialers, t tenancy.Tenant) error {
	sysCreds, err := st.SystemCreds(time.Minute)
	if err != nil {
		return err
	}
	sys, err := d.System(sysCreds)
	if err != nil {
		return fmt.Errorf("connect to central as the system account: %w", err)
	}
	err = tenancy.Push(ctx, sys, t.JWT)
	if err == nil {
		err = pushOpsAfter(ctx, st, sys, t)
	}
	sys.Close()
	if err != nil {
		return err
	}
	nc, js, err := AdminJS(st, d.Admin, t.Name)
	if err != nil {
		return err
	}
	defer nc.Close()
	// Right after a push the account's JetStream may answer nothing for
	// a moment: TestPollerScope failed once so in CI ("no responders",
	// the bucket write right after a revocation, while central applied
	// the JWT and then again without the sites' poller keys,
	// peer/centralclaims.go; which of the two left no responder was not
	// read in nats-server's code). Asked again, as MakeStreams does.
	b := backoff.New(100*time.Millisecond, 2*time.Second)
	for {
		err := bus.PutAccountJWT(ctx, js, t.JWT, 1)
		if err == nil {
			return nil
		}
		if !accountSettling(err) || !b.Wait(ctx) {
			return fmt.Errorf("central has it, but the tenant's sites will not see it until this runs again: %w", err)
		}
	}
}

// pushOpsAfter pushes the ops account over sys when its JWT still imports
// the events of t, whose JWT pushed just before imports them itself
// (pushOps).
func pushOpsAfter(ctx context.Context, st *tenancy.Store, sys *nats.Conn, t tenancy.Tenant) error {
	if err := pushOps(ctx, st, sys); err != nil {
		return fmt.Errorf("%w (without its imports of tenant %s's events: the tenant's account imports them now)", err, t.Name)
	}
	return nil
}

// SetLimits changes the tenant's limits in st and pushes them to central
// (PushTenant). When the push fails the key store keeps the new limits and
// the error says to run again.
func SetLimits(ctx context.Context, st *tenancy.Store, d Dialers, tenant string, lim tenancy.Limits) (tenancy.Tenant, error) {
	t, err := st.SetLimits(tenant, lim)
	if err != nil {
		return t, err
	}
	if err := PushTenant(ctx, st, d, t); err != nil {
		return t, fmt.Errorf("%w (the key store has the new limits; run the command again to push them)", err)
	}
	return t, nil
}

// Revoke revokes the tenant's user and pushes the tenant's account: central
// refuses the user's credentials from then on, the tenant's sites once they
// follow the change.
func Revoke(ctx context.Context, st *tenancy.Store, d Dialers, tenant, user string) error {
	t, err := st.RevokeUser(tenant, user)
	if err != nil {
		return err
	}
	if err := PushTenant(ctx, st, d, t); err != nil {
		return fmt.Errorf("%w (the key store has the revocation; run the command again to push it)", err)
	}
	return nil
}

// UserName is the name of a user issued without one: its role, and its
// site if it has one ("poller-paris").
func UserName(role tenancy.Role, site string) string {
	return strings.Trim(string(role)+"-"+site, "-")
}

// IssueCreds issues the tenant's user (UserName when user is "") with role,
// of site for a poller or leaf user, and returns it with its credentials.
// A poller or leaf user is issued only for one of the tenant's sites (one
// 'site add' made; a review issued a leaf user for a site never added,
// which made it one); a site added
// before its pollers had a signing key of their own gets it first, pushed
// to central (PushTenant) before the credential is issued, as it works only
// once central and the sites have it. Only that push connects to central.
func IssueCreds(ctx context.Context, st *tenancy.Store, d Dialers, tenant, user string, role tenancy.Role, site string) (tenancy.User, []byte, error) {
	if user == "" {
		user = UserName(role, site)
	}
	if role == tenancy.RoleLeaf {
		// Only for a site 'site add' made: a leaf user would make one
		// (tenancy.Tenant.Sites) that central does not source, and its
		// pollers would be issued credentials.
		if err := st.CheckSite(tenant, site); err != nil {
			return tenancy.User{}, nil, err
		}
	}
	if role == tenancy.RolePoller {
		if err := st.CheckSite(tenant, site); err != nil {
			return tenancy.User{}, nil, err
		}
		t, added, err := st.EnsurePollerKey(tenant, site)
		if err != nil {
			return tenancy.User{}, nil, err
		}
		if added {
			if err := PushTenant(ctx, st, d, t); err != nil {
				return tenancy.User{}, nil, fmt.Errorf("the tenant's account with the key of site %s's pollers: %w (the key store has the key; 'meshmon tenant limits %s' pushes the account again)", site, err, tenant)
			}
		}
	}
	return st.IssueUser(tenant, user, role, site)
}

// SiteJoin gives a site that central sources for the tenant (bus.AddSite)
// what its site peer needs: the signing key of the site's pollers, scoped
// to the site, in the tenant's account, pushed to central and the
// tenant's sites (every time, so that a push that failed once is made
// again) before any poller of the site is issued; and the site's users
// (tenancy.Store.IssueSite).
func SiteJoin(ctx context.Context, st *tenancy.Store, d Dialers, tenant, site string) (tenancy.SiteBundle, error) {
	t, _, err := st.EnsurePollerKey(tenant, site)
	if err != nil {
		return tenancy.SiteBundle{}, err
	}
	if err := PushTenant(ctx, st, d, t); err != nil {
		return tenancy.SiteBundle{}, fmt.Errorf("the tenant's account with the key of site %s's pollers: %w", site, err)
	}
	return st.IssueSite(tenant, site)
}

// TenantUsage reads what the tenant uses at central (ReadUsage) as its
// admin, over a connection from dial.
func TenantUsage(ctx context.Context, st *tenancy.Store, dial Dialer, tenant string) (Usage, error) {
	nc, js, err := AdminJS(st, dial, tenant)
	if err != nil {
		return Usage{}, err
	}
	defer nc.Close()
	return ReadUsage(ctx, js)
}

// SiteJoinInfo is SiteJoin as the join info of the site's token: the
// site dials central's leaf URLs, and verifies central against ca (PEM;
// none when empty).
func SiteJoinInfo(ctx context.Context, st *tenancy.Store, d Dialers, tenant, site string, central []string, ca []byte) (bus.JoinInfo, error) {
	b, err := SiteJoin(ctx, st, d, tenant, site)
	if err != nil {
		return bus.JoinInfo{}, err
	}
	return bus.JoinInfo{Tenant: tenant, Central: central, Creds: string(b.LeafCreds),
		Operator: b.Trust.Operator, SystemAccount: b.Trust.SystemAccount, Preload: b.Trust.Preload,
		Account: b.Account, AccountJWT: b.AccountJWT, UpkeepCreds: string(b.UpkeepCreds), CA: string(ca)}, nil
}

// AddSite adds site to tenant at central: central sources it (as the
// tenant's admin), and the site's leaf user is issued into the join info
// of its token (SiteJoinInfo), which dials central's leaf URLs and
// verifies central against ca (PEM; none when empty). A site central
// sources already fails with an error wrapping bus.ErrSiteExists unless
// existOK, which issues its token again.
func AddSite(ctx context.Context, st *tenancy.Store, d Dialers, tenant, site string, central []string, ca []byte, existOK bool) (bus.JoinInfo, error) {
	for _, u := range central {
		if !strings.Contains(u, "://") {
			return bus.JoinInfo{}, fmt.Errorf("central's leaf URL %q: give a URL, nats-leaf://host:port", u)
		}
	}
	if _, err := st.Tenant(tenant); err != nil {
		return bus.JoinInfo{}, err
	}
	nc, js, err := AdminJS(st, d.Admin, tenant)
	if err != nil {
		return bus.JoinInfo{}, err
	}
	err = bus.AddSite(ctx, js, site, time.Now())
	nc.Close()
	if err != nil && !(existOK && errors.Is(err, bus.ErrSiteExists)) {
		return bus.JoinInfo{}, err
	}
	return SiteJoinInfo(ctx, st, d, tenant, site, central, ca)
}

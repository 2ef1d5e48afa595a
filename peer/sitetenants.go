package peer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/backoff"
	"github.com/meshmon/meshmon/tenancy"
)

// A site in operator mode serves one tenant or several (an ISP's point of
// presence): each tenant is its own account at the site as at central,
// with the limits of the tenant's account JWT, its own streams and its own
// leaf link to the tenant's account at central. Clients, pollers included,
// authenticate with the tenant's credentials (meshmon tenant creds), so a
// poller's credential publishes only its site's subjects of its tenant.
// The account JWTs come in the join tokens and are resolved from memory:
// a change of a tenant's limits or revocations reaches the site when it
// is started again with a new token.

// SiteTenant is one tenant a site in operator mode serves.
type SiteTenant struct {
	Name        string `json:"name"`
	Account     string `json:"account"`      // the account's public key
	AccountJWT  string `json:"account_jwt"`  // with the tenant's limits
	LeafCreds   string `json:"leaf_creds"`   // the site's leaf user
	UpkeepCreds string `json:"upkeep_creds"` // the peer's own user, for its streams

	// local is what the site adds to the account on its own (localAccount);
	// set when the peer starts.
	local *localAccount
}

// A site refuses, as clients, the two users its join token carries: the
// leaf user authenticates the site's link at central and has no business
// at the site, and the upkeep user was the peer's own. Revoking them at
// central could never reach the site: central drops the link the moment
// the leaf user is revoked, before the site can read the tenant's new
// account JWT over it, so a site went on accepting both, revoked or not,
// to anyone holding the token. Instead the site adds to each tenant's
// account claims it applies (never to the JWT it keeps or shows; the
// claims are not signed again) the revocation of both users, and a
// signing key of its own, made at each start and held only in memory,
// with which the peer signs the user of its own in-process connections,
// allowed in-process connections only. Revoking a site's users at central
// then refuses them at central, as before; at the site they are refused
// from the start.

//
// A poller credential is signed with a signing key of the account scoped
// to its site (tenancy.EnsurePollerKey), and the same account JWT is in
// force at central and at every site. The site also drops from the claims
// it applies every other site's poller key (role
// tenancy.PollerScopeRole of another site): a poller credential of
// another site is refused at connect here ("Authorization Violation"), and
// one connected when its key is dropped is disconnected. Central drops
// every site's key (keepCentralClaims). Poller credentials signed before
// their site had a key (with the account's own signing key) stay valid
// everywhere until re-issued.

// localAccount is a site's own additions to a tenant's account claims.
type localAccount struct {
	site    string        // the site's name: its pollers' key is kept
	sk      nkeys.KeyPair // the site's signing key in the account
	skPub   string
	revoked []string // the join token's users' public keys
}

// newLocalAccount makes site's additions for t.
func newLocalAccount(t SiteTenant, site string) (*localAccount, error) {
	sk, err := nkeys.CreateAccount()
	if err != nil {
		return nil, fmt.Errorf("tenant %s: site signing key: %w", t.Name, err)
	}
	pub, _ := sk.PublicKey()
	l := &localAccount{site: site, sk: sk, skPub: pub}
	for what, creds := range map[string]string{"leaf": t.LeafCreds, "upkeep": t.UpkeepCreds} {
		tok, err := jwt.ParseDecoratedJWT([]byte(creds))
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %s credentials: %w", t.Name, what, err)
		}
		uc, err := jwt.DecodeUserClaims(tok)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %s credentials: %w", t.Name, what, err)
		}
		l.revoked = append(l.revoked, uc.Subject)
	}
	return l, nil
}

// claims returns ac with the site's additions: its signing key, the
// token's users revoked (every JWT of theirs issued up to now), and
// without the other sites' poller keys, and without imports: a tenant's
// are of the ops account's view (tenancy.importOps), which is central's;
// the tenant's messages reach it over the leaf link.
func (l *localAccount) claims(ac *jwt.AccountClaims, now time.Time) *jwt.AccountClaims {
	out := *ac
	out.Imports = nil
	out.SigningKeys = jwt.SigningKeys{}
	for k, scope := range ac.SigningKeys {
		if otherSitePoller(scope, l.site) {
			continue
		}
		out.SigningKeys[k] = scope
	}
	out.SigningKeys.Add(l.skPub)
	out.Revocations = jwt.RevocationList{}
	for k, at := range ac.Revocations {
		out.Revocations[k] = at
	}
	for _, pub := range l.revoked {
		if at, ok := out.Revocations[pub]; !ok || at < now.Unix() {
			out.Revocations.Revoke(pub, now)
		}
	}
	return &out
}

// otherSitePoller reports whether scope is the poller key of a site other
// than site.
func otherSitePoller(scope jwt.Scope, site string) bool {
	us, ok := scope.(*jwt.UserScope)
	return ok && strings.HasPrefix(us.Role, tenancy.PollerScopePrefix) && us.Role != tenancy.PollerScopeRole(site)
}

// userJWT signs a user of the account for the peer's own in-process
// connection, and returns it with its key.
func (l *localAccount) userJWT(account, name string) (string, nkeys.KeyPair, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", nil, err
	}
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	uc.IssuerAccount = account
	uc.AllowedConnectionTypes.Add(jwt.ConnectionTypeInProcess)
	tok, err := uc.Encode(l.sk)
	if err != nil {
		return "", nil, err
	}
	return tok, kp, nil
}

// applyLocal puts t's account claims in force at srv with the site's
// additions: tok is the account JWT, checked already.
func applyLocal(srv *server.Server, t SiteTenant, tok string) error {
	ac, err := jwt.DecodeAccountClaims(tok)
	if err != nil {
		return fmt.Errorf("tenant %s: account JWT: %w", t.Name, err)
	}
	acc, err := srv.LookupAccount(t.Account)
	if err != nil {
		return fmt.Errorf("tenant %s: %w", t.Name, err)
	}
	if t.local != nil {
		ac = t.local.claims(ac, time.Now())
	}
	srv.UpdateAccountClaims(acc, ac)
	return nil
}

// operatorMode reports whether the peer trusts an operator (central with
// Trust, or a site with Tenants) rather than its own users.
func (c Config) operatorMode() bool { return c.Trust != "" || len(c.Tenants) > 0 }

// validateTenants checks a site's tenants (validateSite).
func (c Config) validateTenants() error {
	switch {
	case c.SiteTrust == nil || c.SiteTrust.Operator == "" || c.SiteTrust.SystemAccount == "":
		return errors.New("tenants without the operator's trust; use the join token 'meshmon site add --tenant' printed")
	case len(c.Central) == 0:
		return errors.New("tenants without central's URLs; use the join token 'meshmon site add --tenant' printed")
	case !c.Auth.None():
		return errors.New("auth is set with tenants: clients use the tenants' credentials; drop --auth-user, --auth-password and --auth-nkey")
	case c.LeafPassword != "":
		return errors.New("a leaf password or credential is set with tenants: each tenant's join token carries its own")
	}
	seen := map[string]bool{}
	for _, t := range c.Tenants {
		if err := meshmon.ValidateName("tenant", t.Name); err != nil {
			return err
		}
		if seen[t.Name] {
			return fmt.Errorf("tenant %s is given twice", t.Name)
		}
		seen[t.Name] = true
		ac, err := jwt.DecodeAccountClaims(t.AccountJWT)
		if err != nil || ac.Subject != t.Account {
			return fmt.Errorf("tenant %s: the account JWT is damaged or not the tenant's; use the join token again", t.Name)
		}
		for what, creds := range map[string]string{"leaf": t.LeafCreds, "upkeep": t.UpkeepCreds} {
			if _, err := leafSigner(creds); err != nil {
				return fmt.Errorf("tenant %s: %s credentials: %w", t.Name, what, err)
			}
		}
	}
	return nil
}

// siteOperatorOptions trusts the operator and preloads the system account
// and every tenant's account into a memory resolver.
func (c Config) siteOperatorOptions(o *server.Options) error {
	t := c.SiteTrust
	var b strings.Builder
	fmt.Fprintf(&b, "operator: %s\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n", strconv.Quote(t.Operator), strconv.Quote(t.SystemAccount))
	for pub, tok := range t.Preload {
		fmt.Fprintf(&b, "  %s: %s\n", pub, strconv.Quote(tok))
	}
	for _, tn := range c.Tenants {
		if _, dup := t.Preload[tn.Account]; !dup {
			fmt.Fprintf(&b, "  %s: %s\n", tn.Account, strconv.Quote(tn.AccountJWT))
		}
	}
	b.WriteString("}\n")
	if err := o.ProcessConfigString(b.String()); err != nil {
		return fmt.Errorf("site tenants: %w", err)
	}
	return nil
}

// tenantRemotes are the site's leaf links, one per tenant, each bound to
// the tenant's account here and authenticated as its leaf user there.
func (c Config) tenantRemotes() ([]*server.RemoteLeafOpts, error) {
	urls := make([]*url.URL, 0, len(c.Central))
	for _, s := range c.Central {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("central %q: %w", s, err)
		}
		urls = append(urls, u)
	}
	var out []*server.RemoteLeafOpts
	for _, t := range c.Tenants {
		sign, err := leafSigner(t.LeafCreds)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: leaf credentials: %w", t.Name, err)
		}
		out = append(out, &server.RemoteLeafOpts{
			URLs:                    slices.Clone(urls),
			DialTimeout:             c.leafDialTimeout(),
			LocalAccount:            t.Account,
			SignatureCB:             sign,
			DenyImports:             leafDenyImports,
			DenyExports:             leafDenyExports,
			IgnoreDiscoveredServers: true,
		})
	}
	return out, nil
}

// tenantLimits sizes a tenant's site streams: no size of their own, so
// the tenant's disk limit bounds them and a tenant over it gets publish
// errors, while other tenants go on.
func (c Config) tenantLimits() bus.StreamLimits {
	l := c.Limits
	l.EventsMaxBytes, l.MetricsMaxBytes = -1, -1
	return l
}

// applyTenants registers every tenant's account and puts its claims, with
// the site's own additions, in force. It runs before the server starts
// (role.apply): the accounts are there before any leaf link or client
// could look them up.
func (p *Peer) applyTenants(srv *server.Server) error {
	for _, t := range p.cfg.Tenants {
		if err := applyLocal(srv, t, t.AccountJWT); err != nil {
			return err
		}
	}
	return nil
}

// maintainTenants is the upkeep of a site cluster member in operator mode,
// until ctx is done: it makes every tenant's streams, buckets and source
// consumers once the cluster has a JetStream quorum (three replicas in a
// cluster of three or more, as Config.Replicas says), trying again every
// second, then closes streamsReady; then, as maintain does in default
// mode, it raises each tenant's streams to three replicas once three
// members are up (a cluster grown from fewer), never lowers them.
func (p *Peer) maintainTenants(ctx context.Context) {
	if !p.ensureTenantsUntilDone(ctx) {
		return
	}
	srv := p.Server()
	conns := make([]*nats.Conn, len(p.cfg.Tenants))
	defer func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	}()
	var lastErr string
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i, tn := range p.cfg.Tenants {
			if conns[i] == nil {
				nc, err := tn.upkeepConn(srv, p.cfg.Site, "meshmon-peer-scale-"+tn.Name)
				if err != nil {
					continue
				}
				conns[i] = nc
			}
			js, err := jetstream.New(conns[i])
			if err != nil {
				continue
			}
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = p.scale(actx, js)
			cancel()
			if err != nil && ctx.Err() == nil && err.Error() != lastErr {
				lastErr = err.Error()
				p.log.Warn("scale streams", "tenant", tn.Name, "err", err)
			}
		}
	}
}

// ensureTenantsUntilDone makes every tenant's streams (see maintainTenants) and
// closes streamsReady; it reports false when ctx ended first.
func (p *Peer) ensureTenantsUntilDone(ctx context.Context) bool {
	srv := p.Server()
	done := make([]bool, len(p.cfg.Tenants))
	var lastErr string
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		left := 0
		for i, tn := range p.cfg.Tenants {
			if done[i] {
				continue
			}
			ectx, cancel := context.WithTimeout(ctx, ensureTimeout)
			err := p.ensureTenant(ectx, srv, tn)
			cancel()
			switch {
			case err == nil:
				done[i] = true
			case ctx.Err() == nil && err.Error() != lastErr:
				lastErr = err.Error()
				left++
				p.log.Info("peer streams not ready yet (waiting for a JetStream quorum?)", "tenant", tn.Name, "err", err)
			default:
				left++
			}
		}
		if left == 0 {
			close(p.streamsReady)
			p.log.Info("peer streams ready", "name", p.cfg.Name, "domain", p.cfg.Domain())
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// upkeepConn connects to srv in process as the peer's own user in the
// tenant's account (localAccount; the token's upkeep user when the site
// made none). It reads replies on the upkeep user's inbox prefix: the only
// one the site's leaf user takes from central (tenancy, RoleLeaf), so the
// tenant follower's reads at central get their answers.
func (t SiteTenant) upkeepConn(srv *server.Server, site, name string) (*nats.Conn, error) {
	var auth nats.Option
	opts := []nats.Option{nats.InProcessServer(srv), nats.Name(name)}
	if t.local != nil {
		tok, kp, err := t.local.userJWT(t.Account, name)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: in-process user: %w", t.Name, err)
		}
		auth = nats.UserJWT(func() (string, error) { return tok, nil }, kp.Sign)
		opts = append(opts, nats.CustomInboxPrefix(tenancy.InboxPrefix(tenancy.SiteUpkeepUser(site))))
	} else {
		var err error
		if auth, err = tenancy.CredsOption([]byte(t.UpkeepCreds)); err != nil {
			return nil, err
		}
	}
	nc, err := nats.Connect("", append(opts, auth)...)
	if err != nil {
		return nil, fmt.Errorf("in-process connection to tenant %s: %w", t.Name, err)
	}
	return nc, nil
}

func (p *Peer) ensureTenant(ctx context.Context, srv *server.Server, t SiteTenant) error {
	nc, err := t.upkeepConn(srv, p.cfg.Site, "meshmon-peer-"+t.Name)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// JetStream comes to an account a moment after the server is ready.
	if err := bus.WaitJetStream(ctx, js); err != nil {
		return fmt.Errorf("%w: %w", ErrNotReady, err)
	}
	if err := bus.EnsureStreams(ctx, js, p.cfg.tenantLimits()); err != nil {
		return err
	}
	return bus.EnsureSourceConsumers(ctx, js, p.cfg.Site)
}

// followTenants keeps each tenant's account at the site as central has it:
// it watches the tenant's account JWT in the tenant's bucket at central
// (over the tenant's leaf link) and applies every newer one, so a changed
// limit or a revoked credential takes effect here at run time.
func (p *Peer) followTenants(ctx context.Context) {
	op, err := jwt.DecodeOperatorClaims(p.cfg.SiteTrust.Operator)
	if err != nil {
		p.log.Error("tenant accounts will not follow central: the operator JWT", "err", err)
		return
	}
	var wg sync.WaitGroup
	for _, t := range p.cfg.Tenants {
		f := &accountFollower{p: p, t: t, op: op, cur: t.AccountJWT}
		if ac, err := jwt.DecodeAccountClaims(t.AccountJWT); err == nil {
			f.iat = ac.IssuedAt
		}
		wg.Go(func() { f.run(ctx) })
	}
	wg.Wait()
}

// accountFollower follows one tenant's account JWT.
type accountFollower struct {
	p   *Peer
	t   SiteTenant
	op  *jwt.OperatorClaims
	iat int64  // issue time of the JWT in force
	cur string // the JWT in force
}

func (f *accountFollower) run(ctx context.Context) {
	const first, most = time.Second, 30 * time.Second
	b := backoff.New(first, most)
	for ctx.Err() == nil {
		began := time.Now()
		err := f.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > most {
			b.Reset() // it followed a while: a failure after that starts afresh
		}
		f.p.log.Debug("following the tenant's account at central; again shortly", "tenant", f.t.Name, "err", err)
		b.Wait(ctx)
	}
}

// followPoll is how often a site reads its tenant's account JWT at
// central: how long a revocation or a change of limits takes to reach it.
const followPoll = 3 * time.Second

// follow reads the account JWT every followPoll, by a direct get, until
// its connection closes. Not a watch: a watch is a consumer on central's
// tenant bucket, and a site's link that may make consumers there may make
// any (any name, any deliver subject, up to the account's limit, which
// then no other site's watch could use: a review did so), so a site's
// credentials may only read the bucket's messages.
func (f *accountFollower) follow(ctx context.Context) error {
	srv := f.p.Server()
	if srv == nil {
		return ErrNotStarted
	}
	nc, err := f.t.upkeepConn(srv, f.p.cfg.Site, "meshmon-peer-follow-"+f.t.Name)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, bus.HubDomain)
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, bus.TenantBucket)
	if err != nil {
		return err
	}
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	for {
		if e, err := kv.Get(ctx, bus.TenantAccountKey); err == nil {
			f.apply(string(e.Value()))
		} else if nc.IsClosed() {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// apply puts a newer account JWT of the tenant in force, if the operator
// signed it, and keeps it in the data dir for the peer's next start.
func (f *accountFollower) apply(tok string) {
	ac, err := checkAccountJWT(f.op, f.t.Account, tok)
	switch {
	case err != nil:
		f.p.log.Warn("tenant account at central ignored", "tenant", f.t.Name, "err", err)
		return
	case tok == f.cur || ac.IssuedAt < f.iat:
		return // the one in force, or older (times are whole seconds)
	}
	srv := f.p.Server()
	if srv == nil {
		return
	}
	if r := srv.AccountResolver(); r != nil {
		_ = r.Store(f.t.Account, tok)
	}
	if err := applyLocal(srv, f.t, tok); err != nil {
		f.p.log.Warn("tenant account update", "tenant", f.t.Name, "err", err)
		return
	}
	f.iat, f.cur = ac.IssuedAt, tok
	if err := f.p.cfg.keepFollowed(f.t.Account, tok); err != nil {
		f.p.log.Warn("tenant account update: keep it for the next start", "tenant", f.t.Name, "err", err)
	}
	f.p.log.Info("tenant account updated from central", "tenant", f.t.Name, "revocations", len(ac.Revocations),
		"disk", meshmon.FormatSize(ac.Limits.JetStreamLimits.DiskStorage))
}

// checkAccountJWT decodes tok and checks that it is the account's, signed
// by the operator (or one of its signing keys).
func checkAccountJWT(op *jwt.OperatorClaims, account, tok string) (*jwt.AccountClaims, error) {
	ac, err := jwt.DecodeAccountClaims(tok)
	switch {
	case err != nil:
		return nil, fmt.Errorf("not an account JWT: %w", err)
	case ac.Subject != account:
		return nil, fmt.Errorf("account %s's JWT, not %s's", ac.Subject, account)
	case ac.Issuer != op.Subject && !op.SigningKeys.Contains(ac.Issuer):
		return nil, errors.New("not signed by the operator")
	}
	return ac, nil
}

// followedPath is where a site peer keeps the newest JWT of an account it
// followed from central (followTenants).
func (c Config) followedPath(account string) string {
	return filepath.Join(c.DataDir, "tenants", account+".jwt")
}

// keepFollowed writes the account's JWT to followedPath, whole or not at
// all.
func (c Config) keepFollowed(account, tok string) error {
	path := c.followedPath(account)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return tenancy.WriteFile(path, []byte(tok))
}

// withFollowed is c's tenants, each with the newer of its join token's
// account JWT and the one the peer last followed from central: a site that
// restarts while central is out of reach keeps the limits and revocations it
// had, not those of its token.
//
// Each tenant also gets the site's own additions to its account
// (localAccount), made anew at each start.
func (c Config) withFollowed(log *slog.Logger) []SiteTenant {
	out := slices.Clone(c.Tenants)
	for i, t := range out {
		l, err := newLocalAccount(t, c.Site)
		if err != nil {
			log.Error("the join token's users and the other sites' pollers stay usable at this site", "tenant", t.Name, "err", err)
			continue
		}
		out[i].local = l
	}
	if c.SiteTrust == nil {
		return out
	}
	op, err := jwt.DecodeOperatorClaims(c.SiteTrust.Operator)
	if err != nil {
		return out
	}
	for i, t := range out {
		b, err := os.ReadFile(c.followedPath(t.Account))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		var kept *jwt.AccountClaims
		if err == nil {
			kept, err = checkAccountJWT(op, t.Account, string(b))
		}
		if err != nil {
			log.Warn("tenant account kept from central ignored; the join token's is used", "tenant", t.Name, "err", err)
			continue
		}
		if token, err := jwt.DecodeAccountClaims(t.AccountJWT); err != nil || kept.IssuedAt >= token.IssuedAt {
			out[i].AccountJWT = string(b)
		}
	}
	return out
}

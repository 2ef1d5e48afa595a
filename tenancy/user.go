package tenancy

import (
	"fmt"
	"os"
	"path/filepath"
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
	// RoleAdmin manages the tenant's devices, maintenance, alarms,
	// notifications and tasks, and reads and purges its streams; it does
	// not publish events, nor make or change a stream's configuration.
	RoleAdmin Role = "admin"
	// RoleLeaf is a site peer's leaf link to central.
	RoleLeaf Role = "leaf"
	// RoleSite is a site peer's own upkeep user (site-<site>): its
	// streams and source consumers, at its site only. IssueSite issues
	// it, with the site's leaf user.
	RoleSite Role = "site"
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

// Role permissions. Every user JWT is valid at central and at every site
// of its tenant (the account is the same), so a permission is written for
// both: what a role may do must be harmless at the other end too. A
// poller's are the template of its site's scoped key (EnsurePollerKey),
// which the other sites drop: it is valid at central and its own site
// only.
//
// JetStream API subjects come in three forms: $JS.API.<op> (the server the
// client is on), $JS.<domain>.API.<op> (a named domain: hub, or a site,
// reached over the leaf links; a server maps its own domain's to $JS.API
// before it checks permissions, so a permission on $JS.API.<op> covers
// both at the server the client is on) and, for consumers, the ack and
// flow-control replies $JS.ACK.<stream>.<consumer>.… and
// $JS.FC.<stream>.<consumer>.… (nats-server's v1 formats, the ones it
// uses unless its js_ack_fc_v2 feature flag is set).

// InboxPrefix is the prefix of the reply subjects of the tenant's user
// called name: each user subscribes to its own replies only, so no user
// sees another's (an admin's replies carry device secrets). Clients
// connect with nats.CustomInboxPrefix(InboxPrefix(name)); with the stock
// nats CLI, --inbox-prefix _INBOX.<name>.
func InboxPrefix(name string) string { return "_INBOX." + name }

// LeafMaxSubs bounds the subscriptions a site's leaf link holds at
// central.
const LeafMaxSubs = 10000

// ConsumerSlots is how many consumers a NOC user may keep on each stream.
const ConsumerSlots = 4

// ConsumerNames are the names a NOC user called name may give its
// consumers: name, name-1, ... name-(ConsumerSlots-1). A consumer name is
// one subject token, and a permission matches whole tokens only, so the
// names are a fixed set: no other user's consumer can be created,
// updated, read from or deleted with them.
func ConsumerNames(name string) []string {
	out := []string{name}
	for i := 1; i < ConsumerSlots; i++ {
		out = append(out, fmt.Sprintf("%s-%d", name, i))
	}
	return out
}

// The mesh's own consumers: central sources each site's streams through
// them (bus.SourceConsumer), and fetches again what it lost through the
// second of each (bus.RefetchConsumer). Only the site's upkeep user makes
// them.
var sourceConsumers = [][2]string{
	{"EVENTS", "central-events"}, {"METRICS", "central-metrics"},
	{"EVENTS", "central-events-refetch"}, {"METRICS", "central-metrics-refetch"},
}

// sourceDeliverPrefix begins the subjects the source consumers deliver on
// (bus.SourceDeliverPrefix; TestSourceNames keeps them equal).
const sourceDeliverPrefix = "meshmon.source."

// siteStreams are a site's streams and buckets, which the site's upkeep
// user makes.
var siteStreams = []string{"EVENTS", "METRICS", "KV_devices", "KV_pollers", "KV_group"}

// pollerStreams are the streams and buckets whose consumers a poller may
// make: its site's events (the last states it reads back) and the
// buckets it watches.
var pollerStreams = []string{"EVENTS", "KV_devices", "KV_pollers", "KV_group"}

// secretStream holds the devices with their SNMP secrets.
const secretStream = "KV_devices"

// notifySecretStream holds the notification channels' secrets at central
// (notifybus.SecretsBucket): admins and the runner only.
const notifySecretStream = "KV_notify_secrets"

// denyRead is what reads a stream's messages: direct and stream gets, and
// consumers of it. Not its info, which status reads of every stream (with
// a subjects filter it lists a bucket's keys: the devices' names, which
// their events carry too, never a secret).
func denyRead(stream string) []string {
	return api([]string{"$JS.API."}, "STREAM.MSG.GET."+stream, "DIRECT.GET."+stream, "DIRECT.GET."+stream+".>",
		"CONSUMER.*."+stream+".>", "CONSUMER.*.*."+stream+".>")
}

// apiPrefixes are the JetStream API prefixes of the local server and of
// any named domain.
var apiPrefixes = []string{"$JS.API.", "$JS.*.API."}

// api lists each op under each prefix.
func api(prefixes []string, ops ...string) []string {
	var out []string
	for _, p := range prefixes {
		for _, op := range ops {
			out = append(out, p+op)
		}
	}
	return out
}

// streamConfigOps make or change a stream's configuration (a bucket's
// too): its re-publish, sources and subject transforms among it.
var streamConfigOps = []string{"STREAM.CREATE.>", "STREAM.UPDATE.>", "STREAM.RESTORE.>", "STREAM.TEMPLATE.>"}

// The alarm processor's buckets (alarm.Bucket, alarmbus.ProcessorBucket;
// TestAlarmBucketNames keeps them equal).
const (
	alarmsBucket          = "alarms"
	alarmsProcessorBucket = "alarms_processor"
)

// readOps read any stream's info and messages without a consumer.
var readOps = []string{"INFO", "STREAM.NAMES", "STREAM.LIST", "STREAM.INFO.*", "STREAM.MSG.GET.*", "DIRECT.GET.*", "DIRECT.GET.*.>"}

// A user JWT travels in the client's CONNECT line, which a server takes up
// to 4 KiB long: the permissions use wildcards and denials rather than
// long lists (TestPermissionsFitConnect).

// permissions returns what the tenant's user called name, of role, may
// publish and subscribe to; site is a poller's, leaf's or site upkeep
// user's site.
func permissions(role Role, name, site string) (pub, sub jwt.Permission, resp *jwt.ResponsePermission) {
	switch role {
	case RolePoller:
		// At its site: its subjects, its site's buckets, and its own
		// consumers on the streams (bucket watches, the last states it
		// reads back from EVENTS), through the server it is on only.
		// Its site's task requests (ctl.<site>.<realm>.<user>.<verb>,
		// five tokens: not the replies) and its site's task replies
		// (bus.TaskServer).
		sub.Allow.Add(InboxPrefix(name)+".>", taskRequests(site))
		pub.Allow.Add("ev."+site+".>", "mx."+site+".>", taskReplies(site))
		// Not the mesh's source consumers' acks and flow control: an
		// empty reply there would clear a request central has yet to
		// answer, or make the site's keeper prompt its consumers.
		for _, sc := range sourceConsumers {
			pub.Deny.Add("$JS.ACK."+sc[0]+"."+sc[1]+".>", "$JS.FC."+sc[0]+"."+sc[1]+".>",
				"$JS.ACK.*.*."+sc[0]+"."+sc[1]+".>", "$JS.FC.*.*."+sc[0]+"."+sc[1]+".>")
		}
		// Its group's presence probes (bus.PresenceSubject): it answers
		// on its own subject only, so no credential answers for a dead
		// poller, and asks its site's members.
		sub.Allow.Add(presenceSubject(site, name))
		pub.Allow.Add(presenceSubject(site, "*"))
		resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
		// Its own heartbeat and its site's group keys only (poller_perms.go).
		pub.Allow.Add(pollerKVPublish(site, name)...)
		pub.Allow.Add(api([]string{"$JS.API."}, readOps...)...)
		// Consumers, named in the request subject (the 5-token
		// CONSUMER.CREATE.<stream> takes the name from the request's
		// body), on its site's streams and buckets only, and their acks
		// and flow control: the names are nats.go's own (ordered
		// consumers, bucket watches), so a name cannot bound them, and
		// a poller credential signed before its site had a key (with
		// the account's own) connects at central too, where any other
		// stream's consumers would be within reach: the notifications'
		// on ALARMS, a NOC's.
		for _, s := range pollerStreams {
			pub.Allow.Add(api([]string{"$JS.API."}, "CONSUMER.*."+s+".*", "CONSUMER.*."+s+".*.>", "CONSUMER.MSG.NEXT."+s+".*")...)
			pub.Allow.Add("$JS.ACK."+s+".>", "$JS.FC."+s+".>")
		}
		// Never the notification secrets (central).
		pub.Deny.Add(denyRead(notifySecretStream)...)
		// Never the mesh's source consumers.
		for _, sc := range sourceConsumers {
			sc := sc[0] + "." + sc[1]
			pub.Deny.Add("$JS.API.CONSUMER.*."+sc, "$JS.API.CONSUMER.*."+sc+".>", "$JS.API.CONSUMER.*.*."+sc,
				"$JS.ACK."+sc+".>", "$JS.FC."+sc+".>")
		}
	case RoleNOC:
		// Reads and replays, on the server it is connected to (each name
		// costs the JWT room, TestPermissionsFitConnect): stream info and
		// messages, and consumers of its own names only (ConsumerNames),
		// on any stream but the devices bucket's.
		// Live: the stored feed only (bus.StoredPrefix), never the raw
		// subjects, where a poller's credential used at central could
		// publish what no stream stores.
		sub.Allow.Add(InboxPrefix(name)+".>", "stored.ev.>", "stored.mx.>")
		pub.Allow.Add(api([]string{"$JS.API."}, readOps...)...)
		for _, c := range ConsumerNames(name) {
			// CREATE, INFO, DELETE ... .<stream>.c; CREATE.<stream>.c.<filter>;
			// MSG.NEXT.<stream>.c. Not CONSUMER.*.*.*.c: that is also
			// CREATE.<stream>.<any name>.c, a consumer of any name with
			// the filter c (nats-server takes the name from the subject
			// and wants the body's filter to be the last token).
			pub.Allow.Add("$JS.API.CONSUMER.*.*."+c, "$JS.API.CONSUMER.CREATE.*."+c+".>", "$JS.API.CONSUMER.MSG.NEXT.*."+c, "$JS.ACK.*."+c+".>")
		}
		// Alarm actions as itself only (the processor takes the user
		// from the subject): ack, unack, comment; never clear (one
		// wildcard and one denial: each subject naming the user costs
		// the JWT room).
		pub.Allow.Add(alarmActions(name, "*")...)
		pub.Deny.Add(alarmActions("*", "clear")...)
		pub.Deny.Add(denyRead(secretStream)...)
		pub.Deny.Add(denyRead(notifySecretStream)...)
	case RoleAdmin:
		pub.Allow.Add("$JS.API.>", "$JS.*.API.>", "$KV.>", "$JS.FC.>", "$JS.ACK.>", "meshmon.>")
		pub.Allow.Add(taskRequestsBy(name))       // tasks at any site, as itself
		pub.Allow.Add(alarmActions(name, ">")...) // every action, as itself
		pub.Deny.Add("ev.>", "mx.>")
		// No stream's or bucket's configuration: one may re-publish what
		// it stores on any subject of the account (and sources and
		// subject transforms move it), which the server does as itself,
		// checking no user's permissions: a task request as another
		// user, an alarm action as another, an event at a site. The
		// peers and the key store's own user make the streams
		// (AdminCreds).
		pub.Deny.Add(api(apiPrefixes, streamConfigOps...)...)
		// Nor the alarms' state, which only the processor writes: an
		// alarm acknowledged "by" another user.
		pub.Deny.Add("$KV."+alarmsBucket+".>", "$KV."+alarmsProcessorBucket+".>")
		sub.Allow.Add(">")
		// Nor the mesh's source consumers' deliveries, acks and flow
		// control: a heartbeat published on a delivery subject makes
		// central's source take a gap and ask the site again, a
		// subscription to one makes the consumer deliver while
		// central's request is out (a gap again), and an answer to a
		// flow-control request acknowledges what central may not hold.
		pub.Deny.Add(sourceDeliverPrefix + ">")
		sub.Deny.Add(sourceDeliverPrefix + ">")
		for _, sc := range sourceConsumers {
			pub.Deny.Add("$JS.ACK."+sc[0]+"."+sc[1]+".>", "$JS.FC."+sc[0]+"."+sc[1]+".>",
				"$JS.ACK.*.*."+sc[0]+"."+sc[1]+".>", "$JS.FC.*.*."+sc[0]+"."+sc[1]+".>")
		}
	case RoleSite:
		// A site peer's own upkeep, in process only (IssueUser): its
		// streams, buckets and source consumers; the keeper on the
		// source consumers' delivery subjects, their flow-control
		// replies (to prompt a consumer whose stall central answered) and
		// the answers to central's resets of them; the
		// site-cluster beacon; the site's link state for status
		// (bus.LinkStateSubject, answered to whoever asks); and the
		// tenant's account JWT in central's tenant bucket.
		sub.Allow.Add(InboxPrefix(name)+".>", sourceDeliverPrefix+site+".>", "meshmon.link."+site, "meshmon.link."+site+".state")
		resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
		pub.Allow.Add(InboxPrefix(name)+".>", "meshmon.link."+site)
		// A request to $JS.<site>.API is checked after the server maps
		// it to $JS.API.
		local := []string{"$JS.API."}
		pub.Allow.Add(api(local, "INFO")...)
		for _, s := range siteStreams {
			pub.Allow.Add(api(local, "STREAM.CREATE."+s, "STREAM.UPDATE."+s, "STREAM.INFO."+s)...)
		}
		for _, sc := range sourceConsumers {
			s, c := sc[0], sc[1]
			pub.Allow.Add(api(local, "CONSUMER.CREATE."+s+"."+c, "CONSUMER.INFO."+s+"."+c, "CONSUMER.LEADER.STEPDOWN."+s+"."+c)...)
			pub.Allow.Add("$JS.FC."+s+"."+c+".>", "$JS.FC."+site+".*."+s+"."+c+".>")
			// The site's answers to central's sources' requests for the
			// consumer (a reset done: the keeper answers the flow-control
			// request the consumer had out).
			sub.Allow.Add("$JS.FC."+s+"."+c+".*", "$JSC.R."+site+".*."+s+"."+c+".*")
		}
		pub.Allow.Add(hubTenantOps("$JS.hub.API.")...)
	case RoleLeaf:
		// From central's side: what the site's link may send into the
		// tenant's account there (pub) and take from it (sub). Only its
		// own source consumers' deliveries, replies to central's
		// requests, and the upkeep user's reading of the tenant bucket.
		upkeep := "site-" + site
		// Central's sourcing requests to the site carry replies
		// $JSC.R.<site>.<account hash>.<stream>.<consumer>.<id> (the
		// central peer's js_api_reply_v2, peer.baseOptions): the site
		// may answer its own sources' requests only.
		pub.Allow.Add(sourceDeliverPrefix+site+".>", "$JSC.R."+site+".>", "$JS.hub.API.INFO", taskReplies(site))
		pub.Allow.Add(hubTenantOps("$JS.hub.API.", "$JS.API.")...)
		sub.Allow.Add("$JS."+site+".API.>", InboxPrefix(upkeep)+".>", taskRequests(site))
		for _, sc := range sourceConsumers {
			s, c := sc[0], sc[1]
			sub.Allow.Add("$JS.FC."+s+"."+c+".>", "$JS.FC."+site+".*."+s+"."+c+".>", "$JS.ACK."+s+"."+c+".>",
				"$JS.ACK."+site+".*."+s+"."+c+".>")
		}
		resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
	}
	return pub, sub, resp
}

// presenceSubject is bus.PresenceSubject: where a poller answers its
// group's presence probes.
func presenceSubject(site, poller string) string { return "meshmon.group." + site + ".alive." + poller }

// taskRequests are a site's task requests,
// ctl.<site>.<realm>.<user>.<verb> (meshmon.TaskSubject), and taskReplies
// their replies, ctl.<site>.reply.<id> (meshmon.TaskReplySubject): admins
// send the requests from central, the site's link carries them to the
// site and only its replies back, and its pollers take the one and send
// the other. taskRequestsBy are the requests a tenant user called name
// may send: at any site, as itself only (the site takes the requester
// from the subject, so a user cannot claim to be another).
func taskRequests(site string) string { return "ctl." + site + ".*.*.*" }
func taskReplies(site string) string  { return "ctl." + site + ".reply.>" }
func taskRequestsBy(name string) string {
	return "ctl.*." + meshmon.TaskRealmTenant + "." + name + ".*"
}

// alarmActions are the subjects of the alarm actions (verbs, or ">") the
// user called name may request: alarmop.<name>.<verb> (alarmbus.ActionSubject;
// tenancy cannot import it, TestAlarmActionSubject keeps them equal).
func alarmActions(name string, verbs ...string) []string {
	out := make([]string, len(verbs))
	for i, v := range verbs {
		out[i] = "alarmop." + name + "." + v
	}
	return out
}

// hubTenantOps are the requests that read the tenant bucket at central (a
// site follows its tenant's account JWT there, reading it every few
// seconds). No consumer: a site that could make one on the bucket could
// make any (any name, any deliver subject), up to the account's limit.
func hubTenantOps(prefixes ...string) []string {
	const s = "KV_tenant"
	return api(prefixes, "STREAM.INFO."+s, "STREAM.MSG.GET."+s, "DIRECT.GET."+s, "DIRECT.GET."+s+".>")
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
	if !slices.Contains(Roles, role) && role != RoleSite {
		return User{}, nil, fmt.Errorf("role %q: use one of %v", role, Roles)
	}
	if err := checkReserved(name, role, site); err != nil {
		return User{}, nil, err
	}
	switch {
	case role == RolePoller || role == RoleLeaf || role == RoleSite:
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
	for _, u := range us {
		if !u.Revoked && shareConsumerNames(name, u.Name) {
			return User{}, nil, fmt.Errorf("user %q: its consumer names (%s) would be user %s's too, who could then read, take over and remove its consumers; choose another name",
				name, strings.Join(ConsumerNames(name), ", "), u.Name)
		}
	}
	// A poller is signed with its site's scoped key (EnsurePollerKey),
	// which carries its permissions: its JWT carries none of its own.
	key := signingKey
	if role == RolePoller {
		if _, _, err := s.EnsurePollerKey(tenant, site); err != nil {
			return User{}, nil, err
		}
		key = pollerKeyFile(site)
	}
	issued := s.now().Truncate(time.Second)
	pub, creds, err := s.signUser(tenantDir(tenant), key, name, 0, func(uc *jwt.UserClaims) {
		uc.Tags.Add("meshmon-tenant:" + tenant)
		uc.Tags.Add("meshmon-role:" + string(role))
		if site != "" {
			uc.Tags.Add("meshmon-site:" + site)
		}
		if role == RolePoller {
			// No permissions or limits of its own, not even
			// NewUserClaims' "no limit": the server refuses a scoped
			// user with any (jwt.UserScope.ValidateScopedSigner).
			uc.UserPermissionLimits = jwt.UserPermissionLimits{}
		} else {
			uc.Pub, uc.Sub, uc.Resp = permissions(role, name, site)
		}
		switch role {
		case RoleSite:
			// Only the site peer's own in-process connection: the
			// credential is refused over the network, at central and
			// at any site.
			uc.AllowedConnectionTypes.Add(jwt.ConnectionTypeInProcess)
		case RoleLeaf:
			// Only a leaf link: refused to a client. And a bound on
			// the subscriptions it holds at central: its permissions
			// refuse any literal subject but its own, not wildcards,
			// and every subscription costs every central peer memory
			// (a link holds tens).
			uc.AllowedConnectionTypes.Add(jwt.ConnectionTypeLeafnode)
			uc.Limits.Subs = LeafMaxSubs
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
	return s.accountCreds(tenantDir(tenant), cliUser, ttl, func(uc *jwt.UserClaims) {
		uc.Tags.Add("meshmon-tenant:" + tenant)
		uc.Tags.Add("meshmon-role:" + string(RoleAdmin))
		uc.Pub, uc.Sub, uc.Resp = permissions(RoleAdmin, cliUser, "")
		// An admin's, and it makes and changes the streams.
		config := api(apiPrefixes, streamConfigOps...)
		uc.Pub.Deny = slices.DeleteFunc(uc.Pub.Deny, func(d string) bool { return slices.Contains(config, d) })
	})
}

func (s *Store) accountCreds(sub, name string, ttl time.Duration, f func(*jwt.UserClaims)) ([]byte, error) {
	_, creds, err := s.signUser(sub, signingKey, name, ttl, f)
	return creds, err
}

// signUser makes a user of the account in sub, signed with the account's
// signing key in the file key of sub, valid for ttl (0: no expiry), with
// f's claims, and returns its public key and credentials.
func (s *Store) signUser(sub, key, name string, ttl time.Duration, f func(*jwt.UserClaims)) (string, []byte, error) {
	ac, _, err := s.account(sub)
	if err != nil {
		return "", nil, err
	}
	sk, err := s.readKey(filepath.Join(sub, key))
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

// The CLI's own users in a tenant's account, short-lived and not
// recorded.
const (
	cliUser    = "meshmon-cli"
	readerUser = "meshmon-cli-reader"
)

// AdminCredsUser is the name of the user AdminCreds issues: the CLI's
// short-lived admin (--tenant with --keys) acts as it.
const AdminCredsUser = cliUser

// checkReserved refuses a user name that would share another user's
// reply subjects (InboxPrefix) or consumer names (ConsumerNames): the
// CLI's own users' (meshmon-...), the mesh's source consumers'
// (central-...), and a site's leaf and upkeep users' for any other role
// or site.
func checkReserved(name string, role Role, site string) error {
	switch {
	case strings.HasPrefix(name, "meshmon-"):
		return fmt.Errorf("user %q: names beginning with meshmon- are the CLI's own; choose another", name)
	case strings.HasPrefix(name, "central-"):
		return fmt.Errorf("user %q: names beginning with central- are the mesh's source consumers'; choose another", name)
	case strings.HasPrefix(name, "leaf-") && !(role == RoleLeaf && name == "leaf-"+site),
		strings.HasPrefix(name, "site-") && !(role == RoleSite && name == "site-"+site):
		return fmt.Errorf("user %q: names beginning with leaf- and site- are the sites' own users; choose another", name)
	}
	for _, c := range meshConsumers {
		if slices.Contains(ConsumerNames(name), c) {
			return fmt.Errorf("user %q: %s is the name of meshmon's own consumer at central; choose another", name, c)
		}
	}
	return nil
}

// meshConsumers are the names of meshmon's own durable consumers at
// central, besides the source consumers (central-...): the notification
// runner's on ALARMS (notifybus.Consumer; tenancy cannot import it).
var meshConsumers = []string{"notify"}

// shareConsumerNames reports whether users a and b would have a consumer
// name in common (ConsumerNames: alice-1 is both user alice-1's first
// name and user alice's second).
func shareConsumerNames(a, b string) bool {
	for _, n := range ConsumerNames(a) {
		if slices.Contains(ConsumerNames(b), n) {
			return true
		}
	}
	return false
}

// Identity is whom a user credential of meshmon's speaks for, read from its
// user JWT's tags.
type Identity struct {
	User   string
	Tenant string // empty for credentials issued before tenants were tagged
	Role   Role
	Site   string // for poller and leaf users
}

// CredsFileRole is the role of the meshmon tenant user whose .creds file
// is at path; empty when there is no such file or it holds no meshmon
// tenant user.
func CredsFileRole(path string) Role {
	id, _ := CredsFileIdentity(path)
	return id.Role
}

// CredsFileIdentity is the identity of the user in the .creds file at path
// (CredsIdentity).
func CredsFileIdentity(path string) (Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Identity{}, err
	}
	return CredsIdentity(b)
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

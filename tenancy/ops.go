package tenancy

import (
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/meshmon/meshmon"
)

// The ops (MSP operator) account's consolidated view. A tenant's events
// (stored.ev.>, as central's EVENTS republishes them) and the ops realm
// of its tasks reach the ops account through imports in the TENANT's
// account JWT, from three exports of the ops account that serve every
// tenant:
//
//   - the events, a service import of tenants.<tenant>.ev.> with
//     stored.ev.> as its local subject: what the tenant's stream
//     republishes there goes on to the ops account as well;
//   - the task requests of ops users, a stream import of
//     tenants.<tenant>.ctl.<site>.ops.<user>.<verb> as ctl.<site>.ops...;
//   - their replies, a service import of tenants.<tenant>.ctl.<site>.reply.ops.>
//     with ctl.<site>.reply.ops.> as its local subject.
//
// So the ops account's JWT grows by one import a tenant, not four (issue
// 19: with four it passed NATS's 1 MB message size at about 1,100
// tenants). That one is the replay of a tenant's EVENTS stream
// (opsExportedAPI): a JetStream API request must come from the account
// that imports the API.
//
// Imports carry live traffic only; a replay reads the tenants' streams.
// The raw ev.> is not imported: at central only a client publishes there
// (a poller's credential used at central), and what it publishes is
// stored nowhere.
//
// The exports need no activation token, and the service exports'
// wildcard lets any account import any tenant's slice: only the key store
// signs account JWTs, so no account imports what the operator did not sign
// into it, and it signs into each tenant's account that tenant's slice
// only (importOps). A site strips the imports from the claims it applies
// (peer/sitetenants.go): the ops view is central's.

// OpsSubject is where the ops account sees a tenant's events.
func OpsSubject(tenant string) string { return "tenants." + tenant + ".ev.>" }

// exportedEvents is the subject a tenant's events reach the ops account
// from (the local subject of its import), and the subject of the stream
// export of a tenant signed before the imports were turned around.
const exportedEvents = "stored.ev.>"

// The ops account's exports, one of each for every tenant.
const (
	opsExportedEvents       = "tenants.*.ev.>"              // a service: the tenants' events
	opsExportedTaskRequests = "tenants.*.ctl.*.ops.*.*"     // a stream: ops users' task requests
	opsExportedTaskReplies  = "tenants.*.ctl.*.reply.ops.>" // a service: their replies
)

// exportOps sets the ops account's exports.
func exportOps(ac *jwt.AccountClaims) {
	ac.Exports = jwt.Exports{
		{Name: "meshmon ops view", Subject: opsExportedEvents, Type: jwt.Service},
		{Name: "meshmon ops tasks", Subject: opsExportedTaskRequests, Type: jwt.Stream},
		{Name: "meshmon ops task replies", Subject: opsExportedTaskReplies, Type: jwt.Service},
	}
}

// importOps are the tenant's imports of its slice of the ops account's
// exports; opsKey is the ops account's public key.
func importOps(tenant, opsKey string) jwt.Imports {
	p := meshmon.TaskOpsPrefix(tenant)
	return jwt.Imports{
		{Name: "meshmon ops view", Subject: jwt.Subject(OpsSubject(tenant)), Account: opsKey, Type: jwt.Service,
			LocalSubject: exportedEvents},
		{Name: "meshmon ops tasks", Subject: jwt.Subject(p + "ctl.*.ops.*.*"), Account: opsKey, Type: jwt.Stream,
			LocalSubject: "ctl.$1.ops.$2.$3"},
		{Name: "meshmon ops task replies", Subject: jwt.Subject(p + "ctl.*.reply.ops.>"), Account: opsKey, Type: jwt.Service,
			LocalSubject: "ctl.$1.reply.ops.>"},
	}
}

// signTenant sets what every tenant's account JWT carries for the ops
// account: its imports of the ops view and the ops realm's tasks
// (importOps) in place of any earlier, and the export of its JetStream API
// for the ops account's replays, in place of the exports of a tenant
// signed before (its stored events, its raw ev.>, its tasks).
func signTenant(ac *jwt.AccountClaims, tenant, opsKey string) {
	var ex jwt.Exports
	for _, e := range ac.Exports {
		if s := string(e.Subject); !slices.Contains(exportsBefore, s) && !strings.HasPrefix(s, "$JS.API.") {
			ex = append(ex, e)
		}
	}
	// A pull's deliveries answer one request with many messages.
	ac.Exports = append(ex, &jwt.Export{Name: "meshmon ops replay", Subject: opsExportedAPI, Type: jwt.Service, ResponseType: jwt.ResponseTypeStream})
	var im jwt.Imports
	for _, i := range ac.Imports {
		if i.Account != opsKey {
			im = append(im, i)
		}
	}
	ac.Imports = append(im, importOps(tenant, opsKey)...)
}

// importsOps reports whether the tenant's claims import the ops view from
// the ops account (opsKey), as every tenant signed by this release does.
func importsOps(ac *jwt.AccountClaims, opsKey string) bool {
	for _, i := range ac.Imports {
		if i.Account == opsKey && i.Type == jwt.Service && string(i.LocalSubject) == exportedEvents {
			return true
		}
	}
	return false
}

// The ops account's replay of a tenant's events: the tenant exports its
// JetStream API ($JS.API.>) as a service and the ops account imports it
// under OpsAPIPrefix(tenant), where a client reads it with
// jetstream.NewWithAPIPrefix. One import per tenant, not one per request,
// keeps the ops account's JWT, pushed on every create, within NATS's
// message size for about 4,800 tenants (docs/tenancy.md). What an ops
// user may request through it is fenced by its permissions (OpsCreds):
// the requests of a replay of EVENTS (opsReplayAPI), on consumers of its
// own names, and nothing else; no other stream, no stream delete or
// update, no tenant user's consumer. Only the key store signs ops users,
// as it signs the accounts.
const opsExportedAPI = "$JS.API.>"

// opsReplayAPI are the JetStream API requests (after $JS.API.) of a replay
// of EVENTS by the ops user called user: stream info, a message get, and
// making, pulling from and removing a consumer of its own names
// (OpsConsumerNames), never another's.
func opsReplayAPI(user string) []string {
	out := []string{"STREAM.INFO.EVENTS", "STREAM.MSG.GET.EVENTS"}
	for _, n := range OpsConsumerNames(user) {
		out = append(out, "CONSUMER.CREATE.EVENTS."+n, "CONSUMER.CREATE.EVENTS."+n+".>", "CONSUMER.MSG.NEXT.EVENTS."+n,
			"CONSUMER.DELETE.EVENTS."+n)
	}
	return out
}

// OpsAPIPrefix is the JetStream API prefix under which the ops account
// reads the tenant's EVENTS stream (replays only).
func OpsAPIPrefix(tenant string) string { return "tenants." + tenant + ".js.API" }

// OpsTenant is the tenant whose JetStream API an ops account's import
// with localSubject (as its account JWT lists it) reaches, and whether it
// is one.
func OpsTenant(localSubject string) (string, bool) {
	rest, ok := strings.CutPrefix(localSubject, "tenants.")
	if !ok {
		return "", false
	}
	tenant, api, ok := strings.Cut(rest, ".")
	return tenant, ok && api == "js.API.>"
}

// The exports of the ops realm of its tasks of a tenant signed before the
// imports were turned around (the ops account imported them under
// tenants.<tenant>., importsBefore): the requests, as a service, and
// their replies, as a stream.
const (
	exportedTaskRequests = "ctl.*.ops.*.*"
	exportedTaskReplies  = "ctl.*.reply.ops.>"
)

// exportsBefore are the exports for the ops account of a tenant signed
// before (its raw ev.> by a release before that), which signTenant drops.
var exportsBefore = []string{"ev.>", exportedEvents, exportedTaskRequests, exportedTaskReplies}

// importsBefore are the ops account's imports of the events and the tasks
// of a tenant signed before the imports were turned around (whose
// account key is key), kept so that its ops view works until the tenant
// is signed again (any change of it: PushTenant then pushes the ops
// account without them).
func importsBefore(tenant, key string) []*jwt.Import {
	p := meshmon.TaskOpsPrefix(tenant)
	return []*jwt.Import{
		{Name: tenant, Subject: exportedEvents, Account: key, LocalSubject: jwt.RenamingSubject(OpsSubject(tenant)), Type: jwt.Stream},
		{Subject: exportedTaskRequests, Account: key, Type: jwt.Service,
			LocalSubject: jwt.RenamingSubject(p + "ctl.$1.ops.$2.$3")},
		{Subject: exportedTaskReplies, Account: key, Type: jwt.Stream,
			LocalSubject: jwt.RenamingSubject(p + "ctl.$1.reply.ops.>")},
	}
}

// OpsAccount signs the ops account's JWT again: its exports, and its
// imports of every tenant's replay API (and of the events and tasks of a
// tenant signed before the imports were turned around); push it after a
// tenant is created or removed.
func (s *Store) OpsAccount() (string, error) {
	ac, _, err := s.account(opsDir)
	if err != nil {
		return "", err
	}
	names, err := s.tenantNames()
	if err != nil {
		return "", err
	}
	ac.Imports = nil
	for _, n := range names {
		tc, _, err := s.account(tenantDir(n)) // its key only: no users or stat
		if err != nil {
			return "", err
		}
		if !importsOps(tc, ac.Subject) {
			ac.Imports.Add(importsBefore(n, tc.Subject)...)
		}
		ac.Imports.Add(&jwt.Import{Subject: opsExportedAPI, Account: tc.Subject,
			LocalSubject: jwt.RenamingSubject(OpsAPIPrefix(n) + ".>"), Type: jwt.Service})
	}
	if err := s.saveAccount(opsDir, ac); err != nil {
		return "", err
	}
	_, tok, err := s.account(opsDir)
	return tok, err
}

// OpsImportsBefore reports whether the ops account's JWT in the store
// imports the events of the tenant whose account key is account the way of
// a release before (the tenant's JWT, signed since, imports them from the
// ops account instead): push the ops account again (OpsAccount) after the
// tenant, or the ops view gets the tenant's events twice.
func (s *Store) OpsImportsBefore(account string) (bool, error) {
	ac, _, err := s.account(opsDir)
	if err != nil {
		return false, err
	}
	for _, i := range ac.Imports {
		if i.Account == account && i.Type == jwt.Stream {
			return true, nil
		}
	}
	return false, nil
}

// OpsCreds issues credentials of a user of the ops account that reads the
// consolidated view (tenants.>), replays the tenants' EVENTS streams
// through the ops account's imports (OpsAPIPrefix), and runs tasks at any
// tenant's sites as itself (tenants.<tenant>.ctl.<site>.ops.<name>.<verb>);
// it publishes nothing else. Valid for ttl (0: no expiry). It reads every
// ops user's task replies (tenants.<tenant>.ctl.<site>.reply.ops.>), none
// of a tenant's own users'.
func (s *Store) OpsCreds(name string, ttl time.Duration) ([]byte, error) {
	if err := meshmon.ValidateName("user", name); err != nil {
		return nil, err
	}
	return s.accountCreds(opsDir, name, ttl, func(uc *jwt.UserClaims) {
		uc.Tags.Add("meshmon-role:" + string(RoleOps))
		uc.Sub.Allow.Add("tenants.>", "_INBOX.>")
		uc.Pub.Allow.Add("tenants.*.ctl.*." + meshmon.TaskRealmOps + "." + name + ".*")
		// The replay's requests only, on consumers of its own names.
		for _, api := range opsReplayAPI(name) {
			uc.Pub.Allow.Add(OpsAPIPrefix("*") + "." + api)
		}
	})
}

// RoleOps is the role of a user of the ops account (OpsCreds): not a
// tenant's.
const RoleOps Role = "ops"

// ReaderCreds issues credentials of a NOC user of the tenant that is not
// recorded (the CLI's own, for reading the tenant's streams), valid for ttl.
func (s *Store) ReaderCreds(tenant string, ttl time.Duration) ([]byte, error) {
	if _, _, err := s.tenantAccount(tenant); err != nil {
		return nil, err
	}
	return s.accountCreds(tenantDir(tenant), readerUser, ttl, func(uc *jwt.UserClaims) {
		uc.Tags.Add("meshmon-tenant:" + tenant)
		uc.Tags.Add("meshmon-role:" + string(RoleNOC))
		uc.Pub, uc.Sub, uc.Resp = permissions(RoleNOC, readerUser, "")
	})
}

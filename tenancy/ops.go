package tenancy

import (
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/meshmon/meshmon"
)

// The ops (MSP operator) account's consolidated view: every tenant exports
// the events its streams store (stored.ev.>, as central's EVENTS
// republishes them) and the ops account imports each tenant's under
// tenants.<tenant>.ev.>. Imports carry live traffic only; a replay reads
// the tenants' streams, through the replay API each tenant exports to the
// ops account (opsReplayAPI). The raw ev.> is not exported: at central only a
// client publishes there (a poller's credential used at central), and
// what it publishes is stored nowhere.
//
// The export needs no activation token: only the key store signs account
// JWTs, so no account can import what the operator did not sign into it,
// and an import without a token keeps the ops account's JWT, pushed on
// every create, small (meshmon bench tenants prints its size).

// OpsSubject is where the ops account sees a tenant's events.
func OpsSubject(tenant string) string { return "tenants." + tenant + ".ev.>" }

// exportedEvents is the subject a tenant exports to the ops account.
const exportedEvents = "stored.ev.>"

// The ops account's replay of a tenant's events: the tenant exports its
// JetStream API ($JS.API.>) as a service and the ops account imports it
// under OpsAPIPrefix(tenant), where a client reads it with
// jetstream.NewWithAPIPrefix. One import per tenant, not one per request,
// keeps the ops account's JWT, pushed on every create, within NATS's
// message size for a thousand tenants (docs/tenancy.md). What an ops user
// may request through it is fenced by its permissions (OpsCreds): the
// requests of a replay of EVENTS (opsReplayAPI), on consumers of its own
// names, and nothing else; no other stream, no stream delete or update,
// no tenant user's consumer. Only the key store signs ops users,
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

// exportEvents lets the ops account import the tenant's stored events and
// replay its EVENTS stream; it drops the export of the raw ev.> of
// accounts signed before.
func exportEvents(ac *jwt.AccountClaims) {
	var out jwt.Exports
	for _, e := range ac.Exports {
		if e.Subject != "ev.>" && e.Subject != exportedEvents && !strings.HasPrefix(string(e.Subject), "$JS.API.") {
			out = append(out, e)
		}
	}
	// A pull's deliveries answer one request with many messages.
	ac.Exports = append(out, &jwt.Export{Name: "meshmon events", Subject: exportedEvents, Type: jwt.Stream},
		&jwt.Export{Name: "meshmon ops replay", Subject: opsExportedAPI, Type: jwt.Service, ResponseType: jwt.ResponseTypeStream})
}

// Tasks from the ops account (docs/tasks.md): every tenant exports, as a
// service, the task requests of the ops realm, ctl.<site>.ops.<user>.<verb>,
// and, as a stream, their replies, ctl.<site>.reply.ops.>; the ops
// account imports them under tenants.<tenant>. (meshmon.TaskOpsPrefix).
// An ops user's permissions allow its own name only, so the site records
// who ran the task as ops:<user>.
const (
	exportedTaskRequests = "ctl.*.ops.*.*"
	exportedTaskReplies  = "ctl.*.reply.ops.>"
)

// exportTasks lets the ops account send the tenant the ops realm's task
// requests and read their replies.
func exportTasks(ac *jwt.AccountClaims) {
	for _, e := range ac.Exports {
		if e.Subject == exportedTaskRequests {
			return
		}
	}
	ac.Exports = append(ac.Exports,
		&jwt.Export{Name: "meshmon ops tasks", Subject: exportedTaskRequests, Type: jwt.Service},
		&jwt.Export{Name: "meshmon ops task replies", Subject: exportedTaskReplies, Type: jwt.Stream})
}

// importTasks are the ops account's imports of tenant's tasks, whose
// account key is key.
func importTasks(tenant, key string) []*jwt.Import {
	p := meshmon.TaskOpsPrefix(tenant)
	return []*jwt.Import{
		{Subject: exportedTaskRequests, Account: key, Type: jwt.Service,
			LocalSubject: jwt.RenamingSubject(p + "ctl.$1.ops.$2.$3")},
		{Subject: exportedTaskReplies, Account: key, Type: jwt.Stream,
			LocalSubject: jwt.RenamingSubject(p + "ctl.$1.reply.ops.>")},
	}
}

// OpsAccount signs the ops account's JWT again, importing the events of
// every tenant in the store; push it after a tenant is created or removed.
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
		ac.Imports.Add(&jwt.Import{Name: n, Subject: exportedEvents, Account: tc.Subject,
			LocalSubject: jwt.RenamingSubject(OpsSubject(n)), Type: jwt.Stream})
		ac.Imports.Add(importTasks(n, tc.Subject)...)
		ac.Imports.Add(&jwt.Import{Subject: opsExportedAPI, Account: tc.Subject,
			LocalSubject: jwt.RenamingSubject(OpsAPIPrefix(n) + ".>"), Type: jwt.Service})
	}
	if err := s.saveAccount(opsDir, ac); err != nil {
		return "", err
	}
	_, tok, err := s.account(opsDir)
	return tok, err
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

package tenancy

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
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
// So the ops account's JWT holds no import of a tenant and does not grow
// with the tenants (issue 19: with four imports a tenant it passed NATS's
// 1 MB message size at about 1,100 tenants, and with the one left, of each
// tenant's JetStream API for replays, at about 4,800).
//
// Imports carry live traffic only; a replay reads the tenants' streams,
// which the ops account cannot: the console replays them for an ops
// session through central's own connection in each tenant's account
// (console.Config.Tenants), and `events tail --all-tenants` as a reader of
// each tenant signed from the key store.
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

// exportsOps reports whether ac has the ops account's exports (exportOps),
// in any order.
func exportsOps(ac *jwt.AccountClaims) bool {
	want := &jwt.AccountClaims{}
	exportOps(want)
	key := func(e *jwt.Export) string { return e.Name + " " + string(e.Subject) + " " + e.Type.String() }
	var have, wanted []string
	for _, e := range ac.Exports {
		have = append(have, key(e))
	}
	for _, e := range want.Exports {
		wanted = append(wanted, key(e))
	}
	slices.Sort(have)
	slices.Sort(wanted)
	return slices.Equal(have, wanted)
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
// (importOps) in place of any earlier, and none of the exports of a tenant
// signed before (its stored events, its raw ev.>, its tasks, its
// JetStream API for the ops account's replays).
func signTenant(ac *jwt.AccountClaims, tenant, opsKey string) {
	var ex jwt.Exports
	for _, e := range ac.Exports {
		if s := string(e.Subject); !slices.Contains(exportsBefore, s) && !strings.HasPrefix(s, "$JS.API.") {
			ex = append(ex, e)
		}
	}
	ac.Exports = ex
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

// OpsAccount signs the ops account's JWT again when it changes: its
// exports, and its imports of the events and tasks of each tenant signed
// before the imports were turned around, for as long as it is (no import
// of any other tenant, so that a tenant's create does not change it). It
// returns the JWT and whether it differs from the key store's, without
// saving it: push it to central, then save it (SaveOpsAccount), after a
// tenant is created, removed or signed again. A push that fails is so
// made again by the next.
func (s *Store) OpsAccount() (tok string, changed bool, err error) {
	ac, tok, err := s.account(opsDir)
	if err != nil {
		return "", false, err
	}
	// A tenant signed before: importsBefore, whose import of the events
	// names the tenant.
	keep := map[string]bool{} // account key -> its imports stay
	for _, i := range ac.Imports {
		if i.Type != jwt.Stream || string(i.Subject) != exportedEvents || meshmon.ValidateName("tenant", i.Name) != nil {
			continue // not a tenant's events (a name that is none is no directory of the store either)
		}
		tc, _, err := s.account(tenantDir(i.Name))
		switch {
		case errors.Is(err, fs.ErrNotExist): // removed
		case err != nil:
			return "", false, err
		default:
			keep[i.Account] = tc.Subject == i.Account && !importsOps(tc, ac.Subject)
		}
	}
	var im jwt.Imports
	for _, i := range ac.Imports {
		if keep[i.Account] {
			im = append(im, i)
		}
	}
	if len(im) == len(ac.Imports) && exportsOps(ac) {
		return tok, false, nil
	}
	ac.Imports = im
	tok, err = s.signAccount(opsDir, ac)
	return tok, err == nil, err
}

// SaveOpsAccount keeps the ops account's JWT that OpsAccount signed (and
// central took) in the key store.
func (s *Store) SaveOpsAccount(tok string) error {
	ac, err := jwt.DecodeAccountClaims(tok)
	if err != nil {
		return fmt.Errorf("the ops account's JWT: %w", err)
	}
	cur, _, err := s.account(opsDir)
	if err != nil {
		return err
	}
	if ac.Subject != cur.Subject {
		return fmt.Errorf("the ops account's JWT: it is account %s's, not the ops account's (%s)", ac.Subject, cur.Subject)
	}
	return s.writeFile(filepath.Join(opsDir, accountJWT), []byte(tok))
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
// consolidated view (tenants.*.ev.>) and runs tasks at any tenant's sites
// as itself (tenants.<tenant>.ctl.<site>.ops.<name>.<verb>); it publishes
// nothing else. Valid for ttl (0: no expiry). It reads its own task
// replies (tenants.<tenant>.ctl.<site>.reply.ops.<name>.>) and its own
// inbox only: not another ops user's requests, which may carry discovery
// credentials, nor its replies (before 2026-12-07 it read tenants.> and
// _INBOX.>).
func (s *Store) OpsCreds(name string, ttl time.Duration) ([]byte, error) {
	if err := meshmon.ValidateName("user", name); err != nil {
		return nil, err
	}
	return s.accountCreds(opsDir, name, ttl, func(uc *jwt.UserClaims) {
		uc.Tags.Add("meshmon-role:" + string(RoleOps))
		uc.Sub.Allow.Add(OpsSubject("*"), "tenants.*.ctl.*.reply."+meshmon.TaskRealmOps+"."+name+".>", InboxPrefix(name)+".>")
		uc.Pub.Allow.Add("tenants.*.ctl.*." + meshmon.TaskRealmOps + "." + name + ".*")
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

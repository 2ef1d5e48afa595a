package peer

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/meshmon/meshmon/tenancy"
)

// A poller credential is signed with its site's poller key, a signing key
// of the tenant's account scoped to that site (tenancy.EnsurePollerKey),
// and the same account JWT is in force at central and at every site. Each
// site drops every other site's poller key from the claims it applies
// (localAccount). Central drops them all: no poller belongs at central,
// whose pollers' events come over the sites' links, and a poller
// credential connected there read every site's events through consumers
// of its own on EVENTS and could remove or re-filter a NOC's consumers by
// name.
//
// Central's claims come through its full resolver, which applies every
// new JWT of an account as it arrives (from a push, from another central
// peer, or from the resolver's own sync), poller keys and all, and tells
// nobody. So each central peer watches its resolver (keepCentralClaims):
// when the store's hash changes, it finds the accounts whose JWT changed,
// waits for the server to have applied each, and applies it again,
// edited (centralSigner.put). Between the resolver's application and the
// edit (the watch's look, claimsEvery, and the wait) the sites' poller
// keys are in force; a poller that connects then is closed at the edit
// (nats-server 2.15.3, updateAccountClaimsWithRefresh closes a client
// whose signer is no longer the account's).
//
// The server may apply one JWT more than once at a time (its resolver's
// store and a lookup of the account each apply it while it is not yet
// marked applied), and an application begun before the edit may end after
// it, putting the poller keys back with nothing more to tell. So the edit
// marks the claims (centralEditTag, which the server shows in the
// account's details): put checks that its edit is the one in force, and
// the watch checks every account it edited once every claimsAudit, and
// edits again one whose claims are not its edit (which also catches a
// JWT written over the one before with the same size and time, which the
// look's stat of the file does not tell apart).

const (
	// claimsEvery is how often a central peer looks at its resolver's
	// hash for new account JWTs (or, after a look at the directory,
	// twenty times as long as the look took, when longer: paceAfter).
	claimsEvery = 20 * time.Millisecond
	// appliedWait bounds how long put waits for the server to apply an
	// account's newest JWT itself before editing it.
	appliedWait = 5 * time.Second
	// claimsAudit is how often a central peer checks that the claims in
	// force of every account with a site's poller key are its edit (or
	// twenty times as long as the check took, when longer).
	claimsAudit = 2 * time.Second
	// centralEditTag marks an account's claims as a central peer applies
	// them (edit), so that the edit in force shows (editInForce).
	centralEditTag = "meshmon-central-edit"
)

// edit returns ac as a central peer applies it: with the peer's own
// signing key added, without any site's poller key. ac is not changed.
func (c *centralSigner) edit(ac *jwt.AccountClaims) *jwt.AccountClaims {
	out := *ac
	out.SigningKeys = jwt.SigningKeys{}
	for k, scope := range ac.SigningKeys {
		if pollerKey(scope) {
			continue
		}
		out.SigningKeys[k] = scope
	}
	out.SigningKeys.Add(c.pub)
	out.Tags = append(slices.Clone(ac.Tags), centralEditTag)
	return &out
}

// editInForce reports whether the claims srv applies for account are a
// central peer's edit.
func editInForce(srv *server.Server, account string) bool {
	z, err := srv.Accountz(&server.AccountzOptions{Account: account})
	return err == nil && z.Account != nil && slices.Contains(z.Account.Tags, centralEditTag)
}

// pollerKey reports whether scope is a site's poller key.
func pollerKey(scope jwt.Scope) bool {
	us, ok := scope.(*jwt.UserScope)
	return ok && strings.HasPrefix(us.Role, tenancy.PollerScopePrefix)
}

// hasPollerKey reports whether ac has a site's poller key.
func hasPollerKey(ac *jwt.AccountClaims) bool {
	for _, scope := range ac.SigningKeys {
		if pollerKey(scope) {
			return true
		}
	}
	return false
}

// put applies at srv the claims of the account's JWT in the resolver,
// edited, once the server has applied that JWT itself (an edit applied
// before would be overwritten by it; after it, the resolver applies the
// same JWT no more), and again for a newer JWT stored meanwhile. It
// returns an error when the server does not apply the resolver's JWT
// within appliedWait (a JWT the server refused is not put in force edited
// either).
func (c *centralSigner) put(srv *server.Server, account string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	acc, err := srv.LookupAccount(account) // registers it, as the resolver has it, if it was not
	if err != nil {
		return fmt.Errorf("account %s: %w", account, err)
	}
	res := srv.AccountResolver()
	if res == nil {
		return fmt.Errorf("account %s: no resolver", account)
	}
	deadline := time.Now().Add(appliedWait)
	for {
		tok, err := res.Fetch(account)
		if err != nil {
			return fmt.Errorf("account %s: %w", account, err)
		}
		if appliedJWT(srv, account) == tok {
			ac, err := jwt.DecodeAccountClaims(tok)
			if err != nil {
				return fmt.Errorf("account %s: %w", account, err)
			}
			srv.UpdateAccountClaims(acc, c.edit(ac))
			// A newer JWT stored meanwhile may have been applied before
			// this edit, which then put older claims over it (a
			// revocation lost): edit that one too. An application of
			// the same JWT may have ended after the edit: edit again.
			now, err := res.Fetch(account)
			if err != nil {
				return err
			}
			if now == tok && editInForce(srv, account) {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("account %s: the edit is not in force after %s", account, appliedWait)
			}
			if now == tok {
				time.Sleep(5 * time.Millisecond) // for the application still under way to end
			}
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("account %s: the server has not applied its newest JWT in %s", account, appliedWait)
		}
		time.Sleep(5 * time.Millisecond) // the resolver applies right after it stores
	}
}

// appliedJWT returns the account JWT the server last applied, "" for an
// account it does not have.
func appliedJWT(srv *server.Server, account string) string {
	z, err := srv.Accountz(&server.AccountzOptions{Account: account})
	if err != nil || z.Account == nil {
		return ""
	}
	return z.Account.Jwt
}

// applyCentralClaims edits, before the server starts (role.apply), every
// account in the resolver's directory with a site's poller key, so that
// no poller connects at central's start; keepCentralClaims goes on from
// there. An account it could not edit is logged and tried again by
// keepCentralClaims; it does not stop the peer.
func (p *Peer) applyCentralClaims(srv *server.Server) error {
	signer, err := p.centralSigner()
	if err != nil {
		return err
	}
	res, err := fullResolver(srv)
	if err != nil {
		return err
	}
	w := &claimsWatch{dir: p.cfg.ResolverDir(), files: map[string]claimsFile{}, guarded: map[string][32]byte{}, hash: res.Hash()}
	w.look(func(account string) error { return signer.put(srv, account) }, p.claimsFailed)
	p.claims = w
	return nil
}

// fullResolver returns srv's full resolver, whose store the claims watch
// reads.
func fullResolver(srv *server.Server) (*server.DirAccResolver, error) {
	res, ok := srv.AccountResolver().(*server.DirAccResolver)
	if !ok {
		return nil, fmt.Errorf("central claims: the resolver is %T, not a full resolver", srv.AccountResolver())
	}
	return res, nil
}

// claimsFailed logs an account whose claims could not be edited.
func (p *Peer) claimsFailed(account string, err error) {
	p.log.Warn("central claims: an account keeps its sites' poller keys until the next try", "account", account, "err", err)
}

// keepCentralClaims keeps, until ctx is done, the claims of every account
// with a site's poller key edited at this central peer (centralSigner.put)
// after each change of the resolver's store, from where
// applyCentralClaims left them.
func (p *Peer) keepCentralClaims(ctx context.Context) {
	signer, err := p.centralSigner()
	if err != nil {
		p.log.Error("central claims", "err", err)
		return
	}
	srv, w := p.Server(), p.claims
	res, err := fullResolver(srv)
	if err != nil || w == nil {
		return // applyCentralClaims refused to start the peer
	}
	put := func(account string) error { return signer.put(srv, account) }
	inForce := func(account string) bool { return editInForce(srv, account) }
	again := func(account string, same bool) error {
		if same {
			p.log.Warn("central claims: an account's sites' poller keys were in force again; editing it again", "account", account)
		} else {
			p.log.Info("central claims: an account's new JWT was in force unedited; editing it", "account", account)
		}
		return put(account)
	}
	audited, auditEvery := time.Now(), claimsAudit
	t := time.NewTimer(claimsEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wait := claimsEvery
		if h := res.Hash(); h != w.hash || w.retry {
			w.hash = h
			scan := w.look(put, p.claimsFailed)
			// A look stats every account's file: with thousands of
			// tenants being created, one every claimsEvery would keep
			// a core busy.
			wait = paceAfter(claimsEvery, scan)
		}
		if time.Since(audited) >= auditEvery {
			audited = time.Now()
			auditEvery = paceAfter(claimsAudit, w.audit(inForce, res.Fetch, again, p.claimsFailed))
		}
		t.Reset(wait)
	}
}

// claimsWatch is what keepCentralClaims knows of the resolver's directory.
type claimsWatch struct {
	dir   string
	files map[string]claimsFile // account -> its JWT file when last edited
	hash  [32]byte              // the resolver's store's hash at the last look
	retry bool                  // an edit failed: look again at the next tick
	// guarded are the accounts edited for a site's poller key, which
	// audit checks, each with the hash of the JWT edited.
	guarded map[string][32]byte
}

// audit edits again, with edit, every guarded account whose claims in
// force are not the edit (inForce). edit is told whether the account's
// JWT (stored returns it) is still the one edited: then an application of
// that JWT ended after the edit. Otherwise it is a newer JWT, stored
// since this tick's look (the next look's too, which edits it again), or
// written over the one edited with the same size and time, which a
// look's stat does not tell apart. failed is told of each that could not
// be edited. It returns how long it took.
func (w *claimsWatch) audit(inForce func(account string) bool, stored func(account string) (string, error), edit func(account string, same bool) error, failed func(account string, err error)) time.Duration {
	start := time.Now()
	for account, edited := range w.guarded {
		if inForce(account) {
			continue
		}
		tok, err := stored(account)
		if err != nil {
			continue // removed: the next look forgets it
		}
		sum := sha256.Sum256([]byte(tok))
		if err := edit(account, sum == edited); err != nil {
			failed(account, err) // tried again at the next audit
			continue
		}
		w.guarded[account] = sum
	}
	return time.Since(start)
}

// claimsFile identifies a version of an account's JWT file.
type claimsFile struct {
	mod  time.Time
	size int64
}

// look edits every account whose JWT file changed since the last look and
// holds a site's poller key; failed is told of each that could not be. It
// returns how long it took, its edits left out.
func (w *claimsWatch) look(edit func(account string) error, failed func(account string, err error)) time.Duration {
	start := time.Now()
	var edits time.Duration
	w.retry = false
	entries, err := os.ReadDir(w.dir)
	if err != nil {
		failed("", err)
		w.retry = true
		return time.Since(start)
	}
	listed := make(map[string]bool, len(entries))
	for _, e := range entries {
		account, ok := strings.CutSuffix(e.Name(), ".jwt")
		if !ok || e.IsDir() {
			continue
		}
		listed[account] = true
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		f := claimsFile{mod: info.ModTime(), size: info.Size()}
		if w.files[account] == f {
			continue
		}
		tok, err := os.ReadFile(filepath.Join(w.dir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		var ac *jwt.AccountClaims
		if err == nil {
			ac, err = jwt.DecodeAccountClaims(string(tok))
		}
		guard := err == nil && hasPollerKey(ac)
		if guard {
			at := time.Now()
			err = edit(account)
			edits += time.Since(at)
		}
		if err != nil {
			failed(account, err)
			w.retry = true
			continue
		}
		if guard {
			w.guarded[account] = sha256.Sum256(tok)
		} else {
			delete(w.guarded, account)
		}
		w.files[account] = f
	}
	for account := range w.files {
		if !listed[account] {
			delete(w.files, account) // the account was deleted
			delete(w.guarded, account)
		}
	}
	return time.Since(start) - edits
}

// TenantConn connects in process to a tenant's account at a central peer
// in operator mode, as the peer's own user there (signed with its key:
// every permission in the account), for what acts at central as the peer
// does, tests that publish what a site's link would deliver included (no
// poller credential connects at central). The connection does not
// reconnect; the resolver's next JWT of the account closes it. The caller
// closes it. It returns ErrNotStarted before Start or after Close.
func (p *Peer) TenantConn(account, name string) (*nats.Conn, error) {
	srv := p.Server()
	if srv == nil {
		return nil, ErrNotStarted
	}
	if p.cfg.Trust == "" {
		return nil, errors.New("tenant connection: not a central peer in operator mode")
	}
	signer, err := p.centralSigner()
	if err != nil {
		return nil, err
	}
	return signer.conn(srv, account, name)
}

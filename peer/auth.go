package peer

import (
	"golang.org/x/crypto/bcrypt"

	"errors"
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/nats-io/nuid"
)

// Auth is how clients authenticate to a peer: a user and password, a user
// nkey, or nothing. Tenancy (NATS accounts, operator JWTs) replaces this
// file.
type Auth struct {
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
	NKey     string `json:"nkey,omitempty"` // public user nkey, U...
}

// None reports whether no authentication is configured.
func (a Auth) None() bool { return a.User == "" && a.Password == "" && a.NKey == "" }

func (a Auth) validate() error {
	if a.NKey != "" && (a.User != "" || a.Password != "") {
		return errors.New("auth: nkey and user/password are alternatives; set one")
	}
	if (a.User == "") != (a.Password == "") {
		return errors.New("auth: user and password go together; set both or neither")
	}
	if a.NKey != "" && !nkeys.IsValidPublicUserKey(a.NKey) {
		return fmt.Errorf("auth: nkey %q is not a public user nkey (U...)", a.NKey)
	}
	return nil
}

// internalAuth is the peer's own credentials for in-process connections:
// nkeys generated per start, never written anywhere. kp is the user in the
// tenant account, nil when the peer has no auth (clients without
// credentials land there anyway); sys is the user in the system account,
// through which a central peer removes a member from its cluster (see
// servePeerAdmin).
type internalAuth struct {
	kp, sys     nkeys.KeyPair
	pub, sysPub string
}

func newInternalAuth(a Auth) (*internalAuth, error) {
	in := &internalAuth{}
	var err error
	if in.sys, in.sysPub, err = newUserKey(); err != nil {
		return nil, err
	}
	if !a.None() {
		if in.kp, in.pub, err = newUserKey(); err != nil {
			return nil, err
		}
	}
	return in, nil
}

func newUserKey() (nkeys.KeyPair, string, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, "", fmt.Errorf("internal user key: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, "", fmt.Errorf("internal user key: %w", err)
	}
	return kp, pub, nil
}

// anonymousUser is the user that clients without credentials are bound to
// when the peer has no auth: it puts them in the tenant account.
const anonymousUser = "meshmon-anonymous"

// applyAuth translates a to server options, binding every user to acc. in,
// if not nil, adds the peer's own users: one in acc, so the peer can connect
// to itself whatever a is, and one in sys, the system account. With no
// auth, clients without credentials land in acc.
func applyAuth(o *server.Options, a Auth, in *internalAuth, acc, sys *server.Account) {
	if in != nil && sys != nil {
		o.Nkeys = append(o.Nkeys, &server.NkeyUser{Nkey: in.sysPub, Account: sys})
	}
	if a.None() {
		// A user nobody can log in as (a random password), which clients
		// without credentials are mapped to. Not bcrypted: the server logs
		// the mapped client in with the stored password itself.
		o.Users = append(o.Users, &server.User{Username: anonymousUser, Password: nuid.Next() + nuid.Next(), Account: acc})
		o.NoAuthUser = anonymousUser
		return
	}
	if a.User != "" {
		o.Users = append(o.Users, &server.User{Username: a.User, Password: hashPassword(a.Password), Account: acc})
	}
	if a.NKey != "" {
		o.Nkeys = append(o.Nkeys, &server.NkeyUser{Nkey: a.NKey, Account: acc})
	}
	if in != nil && in.kp != nil {
		o.Nkeys = append(o.Nkeys, &server.NkeyUser{Nkey: in.pub, Account: acc})
	}
}

// connOption returns the nats option that authenticates as in's user in
// the tenant account.
func (in *internalAuth) connOption() nats.Option {
	if in == nil || in.kp == nil {
		return func(*nats.Options) error { return nil }
	}
	return nats.Nkey(in.pub, func(nonce []byte) ([]byte, error) { return in.kp.Sign(nonce) })
}

// internalRawAuth is the peer's own user in the tenant account (as
// InProcessConn connects), for a raw in-process connection (publishRaw).
func (p *Peer) internalRawAuth() rawAuth {
	p.mu.Lock()
	in := p.internal
	p.mu.Unlock()
	if in == nil || in.kp == nil {
		return rawAuth{}
	}
	return rawAuth{kp: in.kp}
}

// sysConnOption returns the nats option that authenticates as in's user in
// the system account.
func (in *internalAuth) sysConnOption() nats.Option {
	if in == nil || in.sys == nil {
		return func(*nats.Options) error { return errors.New("the peer has no system user") }
	}
	return nats.Nkey(in.sysPub, func(nonce []byte) ([]byte, error) { return in.sys.Sign(nonce) })
}

// hashPassword bcrypts a password so the server never holds it in plain
// text (and says so in its log). The minimum cost keeps client connects
// fast; the hash never leaves the process.
func hashPassword(pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		return pw // longer than bcrypt's 72 bytes: the server compares it as given
	}
	return string(h)
}

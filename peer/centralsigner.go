package peer

import (
	"fmt"
	"sync"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// A central peer in operator mode holds no key of any tenant account, yet
// its source watch acts in each tenant's account (it nudges and sets again
// the sources of the tenant's streams). As a site in operator mode does
// (localAccount), it makes a signing key at each start, held in memory
// only, adds it to the claims of an account it acts in, as applied at this
// server (never to the JWT the resolver keeps, which is not signed again),
// and signs with it the user of its in-process connection there, allowed
// in-process connections only.
//
// When the resolver applies a new JWT of the account, the key is gone and
// the server closes the connection (its signer is no longer the
// account's); the watch connects again, adding the key again to the claims
// of the newest JWT.

// centralSigner is a central peer's own signing key for the accounts its
// source watch acts in.
//
// Its users (the source watch, the tenant workers) put the key in force one
// at a time (mu): each update of an account's signing keys makes the server
// renew, for every client of an account importing the account's streams
// (the ops account's consolidated view), the subscriptions that carry the
// import, and two renewals of one client at once leave it subscribed
// twice, so that it gets every event of the tenant twice (nats-server
// 2.15.3, client.processSubsOnConfigReload; TestOpsViewOnceThroughKeyUpdates).
type centralSigner struct {
	sk  nkeys.KeyPair
	pub string
	mu  sync.Mutex // held while the key is put in force (addKey)
}

func newCentralSigner() (*centralSigner, error) {
	sk, err := nkeys.CreateAccount()
	if err != nil {
		return nil, fmt.Errorf("central signing key: %w", err)
	}
	pub, _ := sk.PublicKey()
	return &centralSigner{sk: sk, pub: pub}, nil
}

// conn puts the key in force in account at srv and connects there in
// process as a user it signs. The connection does not reconnect: closed,
// it is made again with conn.
func (c *centralSigner) conn(srv *server.Server, account, name string) (*nats.Conn, error) {
	nc, _, err := c.connAuth(srv, account, name)
	return nc, err
}

// connAuth is conn, and returns the connection's user too, for raw
// connections of the same user (publishRaw) while the key is in force.
func (c *centralSigner) connAuth(srv *server.Server, account, name string) (*nats.Conn, rawAuth, error) {
	if err := c.addKey(srv, account); err != nil {
		return nil, rawAuth{}, err
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, rawAuth{}, err
	}
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	uc.IssuerAccount = account
	uc.AllowedConnectionTypes.Add(jwt.ConnectionTypeInProcess)
	tok, err := uc.Encode(c.sk)
	if err != nil {
		return nil, rawAuth{}, err
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name(name), nats.NoReconnect(),
		nats.UserJWT(func() (string, error) { return tok, nil }, kp.Sign))
	if err != nil {
		return nil, rawAuth{}, fmt.Errorf("in-process connection to account %s: %w", account, err)
	}
	return nc, rawAuth{jwt: tok, kp: kp}, nil
}

// addKey applies the claims of the account's newest JWT in the resolver,
// with the key added. A JWT the resolver applied meanwhile (between the
// read and the update) would be overwritten by the older claims: the JWT is
// read again after, and applied again if it changed.
func (c *centralSigner) addKey(srv *server.Server, account string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	acc, err := srv.LookupAccount(account)
	if err != nil {
		return fmt.Errorf("account %s: %w", account, err)
	}
	res := srv.AccountResolver()
	if res == nil {
		return fmt.Errorf("account %s: no resolver", account)
	}
	prev := ""
	for range 5 {
		tok, err := res.Fetch(account)
		if err != nil {
			return fmt.Errorf("account %s: %w", account, err)
		}
		if tok == prev {
			return nil
		}
		ac, err := jwt.DecodeAccountClaims(tok)
		if err != nil {
			return fmt.Errorf("account %s: %w", account, err)
		}
		out := *ac
		out.SigningKeys = jwt.SigningKeys{}
		for k, scope := range ac.SigningKeys {
			out.SigningKeys[k] = scope
		}
		out.SigningKeys.Add(c.pub)
		srv.UpdateAccountClaims(acc, &out)
		prev = tok
	}
	return fmt.Errorf("account %s: its JWT kept changing", account)
}

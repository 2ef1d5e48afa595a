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
// of the newest JWT. The same edit drops the sites' poller keys, and
// keepCentralClaims makes it after every new JWT of an account with one.

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
	mu  sync.Mutex // held while the key is put in force (put)
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
	if err := c.put(srv, account); err != nil {
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

package tenancy

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// The resolver's request subjects (nats-server's full account resolver).
const (
	claimsUpdateSubject = "$SYS.REQ.CLAIMS.UPDATE"
	claimsDeleteSubject = "$SYS.REQ.CLAIMS.DELETE"
)

// claimsResponse is a resolver's answer to an update or delete.
type claimsResponse struct {
	Data *struct {
		Account string `json:"account"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"data"`
	Error *struct {
		Account     string `json:"account"`
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
}

// Push sends an account JWT to the peers' resolver over nc, a connection
// of the system account (SystemCreds), and waits for a peer to store it. The
// peers of a cluster pass it on to each other; a peer applies it to its
// running account at once.
func Push(ctx context.Context, nc *nats.Conn, token string) error {
	return request(ctx, nc, claimsUpdateSubject, token, "push account")
}

// Unpush removes the tenant's account from the peers' resolver: its users
// can no longer connect. The store keeps the tenant; RemoveTenant drops it.
func (s *Store) Unpush(ctx context.Context, nc *nats.Conn, tenant string) error {
	t, err := s.Tenant(tenant)
	if err != nil {
		return err
	}
	op, err := s.readKey(operatorKey)
	if err != nil {
		return err
	}
	opPub, _ := op.PublicKey()
	gc := jwt.NewGenericClaims(opPub)
	gc.Data["accounts"] = []string{t.Account}
	tok, err := gc.Encode(op)
	if err != nil {
		return fmt.Errorf("remove account of %s: %w", tenant, err)
	}
	return request(ctx, nc, claimsDeleteSubject, tok, "remove account of "+tenant)
}

func request(ctx context.Context, nc *nats.Conn, subject, token, what string) error {
	msg, err := nc.RequestWithContext(ctx, subject, []byte(token))
	if err != nil {
		return fmt.Errorf("%s: %w (is the peer running with --trust, and are these the system account's credentials?)", what, err)
	}
	var r claimsResponse
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return fmt.Errorf("%s: the resolver answered %q", what, msg.Data)
	}
	if r.Error != nil {
		return fmt.Errorf("%s: the resolver refused it: %s", what, r.Error.Description)
	}
	return nil
}

// CredsOption is the nats connect option that authenticates with the
// content of a .creds file, kept in memory, and takes the user's replies
// on its own inbox prefix (InboxPrefix) when the credentials are a
// meshmon tenant user's.
func CredsOption(creds []byte) (nats.Option, error) {
	id, err := CredsIdentity(creds)
	if err != nil {
		return nil, err
	}
	tok, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	kp, err := jwt.ParseDecoratedUserNKey(creds)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	auth := nats.UserJWTAndSeed(tok, string(seed))
	if id.Role == "" {
		return auth, nil
	}
	inbox := nats.CustomInboxPrefix(InboxPrefix(id.User))
	return func(o *nats.Options) error {
		if err := auth(o); err != nil {
			return err
		}
		return inbox(o)
	}, nil
}

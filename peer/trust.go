package peer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/meshmon/meshmon/tenancy"
)

// Operator mode: a peer given Config.Trust trusts the operator of a key
// store (meshmon init) and nothing else. Every client and leaf link
// authenticates with a user JWT signed by a tenant's account; tenants'
// account JWTs reach the peer at run time through nats-server's built-in
// full resolver (kept in DataDir/resolver, passed on between the peers of
// a cluster). The peer holds no signing key.

// ReadTrust reads a trust file that meshmon init wrote.
func ReadTrust(path string) (tenancy.Trust, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return tenancy.Trust{}, fmt.Errorf("trust file: %w", err)
	}
	var t tenancy.Trust
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return tenancy.Trust{}, fmt.Errorf("trust file %s: %w", path, err)
	}
	if t.Operator == "" || t.SystemAccount == "" {
		return tenancy.Trust{}, fmt.Errorf("trust file %s: no operator or system account; use the trust.json meshmon init wrote", path)
	}
	if err := checkTrust(t); err != nil {
		return tenancy.Trust{}, fmt.Errorf("trust file %s: %w; use the trust.json meshmon init wrote", path, err)
	}
	return t, nil
}

// checkTrust checks what operatorOptions writes into the server's config
// text. The preload keys go there unquoted, so each must be an account
// public key: else a key could carry config of its own (a listener, the
// monitoring port, an account with users). Each JWT must be its account's,
// the system account an account key, and the operator a JWT (nats-server
// reads any other string as the path of a file to load).
func checkTrust(t tenancy.Trust) error {
	if _, err := jwt.DecodeOperatorClaims(t.Operator); err != nil {
		return fmt.Errorf("operator is not an operator JWT: %w", err)
	}
	if !nkeys.IsValidPublicAccountKey(t.SystemAccount) {
		return fmt.Errorf("system account %q is not an account public key", t.SystemAccount)
	}
	for pub, tok := range t.Preload {
		if !nkeys.IsValidPublicAccountKey(pub) {
			return fmt.Errorf("preload key %q is not an account public key", pub)
		}
		if ac, err := jwt.DecodeAccountClaims(tok); err != nil || ac.Subject != pub {
			return fmt.Errorf("preload %s: not that account's JWT", pub)
		}
	}
	return nil
}

// ResolverDir is where an operator-mode peer keeps the account JWTs.
func (c Config) ResolverDir() string { return filepath.Join(c.DataDir, "resolver") }

// operatorOptions puts the peer in operator mode: the operator, the system
// account, the full resolver and its preloaded accounts. These have no
// exported fields (the preload), so they go through the config parser.
func (c Config) operatorOptions(o *server.Options) error {
	t, err := ReadTrust(c.Trust)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "operator: %s\nsystem_account: %s\n", strconv.Quote(t.Operator), strconv.Quote(t.SystemAccount))
	fmt.Fprintf(&b, "resolver: { type: full, dir: %s, allow_delete: true, interval: \"2m\", timeout: \"2s\" }\n", strconv.Quote(c.ResolverDir()))
	b.WriteString("resolver_preload: {\n")
	for pub, tok := range t.Preload {
		fmt.Fprintf(&b, "  %s: %s\n", pub, strconv.Quote(tok))
	}
	b.WriteString("}\n")
	if err := o.ProcessConfigString(b.String()); err != nil {
		return fmt.Errorf("trust file %s: %w", c.Trust, err)
	}
	return nil
}

package peer

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/meshmon/meshmon/tenancy"
)

// TestWithFollowed: a site starts from the account JWT it last followed
// from central when the operator signed it for the tenant's account, and
// from its join token's otherwise.
func TestWithFollowed(t *testing.T) {
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	opJWT, err := oc.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	acct, _ := nkeys.CreateAccount()
	acctPub, _ := acct.PublicKey()
	other, _ := nkeys.CreateAccount()
	otherPub, _ := other.PublicKey()
	stranger, _ := nkeys.CreateOperator()
	sign := func(sub string, kp nkeys.KeyPair, disk int64) string {
		ac := jwt.NewAccountClaims(sub)
		ac.Limits.JetStreamLimits.DiskStorage = disk
		tok, err := ac.Encode(kp)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	token := sign(acctPub, op, 1<<20)
	followed := sign(acctPub, op, 1<<30)

	cfg := testConfig(t)
	cfg.SiteTrust = &tenancy.Trust{Operator: opJWT}
	cfg.Tenants = []SiteTenant{{Name: "acme", Account: acctPub, AccountJWT: token}}
	log := slog.New(slog.DiscardHandler)
	if got := cfg.withFollowed(log)[0].AccountJWT; got != token {
		t.Fatal("nothing followed yet: want the token's JWT")
	}
	if err := cfg.keepFollowed(acctPub, followed); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(cfg.followedPath(acctPub)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kept JWT: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if got := cfg.withFollowed(log)[0].AccountJWT; got != followed {
		t.Fatal("want the JWT followed from central")
	}
	if cfg.Tenants[0].AccountJWT != token {
		t.Fatal("withFollowed changed the config it was given")
	}
	for name, bad := range map[string]string{
		"damaged":            "not a jwt",
		"another account's":  sign(otherPub, op, 1<<30),
		"another operator's": sign(acctPub, stranger, 1<<30),
	} {
		if err := os.WriteFile(filepath.Join(cfg.DataDir, "tenants", acctPub+".jwt"), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := cfg.withFollowed(log)[0].AccountJWT; got != token {
			t.Errorf("%s JWT kept: want the token's", name)
		}
	}
}

// TestTenantsCluster: a site that serves tenants may be a cluster member
// (TestSiteClusterOperator in test/e2e runs one).
func TestTenantsCluster(t *testing.T) {
	cfg := testConfig(t)
	cfg.Role, cfg.Site = RoleSite, "pop"
	cfg.SiteTrust = &tenancy.Trust{Operator: "operator-jwt", SystemAccount: "SYS"}
	cfg.Central = []string{"nats-leaf://127.0.0.1:7422"}
	acct, _ := nkeys.CreateAccount()
	acctPub, _ := acct.PublicKey()
	actok, err := jwt.NewAccountClaims(acctPub).Encode(acct)
	if err != nil {
		t.Fatal(err)
	}
	user, _ := nkeys.CreateUser()
	userPub, _ := user.PublicKey()
	utok, err := jwt.NewUserClaims(userPub).Encode(acct)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	creds, err := jwt.FormatUserConfig(utok, seed)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tenants = []SiteTenant{{Name: "acme", Account: acctPub, AccountJWT: actok, LeafCreds: string(creds), UpkeepCreds: string(creds)}}
	cfg.Cluster = Cluster{Listen: "127.0.0.1:6222", Routes: []string{"nats-route://127.0.0.1:6223", "nats-route://127.0.0.1:6224"}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a tenant site as a cluster member: %v; want it accepted", err)
	}
	if r := cfg.Replicas(); r != 3 {
		t.Fatalf("a tenant site cluster of three: %d replicas, want 3", r)
	}
}

package bus

import (
	"errors"
	"testing"

	"github.com/nats-io/nkeys"
)

func accountKey(f *testing.F) string {
	kp, err := nkeys.CreateAccount()
	if err != nil {
		f.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		f.Fatal(err)
	}
	return pub
}

// FuzzParseJoinToken feeds ParseJoinToken what an operator might paste (or
// an attacker hand a site): any failure wraps ErrInvalidConfig, and a token
// it accepts is one JoinToken can write again: written and read back, it
// gives the same token.
func FuzzParseJoinToken(f *testing.F) {
	f.Add(JoinToken("paris", JoinInfo{Tenant: "acme", Central: []string{"nats-leaf://central:7422"}, User: "leaf-acme", Password: "0123456789abcdef"}))
	sys, acme := accountKey(f), accountKey(f)
	f.Add(JoinToken("site-2", JoinInfo{
		Tenant:        "acme",
		Central:       []string{"nats-leaf://c1:7422", "nats-leaf://c2:7422"},
		Creds:         "-----BEGIN NATS USER JWT-----\neyJ0eXAi\n------END NATS USER JWT------\n",
		Operator:      "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.sig",
		SystemAccount: sys,
		Preload:       map[string]string{sys: "eyJ0eXAi.e30.sig"},
		Account:       acme,
		AccountJWT:    "eyJ0eXAi.e30.sig",
		UpkeepCreds:   "creds",
	}))
	f.Add(" mmjoin1.e30\n")
	f.Add("mmjoin1.!!!")
	f.Add("mmjoin1.eyJzaXRlIjoicGFyaXMiLCJ4Ijp0cnVlfQ") // {"site":"paris","x":true}
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		site, info, err := ParseJoinToken(token)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("ParseJoinToken(%q): %v does not wrap ErrInvalidConfig", token, err)
			}
			return
		}
		for what, key := range map[string]string{"account": info.Account, "system account": info.SystemAccount} {
			if key != "" && !nkeys.IsValidPublicAccountKey(key) {
				t.Fatalf("accepted %s %q, which is no account key", what, key)
			}
		}
		for key := range info.Preload {
			if !nkeys.IsValidPublicAccountKey(key) {
				t.Fatalf("accepted preload key %q, which is no account key (a site writes it into its server config)", key)
			}
		}
		again := JoinToken(site, info)
		site2, info2, err := ParseJoinToken(again)
		if err != nil {
			t.Fatalf("a token JoinToken wrote from an accepted one is refused: %v\n in: %q\nout: %q", err, token, again)
		}
		if site2 != site {
			t.Fatalf("site %q came back as %q", site, site2)
		}
		if third := JoinToken(site2, info2); third != again {
			t.Fatalf("round trip not stable:\n%q\n%q", again, third)
		}
	})
}

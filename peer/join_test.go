package peer

import (
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/meshmon/meshmon/bus"
)

// TestConfigApplyJoin: join tokens fill a site peer's link to central, in
// plain and in operator mode, and a token that does not fit the peer is
// refused saying why.
func TestConfigApplyJoin(t *testing.T) {
	plain := bus.JoinToken("paris", bus.JoinInfo{Tenant: DefaultTenant, Central: []string{"nats-leaf://central:7422"}, User: "leaf", Password: "secret-secret"})
	site := func(name string) Config {
		c := DefaultConfig()
		c.Role, c.Site = RoleSite, name
		return c
	}

	c := site("")
	if err := c.ApplyJoin(nil); err != nil || c.Site != "" || c.Central != nil {
		t.Fatalf("no tokens: %v, config changed: site %q, central %v", err, c.Site, c.Central)
	}
	if err := c.ApplyJoin([]string{plain}); err != nil {
		t.Fatal(err)
	}
	if c.Site != "paris" || c.LeafUser != "leaf" || c.LeafPassword != "secret-secret" || len(c.Central) != 1 || c.Tenants != nil {
		t.Errorf("plain token: site %q, leaf %q/%q, central %v, tenants %v", c.Site, c.LeafUser, c.LeafPassword, c.Central, c.Tenants)
	}

	acc := func() string {
		kp, err := nkeys.CreateAccount()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		return pub
	}
	sys := acc()
	op := func(tenant, operator string) string {
		return bus.JoinToken("paris", bus.JoinInfo{Tenant: tenant, Central: []string{"nats-leaf://central:7422"}, Creds: "creds-" + tenant,
			Operator: operator, SystemAccount: sys, Account: acc(), AccountJWT: "jwt-" + tenant, UpkeepCreds: "upkeep-" + tenant})
	}
	c = site("paris")
	if err := c.ApplyJoin([]string{op("acme", "OP1"), op("globex", "OP1")}); err != nil {
		t.Fatal(err)
	}
	if c.SiteTrust == nil || c.SiteTrust.Operator != "OP1" || len(c.Tenants) != 2 || c.Tenants[1].Name != "globex" || c.Tenants[1].LeafCreds != "creds-globex" {
		t.Errorf("operator-mode tokens: trust %+v, tenants %+v", c.SiteTrust, c.Tenants)
	}

	central := DefaultConfig()
	central.Role = RoleCentral
	lyon := bus.JoinToken("lyon", bus.JoinInfo{Tenant: DefaultTenant, Central: []string{"nats-leaf://central:7422"}, User: "leaf", Password: "secret-secret"})
	other := site("")
	other.Tenant = "acme"
	for _, tt := range []struct {
		name   string
		cfg    Config
		tokens []string
		want   string
	}{
		{"central", central, []string{plain}, "--join and --join-file are for site peers"},
		{"other site", site("lyon"), []string{plain}, "--site lyon does not match the join token, which is for site paris"},
		{"two sites", site(""), []string{plain, lyon}, "the join tokens are for sites paris and lyon"},
		{"two plain", site(""), []string{plain, plain}, "several join tokens are for a central in operator mode"},
		{"other tenant", other, []string{plain}, `the join token is for tenant "default"; this peer serves "acme"`},
		{"two operators", site(""), []string{op("acme", "OP1"), op("globex", "OP2")}, "the join tokens come from different centrals"},
		{"damaged", site(""), []string{"mmjoin1.!!"}, "join token: is damaged"},
	} {
		cfg := tt.cfg
		if err := cfg.ApplyJoin(tt.tokens); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error saying %q", tt.name, err, tt.want)
		}
	}
}

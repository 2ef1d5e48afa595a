package peer

import (
	"errors"
	"fmt"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/tenancy"
)

// ApplyJoin reads join tokens of 'meshmon site add' into c: central's URLs
// and the leaf credential, and the site name when c.Site is empty. Tokens
// of a central in operator mode (site add --tenant) may be several, one per
// tenant the site serves. No tokens leave c as it is; tokens are for a
// site peer only.
func (c *Config) ApplyJoin(tokens []string) error {
	if len(tokens) == 0 {
		return nil
	}
	if c.Role != RoleSite {
		return errors.New("--join and --join-file are for site peers; central peers cluster with --routes")
	}
	type parsed struct {
		site string
		info bus.JoinInfo
	}
	var ps []parsed
	for _, tok := range tokens {
		site, info, err := bus.ParseJoinToken(tok)
		if err != nil {
			return err
		}
		if c.Site != "" && c.Site != site {
			return fmt.Errorf("--site %s does not match the join token, which is for site %s ('meshmon site add %s' makes one)", c.Site, site, c.Site)
		}
		if len(ps) > 0 && site != ps[0].site {
			return fmt.Errorf("the join tokens are for sites %s and %s; a peer is one site", ps[0].site, site)
		}
		ps = append(ps, parsed{site, info})
	}
	first := ps[0]
	if first.info.AccountJWT == "" {
		if len(ps) > 1 {
			return errors.New("several join tokens are for a central in operator mode ('meshmon site add --tenant'); this one takes one")
		}
		info := first.info
		if info.Tenant != c.Tenant {
			return fmt.Errorf("the join token is for tenant %q; this peer serves %q", info.Tenant, c.Tenant)
		}
		c.Site, c.Central, c.LeafUser, c.LeafPassword, c.CentralCA = first.site, info.Central, info.User, info.Password, info.CA
		return nil
	}
	// Operator mode: the site keeps each tenant's account.
	c.Site, c.Central, c.CentralCA = first.site, first.info.Central, first.info.CA
	c.SiteTrust = &tenancy.Trust{Operator: first.info.Operator, SystemAccount: first.info.SystemAccount, Preload: first.info.Preload}
	for _, p := range ps {
		if p.info.AccountJWT == "" || p.info.Operator != first.info.Operator {
			return errors.New("the join tokens come from different centrals (or operators); a site joins one central")
		}
		c.Tenants = append(c.Tenants, SiteTenant{Name: p.info.Tenant, Account: p.info.Account, AccountJWT: p.info.AccountJWT,
			LeafCreds: p.info.Creds, UpkeepCreds: p.info.UpkeepCreds})
	}
	return nil
}

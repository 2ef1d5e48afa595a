package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/tenancy"
)

// TestPollerIdentity: a poller's --tenant and --site are checked against
// its credential, and taken from it when not given.
func TestPollerIdentity(t *testing.T) {
	st, err := tenancy.Init(filepath.Join(t.TempDir(), "keys"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateTenant("acme", tenancy.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	write := func(name string, role tenancy.Role, site string) string {
		_, creds, err := st.IssueUser("acme", name, role, site)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name+".creds")
		if err := os.WriteFile(path, creds, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pollerCreds, nocCreds := write("p1", tenancy.RolePoller, "paris"), write("noc", tenancy.RoleNOC, "")
	notCreds := filepath.Join(t.TempDir(), "not.creds")
	if err := os.WriteFile(notCreds, []byte("nothing of the sort\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (poller.Config, error) {
		var cfg poller.Config
		app := &cli.App{
			Name:  "meshmon",
			Flags: globalFlags(),
			Commands: []*cli.Command{{
				Name:  "x",
				Flags: []cli.Flag{&cli.StringFlag{Name: "site"}, &cli.StringFlag{Name: "tenant", Value: "default"}, &cli.StringFlag{Name: "name", Value: "host"}},
				Action: func(c *cli.Context) error {
					cfg = poller.DefaultConfig()
					cfg.Site, cfg.Tenant, cfg.Name = c.String("site"), c.String("tenant"), c.String("name")
					return pollerIdentity(c, &cfg)
				},
			}},
		}
		return cfg, app.Run(append([]string{"meshmon"}, args...))
	}
	cfg, err := run("--creds", pollerCreds, "x")
	if err != nil || cfg.Tenant != "acme" || cfg.Site != "paris" || cfg.Name != "p1" {
		t.Fatalf("from the credential: tenant %q site %q name %q, %v; want acme, paris and p1", cfg.Tenant, cfg.Site, cfg.Name, err)
	}
	if _, err := run("--creds", pollerCreds, "x", "--tenant", "acme", "--site", "paris", "--name", "p1"); err != nil {
		t.Fatalf("flags that agree with the credential: %v", err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--creds", pollerCreds, "x", "--tenant", "beta"}, `--tenant "beta": the credential in ` + pollerCreds + ` is tenant acme's`},
		{[]string{"--creds", pollerCreds, "x", "--site", "lyon"}, `--site "lyon": the credential in ` + pollerCreds + ` is for site paris`},
		{[]string{"--creds", pollerCreds, "x", "--name", "p2"}, `--name "p2": the credential in ` + pollerCreds + ` is poller p1's`},
		{[]string{"--creds", nocCreds, "x"}, "a noc credential cannot publish events"},
		{[]string{"--creds", filepath.Join(t.TempDir(), "missing.creds"), "x"}, "--creds: open"},
		{[]string{"--creds", notCreds, "x"}, "--creds " + notCreds + ": credentials:"},
	} {
		if _, err := run(tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: got %v, want %q", tt.args, err, tt.want)
		}
	}
}

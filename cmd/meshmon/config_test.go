package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/internal/cliflags"
)

func TestApplyConfig(t *testing.T) {
	type got struct {
		server, site, password string
		checks                 []string
	}
	run := func(t *testing.T, yaml string, args ...string) (got, error) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		var g got
		app := &cli.App{
			Name:  "meshmon",
			Flags: globalFlags(),
			Commands: []*cli.Command{{
				Name:  "x",
				Flags: []cli.Flag{configFlag(), &cli.StringFlag{Name: "site"}, &cli.StringSliceFlag{Name: "checks"}},
				Action: func(c *cli.Context) error {
					if err := cliflags.ApplyConfig(c); err != nil {
						return err
					}
					g = got{c.String("server"), c.String("site"), c.String("password"), c.StringSlice("checks")}
					return nil
				},
			}},
		}
		return g, app.Run(append([]string{"meshmon"}, append(args, "x", "--config", path)...))
	}

	g, err := run(t, "site: 0x1f\npassword: 012345\nserver: nats://peer:4222\nchecks: [icmp, snmp]\n")
	if err != nil {
		t.Fatal(err)
	}
	if g.site != "0x1f" || g.password != "012345" || g.server != "nats://peer:4222" || !slices.Equal(g.checks, []string{"icmp", "snmp"}) {
		t.Errorf("values not taken as written: %+v", g)
	}
	g, err = run(t, "server: nats://file:4222\n", "--server", "nats://flag:4222")
	if err != nil || g.server != "nats://flag:4222" {
		t.Errorf("the command line should win: %+v, %v", g, err)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"bogus: 1\n", `line 1: unknown key "bogus"`},
		{"site: [unclosed\n", "not valid YAML"},
		{"- a\n- b\n", "want a mapping"},
		{"site: {a: b}\n", `key "site": want a value`},
		{"site: a\nsite: b\n", `line 2: key "site" repeats line 1`},
	} {
		if _, err := run(t, tt.yaml); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("config %q: error %v, want it to say %q", tt.yaml, err, tt.want)
		}
	}
	if _, err := run(t, ""); err != nil {
		t.Errorf("empty config: %v", err)
	}
}

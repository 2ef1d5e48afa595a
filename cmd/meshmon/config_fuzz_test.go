package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/meshmon/meshmon/internal/cliflags"
)

// FuzzConfigFile reads a --config file as 'peer run' and 'poller run' do,
// with their real flags: the strict path refuses every unknown or repeated
// key and every value of the wrong kind with one error that names the file,
// and what it accepts is a mapping of the command's flag names.
func FuzzConfigFile(f *testing.F) {
	for _, s := range []string{
		"data-dir: /var/lib/meshmon\nsite: paris\njoin-file: [/etc/meshmon/acme.join]\nlisten: 127.0.0.1:4222\n",
		"role: central\nname: c1\ncluster-listen: 0.0.0.0:6222\nroutes:\n  - nats-route://c2:6222\n  - nats-route://c3:6222\nevents-max-age: 30d\nevents-max-bytes: 10GiB\nsync-always: false\nleaf-dial-timeout: 5s\n",
		"server: nats://peer:4222\ncreds: /etc/meshmon/poller.creds\nworkers: 0x40\ntrap-listen: 0.0.0.0:162\nspool-max-bytes: 1GiB\nflap-window: 10m\n",
		"site: paris\nsite: lyon\n",
		"bogus: 1\n",
		"config: other.yaml\n",
		"site: {a: b}\n",
		"a: &x 1\nsite: *x\n",
		"<<: {site: x}\n",
		"- a\n",
		"",
		"workers: many\n",
		"events-max-age: 110000d\n",
	} {
		f.Add("peer", s)
		f.Add("poller", s)
	}
	path := filepath.Join(f.TempDir(), "meshmon.yaml")
	f.Fuzz(func(t *testing.T, which, doc string) {
		cmd := peerCommand()
		if which == "poller" {
			cmd = pollerCommand()
		}
		run := cmd.Subcommands[0]
		var applied error
		run.Action = func(c *cli.Context) error {
			applied = cliflags.ApplyConfig(c)
			return nil
		}
		app := &cli.App{Name: "meshmon", Flags: globalFlags(), Commands: []*cli.Command{cmd}, Writer: io.Discard, ErrWriter: io.Discard,
			ExitErrHandler: func(*cli.Context, error) {}}
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := app.Run([]string{"meshmon", cmd.Name, "run", "--config", path}); err != nil {
			t.Fatalf("app: %v", err)
		}
		if applied != nil {
			if !strings.HasPrefix(applied.Error(), "config "+path+": ") {
				t.Fatalf("error does not name the file: %v", applied)
			}
			return
		}
		var node yaml.Node
		if err := yaml.Unmarshal([]byte(doc), &node); err != nil {
			t.Fatalf("accepted YAML that does not parse: %v", err)
		}
		if len(node.Content) == 0 {
			return
		}
		known := map[string]bool{}
		for _, fl := range append(append([]cli.Flag{}, run.Flags...), globalFlags()...) {
			for _, n := range fl.Names() {
				known[n] = true
			}
		}
		root := node.Content[0]
		if root.Kind != yaml.MappingNode {
			t.Fatalf("accepted a config that is no mapping (kind %v)", root.Kind)
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(root.Content); i += 2 {
			k := root.Content[i].Value
			if !known[k] || k == "config" || seen[k] {
				t.Fatalf("accepted key %q (known %v, repeated %v)", k, known[k], seen[k])
			}
			seen[k] = true
		}
	})
}

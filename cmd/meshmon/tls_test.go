package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/meshmon/meshmon/internal/cliflags"
)

// TestTLSIssueModes: 'tls issue' writes the key 0600, also over a key file
// that was world-readable, and the CA it issued with.
func TestTLSIssueModes(t *testing.T) {
	dir := t.TempDir()
	ca, out := filepath.Join(dir, "ca"), filepath.Join(dir, "c1")
	if err := newApp().Run([]string{"meshmon", "tls", "ca", "--dir", ca}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "key.pem"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := newApp().Run([]string{"meshmon", "tls", "issue", "--ca-dir", ca, "--name", "c1", "--host", "127.0.0.1,c1.example.net", "--out-dir", out}); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]os.FileMode{"key.pem": 0o600, "cert.pem": 0o644, "ca.pem": 0o644} {
		fi, err := os.Stat(filepath.Join(out, f))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", f, fi.Mode().Perm(), err, want)
		}
	}
	if err := newApp().Run([]string{"meshmon", "tls", "ca", "--dir", ca}); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("a second CA in the same dir: %v", err)
	}
}

// TestPeerRunRefusals: what peer run refuses before it starts anything.
func TestPeerRunRefusals(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("twelve-chars-or-more\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := newApp().Run([]string{"meshmon", "tls", "issue", "--ca-dir", filepath.Join(dir, "ca"), "--init-ca", "--name", "x", "--host", "127.0.0.1", "--out-dir", filepath.Join(dir, "x")}); err != nil {
		t.Fatal(err)
	}
	certs := []string{"--tls-cert", filepath.Join(dir, "x", "cert.pem"), "--tls-key", filepath.Join(dir, "x", "key.pem"), "--tls-ca", filepath.Join(dir, "x", "ca.pem")}
	base := []string{"meshmon", "peer", "run", "--site", "x", "--data-dir", filepath.Join(dir, "d")}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "--tls-cert, --tls-key and --tls-ca"},
		{[]string{"--insecure", "--auth-user", "u", "--auth-password", "short"}, "at least 12"},
		{[]string{"--insecure", "--auth-user", "u", "--auth-password", "twelve-chars", "--auth-password-file", pw}, "alternatives"},
		{append([]string{"--listen", "0.0.0.0:0"}, certs...), "not a loopback address"},
		{append([]string{"--http", ":0"}, certs...), "http monitoring without a password"},
		{[]string{"--insecure", "--cluster-listen", "127.0.0.1:0"}, "without routes"},
		{[]string{"--insecure", "--tls-cert", "c.pem"}, "go together"},
	} {
		// A cancelled context: a case that got past the checks fails at
		// start ("interrupted") instead of running a peer.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := newApp().RunContext(ctx, append(append([]string{}, base...), tt.args...))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error with %q", tt.args, err, tt.want)
		}
	}
}

// TestClientSecretsAndCA: --password-file (its trailing newline dropped)
// and --tlsca reach the connection, also as keys of a --config file.
func TestClientSecretsAndCA(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret-s3cret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("tlsca: /etc/meshmon/ca.pem\npassword-file: "+pw+"\nuser: ops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var user, password, ca string
	app := &cli.App{Name: "meshmon", Flags: globalFlags(), Commands: []*cli.Command{{
		Name: "x", Flags: []cli.Flag{configFlag()},
		Action: func(c *cli.Context) error {
			if err := cliflags.ApplyConfig(c); err != nil {
				return err
			}
			cc := connConfig(c, "t")
			user, password, ca = cc.User, cc.Password, cc.CAFile
			return nil
		},
	}}}
	if err := app.Run([]string{"meshmon", "x", "--config", cfg}); err != nil {
		t.Fatal(err)
	}
	if user != "ops" || password != "s3cret-s3cret" || ca != "/etc/meshmon/ca.pem" {
		t.Errorf("got user %q password %q ca %q", user, password, ca)
	}
}

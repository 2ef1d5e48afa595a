//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/meshmon/meshmon"
)

// TestBadInput checks that bad input gets exit code 1 and one clear line on
// stderr naming the field and the rule, and that nothing already stored is
// lost.
func TestBadInput(t *testing.T) {
	s := newSite(t, "bad")
	s.cli("device", "add", "keeper", "--address", "127.0.0.1", "--checks", "icmp")

	long := strings.Repeat("a", 64)
	cfg := filepath.Join(t.TempDir(), "peer.yaml")
	if err := os.WriteFile(cfg, []byte("site: x\nno-such-key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badYAML := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(badYAML, []byte("site: [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string // in the one stderr line
	}{
		{"dot in name", []string{"device", "add", "a.b", "--address", "127.0.0.1"}, "'.'"},
		{"star in name", []string{"device", "add", "a*", "--address", "127.0.0.1"}, "wildcard"},
		{"gt in name", []string{"device", "add", "a>", "--address", "127.0.0.1"}, "wildcard"},
		{"space in name", []string{"device", "add", "a b", "--address", "127.0.0.1"}, "white space"},
		{"empty name", []string{"device", "add", "", "--address", "127.0.0.1"}, "empty"},
		{"too long", []string{"device", "add", long, "--address", "127.0.0.1"}, "at most 63"},
		{"unicode", []string{"device", "add", "rüter", "--address", "127.0.0.1"}, "ASCII"},
		{"uppercase", []string{"device", "add", "Router", "--address", "127.0.0.1"}, "lowercase"},
		{"bad address", []string{"device", "add", "r1", "--address", "not an address"}, "address"},
		{"address with port", []string{"device", "add", "r1", "--address", "127.0.0.1:161"}, "without port"},
		{"bad version", []string{"device", "add", "r1", "--address", "127.0.0.1", "--snmp-version", "4"}, "version"},
		{"short v3 password", []string{"device", "add", "r1", "--address", "127.0.0.1", "--snmp-version", "3", "--v3-user", "u", "--auth-proto", "SHA", "--auth-pass", "short"}, "at least 8"},
		{"bad interval", []string{"device", "add", "r1", "--address", "127.0.0.1", "--interval", "10ms"}, "interval"},
		{"unknown check", []string{"device", "add", "r1", "--address", "127.0.0.1", "--checks", "http"}, "check"},
		{"empty community", []string{"device", "add", "r1", "--address", "127.0.0.1", "--community", ""}, "--community is empty"},
		{"device exists", []string{"device", "add", "keeper", "--address", "127.0.0.2", "--checks", "icmp"}, "already exists"},
		{"show missing", []string{"device", "show", "ghost"}, "not found"},
		{"rm missing", []string{"device", "rm", "ghost"}, "not found"},
		{"bad since", []string{"events", "tail", "--since", "yesterday"}, "--since"},
		{"impossible address", []string{"device", "add", "r1", "--address", "999.1.1.1"}, "not an IP address"},
		{"since and seq", []string{"events", "tail", "--since", "1h", "--seq", "3"}, "give one"},
		{"unknown kind", []string{"events", "tail", "--kind", "nope"}, "not an event kind"},
		{"extra argument", []string{"device", "list", "extra"}, "takes no arguments"},
		{"two names", []string{"device", "rm", "a", "b"}, "takes one argument"},
		{"unknown flag", []string{"device", "add", "r1", "--bogus"}, "--help"},
		{"missing address", []string{"device", "add", "r1"}, "--address is required"},
		{"unknown command", []string{"devic", "list"}, "is not a command"},
		{"flag before its command", []string{"tenant", "--keys", "k", "list"}, "has no flag --keys"},
		{"poller creds without site", []string{"tenant", "creds", "acme", "--role", "poller", "--keys", "/nonexistent", "--out", "/nonexistent/p.creds"}, "--site is required"},
		{"bad log level", []string{"--log-level", "loud", "status"}, "--log-level"},
		{"zero timeout", []string{"--timeout", "0s", "status"}, "--timeout"},
		{"bad size", []string{"peer", "run", "--site", "x", "--data-dir", "/nonexistent", "--events-max-bytes", "10XB"}, "size"},
		{"bad role", []string{"peer", "run", "--role", "hub", "--data-dir", "/nonexistent"}, "--role"},
		{"bad join token", []string{"peer", "run", "--join", "garbage", "--data-dir", "/nonexistent"}, "join token"},
		{"site listens", []string{"peer", "run", "--site", "x", "--leaf-listen", "127.0.0.1:0", "--data-dir", "/nonexistent"}, "sites dial out"},
		{"short leaf password", []string{"peer", "run", "--role", "central", "--leaf-listen", "127.0.0.1:0", "--leaf-password", "short", "--data-dir", "/nonexistent"}, "leaf password"},
		{"reserved site", []string{"peer", "run", "--site", "hub", "--data-dir", "/nonexistent"}, "reserved"},
		{"site add at a site peer", []string{"site", "add", "paris"}, "central"},
		{"trap queue out of range", []string{"poller", "run", "--site", "x", "--data-dir", "/nonexistent", "--trap-queue", "0"}, "trap queue 0 is out of range; use 1 to 1048576"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, append(append([]string{}, s.global...), tt.args...)...)
			checkOneLineError(t, stdout, stderr, code, tt.want)
		})
	}
	t.Run("no peer", func(t *testing.T) {
		stdout, stderr, code := run(t, "--server", "nats://127.0.0.1:1", "--timeout", "1s", "device", "list")
		checkOneLineError(t, stdout, stderr, code, "connection refused")
	})
	// Connection problems that can be known at once say what they are.
	garbage := filepath.Join(t.TempDir(), "garbage.creds")
	if err := os.WriteFile(garbage, []byte("not a creds file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing creds", []string{"--server", s.url, "--creds", "/nonexistent/x.creds", "status"}, "no such file"},
		{"garbage creds", []string{"--server", s.url, "--creds", garbage, "status"}, "holds no user JWT"},
		{"bogus scheme", []string{"--server", "bogus://127.0.0.1:1", "status"}, `scheme "bogus"`},
		{"unresolvable host", []string{"--server", "nats://no-such-host.invalid:4222", "status"}, "cannot resolve"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, tc.args...)
			checkOneLineError(t, stdout, stderr, code, tc.want)
		})
	}
	// The identity of peers and pollers.
	t.Run("second peer on a data dir", func(t *testing.T) {
		stdout, stderr, code := run(t, "peer", "run", "--site", "other", "--listen", "127.0.0.1:0", "--data-dir", s.peerDir)
		checkOneLineError(t, stdout, stderr, code, "in use by another peer")
	})
	t.Run("poller of another site", func(t *testing.T) {
		args := append(append([]string{}, s.global...), "poller", "run", "--site", "elsewhere", "--name", "p9", "--data-dir", t.TempDir())
		stdout, stderr, code := run(t, args...)
		checkOneLineError(t, stdout, stderr, code, `serves another site "bad"`)
	})
	t.Run("poller name taken", func(t *testing.T) {
		args := append(append([]string{}, s.global...), "poller", "run", "--site", "bad", "--name", "p1", "--data-dir", t.TempDir())
		stdout, stderr, code := run(t, args...)
		checkOneLineError(t, stdout, stderr, code, "taken by another running poller")
	})
	t.Run("poller data file in use", func(t *testing.T) {
		args := append(append([]string{}, s.global...), "poller", "run", "--site", "bad", "--name", "p1", "--data-dir", s.pollDir)
		stdout, stderr, code := run(t, args...)
		checkOneLineError(t, stdout, stderr, code, "another 'poller run --name p1")
	})
	t.Run("unknown config key", func(t *testing.T) {
		stdout, stderr, code := run(t, "peer", "run", "--config", cfg, "--data-dir", t.TempDir())
		checkOneLineError(t, stdout, stderr, code, `"no-such-key"`)
	})
	t.Run("malformed config", func(t *testing.T) {
		stdout, stderr, code := run(t, "peer", "run", "--config", badYAML, "--data-dir", t.TempDir())
		checkOneLineError(t, stdout, stderr, code, "YAML")
	})
	t.Run("peer listen in use", func(t *testing.T) {
		stdout, stderr, code := run(t, "peer", "run", "--site", "x", "--auth-user", "u", "--auth-password", "twelve-chars", "--listen", strings.TrimPrefix(s.url, "nats://"), "--data-dir", t.TempDir())
		checkOneLineError(t, stdout, stderr, code, "in use")
	})
	// Nothing already accepted was lost.
	if out := s.cli("device", "show", "keeper"); !strings.Contains(out, "127.0.0.1") {
		t.Errorf("device keeper changed or vanished:\n%s", out)
	}
}

func checkOneLineError(t *testing.T, stdout, stderr string, code int, want string) {
	t.Helper()
	if stdout != "" {
		t.Errorf("stdout is not empty:\n%s", stdout)
	}
	if code != 1 {
		t.Errorf("exit code %d, want 1 (stderr %q)", code, stderr)
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 {
		t.Errorf("stderr has %d lines, want 1:\n%s", len(lines), stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr %q does not mention %q", stderr, want)
	}
}

// TestPeerConfigFile runs a peer from a YAML config file whose keys are the
// flag names, and checks that a flag on the command line wins over the file.
func TestPeerConfigFile(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t, "tcp")
	cfg := filepath.Join(dir, "peer.yaml")
	yaml := "site: fromfile\nlisten: 127.0.0.1:" + strconv.Itoa(port) + "\ndata-dir: " + filepath.Join(dir, "data") +
		"\nauth-user: ops\nauth-password: from-file-pw\nevents-max-age: 720h\nsync-always: true\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p := runMeshmon(t, "peer", "peer", "run", "--config", cfg, "--name", "from-flag")
	p.waitOutput(`peer from-flag ready on nats://127.0.0.1:`+strconv.Itoa(port), peerReady)
	out := mustRun(t, "--server", "nats://127.0.0.1:"+strconv.Itoa(port), "--user", "ops", "--password", "from-file-pw", "status", "--json")
	if !strings.Contains(out, `"server": "from-flag"`) {
		t.Errorf("status does not show the server name from the flag:\n%s", out)
	}
	p.stopClean()
}

// TestDeviceExportImport: what 'device list --json --show-secrets' prints
// re-adds the devices as they were; a masked export is refused, not stored
// with "********" as its secrets.
func TestDeviceExportImport(t *testing.T) {
	s := newSite(t, "export")
	s.cli("device", "add", "r1", "--address", "127.0.0.1", "--snmp-version", "3", "--v3-user", "mon",
		"--auth-proto", "SHA", "--auth-pass", "authpass1", "--priv-proto", "AES", "--priv-pass", "privpass1")
	s.cli("device", "add", "r2", "--address", "127.0.0.2", "--community", "s3cret")
	full := s.cli("device", "list", "--json", "--show-secrets")
	maskedOut := s.cli("device", "list", "--json")
	if strings.Contains(maskedOut, "s3cret") || !strings.Contains(full, "s3cret") {
		t.Fatalf("secrets: masked list %q, full list %q", maskedOut, full)
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fullFile, maskedFile := write("full.json", full), write("masked.json", maskedOut)
	s.cli("device", "rm", "r1")
	s.cli("device", "rm", "r2")

	stdout, stderr, code := run(t, append(append([]string{}, s.global...), "device", "import", maskedFile)...)
	checkOneLineError(t, stdout, stderr, code, "is masked")
	s.cli("device", "import", fullFile)
	if again := s.cli("device", "list", "--json", "--show-secrets"); !sameDevices(t, again, full) {
		t.Fatalf("after import:\n%s\nwant:\n%s", again, full)
	}
}

// sameDevices compares two device lists, ignoring revisions.
func sameDevices(t *testing.T, a, b string) bool {
	t.Helper()
	var da, db []meshmon.Device
	if err := json.Unmarshal([]byte(a), &da); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(b), &db); err != nil {
		t.Fatal(err)
	}
	for i := range da {
		da[i].Revision = 0
	}
	for i := range db {
		db[i].Revision = 0
	}
	ja, _ := json.Marshal(da)
	jb, _ := json.Marshal(db)
	return string(ja) == string(jb)
}

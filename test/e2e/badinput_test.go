//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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
		{"device exists", []string{"device", "add", "keeper", "--address", "127.0.0.2", "--checks", "icmp"}, "already exists"},
		{"show missing", []string{"device", "show", "ghost"}, "not found"},
		{"rm missing", []string{"device", "rm", "ghost"}, "not found"},
		{"bad since", []string{"events", "tail", "--since", "yesterday"}, "--since"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := run(t, append(append([]string{}, s.global...), tt.args...)...)
			checkOneLineError(t, stderr, code, tt.want)
		})
	}
	t.Run("no peer", func(t *testing.T) {
		_, stderr, code := run(t, "--server", "nats://127.0.0.1:1", "--timeout", "1s", "device", "list")
		checkOneLineError(t, stderr, code, "127.0.0.1:1")
	})
	t.Run("unknown config key", func(t *testing.T) {
		_, stderr, code := run(t, "peer", "run", "--config", cfg, "--data-dir", t.TempDir())
		checkOneLineError(t, stderr, code, `"no-such-key"`)
	})
	t.Run("malformed config", func(t *testing.T) {
		_, stderr, code := run(t, "peer", "run", "--config", badYAML, "--data-dir", t.TempDir())
		checkOneLineError(t, stderr, code, "YAML")
	})
	t.Run("peer listen in use", func(t *testing.T) {
		_, stderr, code := run(t, "peer", "run", "--site", "x", "--auth-user", "u", "--auth-password", "p", "--listen", strings.TrimPrefix(s.url, "nats://"), "--data-dir", t.TempDir())
		checkOneLineError(t, stderr, code, "in use")
	})
	// Nothing already accepted was lost.
	if out := s.cli("device", "show", "keeper"); !strings.Contains(out, "127.0.0.1") {
		t.Errorf("device keeper changed or vanished:\n%s", out)
	}
}

func checkOneLineError(t *testing.T, stderr string, code int, want string) {
	t.Helper()
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
		"\nauth-user: ops\nauth-password: from-file\nevents-max-age: 720h\nsync-always: true\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	p := runMeshmon(t, "peer", "peer", "run", "--config", cfg, "--name", "from-flag")
	p.waitOutput(`peer from-flag ready on nats://127.0.0.1:`+strconv.Itoa(port), 30*time.Second)
	out := mustRun(t, "--server", "nats://127.0.0.1:"+strconv.Itoa(port), "--user", "ops", "--password", "from-file", "status", "--json")
	if !strings.Contains(out, `"server": "from-flag"`) {
		t.Errorf("status does not show the server name from the flag:\n%s", out)
	}
	p.stopClean()
}

//go:build e2e

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/meshmon/meshmon/notify"
)

// TestNotifyConfigSecrets manages a tenant's notification channels and
// rules with the meshmon CLI as its admin, at a central peer in operator
// mode (a real process), and checks with the stock nats CLI that the
// channel secrets are an admin's only: a NOC credential reads the
// channels and the log but not the secrets bucket.
func TestNotifyConfigSecrets(t *testing.T) {
	natsBin := need(t, "nats")
	dir := t.TempDir()
	_, keys, curl, _ := startOperatorCentral(t, dir)
	cli := func(args ...string) string { return mustRun(t, append([]string{"--server", curl}, args...)...) }
	cli("tenant", "create", "acme", "--keys", keys)
	creds := func(role string) string {
		f := filepath.Join(dir, role+".creds")
		cli("tenant", "creds", "acme", "--keys", keys, "--out", f, "--role", role)
		return f
	}
	admin, noc := creds("admin"), creds("noc")
	as := func(c string, args ...string) []string {
		return append([]string{"--server", curl, "--creds", c}, args...)
	}

	const secret = "hmac-0123456789-secret"
	var mu sync.Mutex
	var sigOK, got int
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		got++
		if notify.Verify([]byte(secret), b, r.Header.Get(notify.HeaderSignature)) {
			sigOK++
		}
	}))
	t.Cleanup(rcv.Close)
	secretFile := filepath.Join(dir, "hook.secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, as(admin, "notify", "channel", "add", "hook", "--type", "webhook", "--url", rcv.URL, "--secret-file", secretFile, "--allow-plaintext")...)
	if _, e, code := run(t, as(admin, "notify", "channel", "add", "chat", "--type", "slack")...); code != 1 || !strings.Contains(e, "secret") {
		t.Fatalf("a slack channel without its secret: exit %d, %q", code, e)
	}
	if _, e, code := run(t, as(admin, "notify", "rule", "add", "crit", "--severity", "critical", "--channel", "nope")...); code != 1 || !strings.Contains(e, "channel nope does not exist") {
		t.Fatalf("a rule naming a missing channel: exit %d, %q", code, e)
	}
	mustRun(t, as(admin, "notify", "rule", "add", "crit", "--severity", "critical", "--channel", "hook", "--escalate", "15m=hook")...)
	list := mustRun(t, as(admin, "notify", "channel", "list", "--json")...)
	var chans []struct {
		Name      string `json:"name"`
		SecretSet bool   `json:"secret_set"`
	}
	if err := json.Unmarshal([]byte(list), &chans); err != nil || len(chans) != 1 || !chans[0].SecretSet {
		t.Fatalf("channel list: %s (%v)", list, err)
	}
	for _, out := range []string{list, mustRun(t, as(admin, "notify", "channel", "list")...), mustRun(t, as(admin, "notify", "rule", "list")...)} {
		if strings.Contains(out, secret) {
			t.Fatalf("a list printed the secret: %s", out)
		}
	}
	mustRun(t, as(admin, "notify", "channel", "test", "hook", "--tenant", "acme")...)
	mu.Lock()
	if got != 1 || sigOK != 1 {
		t.Fatalf("test notification: %d received, %d signed right", got, sigOK)
	}
	mu.Unlock()
	if _, e, code := run(t, as(admin, "notify", "channel", "rm", "hook")...); code != 1 || !strings.Contains(e, "rule crit uses it") {
		t.Fatalf("removing a channel a rule uses: exit %d, %q", code, e)
	}
	mustRun(t, as(admin, "notify", "log", "--json")...)

	// The stock nats CLI: a NOC reads the channels, never the secrets.
	if out, ok := natsCLI(t, natsBin, as(noc, "kv", "get", "notify", "channel.hook", "--raw")...); !ok || !strings.Contains(out, rcv.URL) || strings.Contains(out, secret) {
		t.Fatalf("NOC reading the channel: ok %v: %s", ok, out)
	}
	for _, args := range [][]string{
		{"kv", "get", "notify_secrets", "hook", "--raw"},
		{"stream", "get", "KV_notify_secrets", "1"},
		{"kv", "watch", "notify_secrets"},
	} {
		// A denied request goes unanswered: wait a second, not five
		// (a watch's consumer request waits its own five).
		out, ok := natsCLI(t, natsBin, as(noc, append([]string{"--timeout", "1s"}, args...)...)...)
		if ok || strings.Contains(out, secret) {
			t.Fatalf("NOC %v: ok %v: %s", args, ok, out)
		}
	}
	if out, ok := natsCLI(t, natsBin, as(admin, "kv", "get", "notify_secrets", "hook", "--raw")...); !ok || !strings.Contains(out, secret) {
		t.Fatalf("admin reading the secret: ok %v: %s", ok, out)
	}
	// Neither can a NOC change the configuration.
	if out, ok := natsCLI(t, natsBin, as(noc, "--timeout", "1s", "kv", "put", "notify", "rule.crit", "{}")...); ok {
		t.Fatalf("NOC wrote a rule: %s", out)
	}
}

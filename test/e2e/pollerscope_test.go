//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
)

// TestPollerScope runs a central peer in operator mode and two sites of one
// tenant, all real processes, and checks with the stock nats CLI that a
// poller credential acts only at its own site and only as itself: at the
// other site it writes neither that site's group keys nor its pollers'
// heartbeats, and at its own site it cannot forge another poller's
// heartbeat, while the other site's real poller goes on leading its group.
// At the other site and at central it is refused at connect: each site
// drops the other sites' poller keys from the tenant's account, and
// central drops them all; at its own site it runs a poller that polls.
// It also checks that the users of a site's join token are refused at
// that site, before and after they are revoked at central, while the
// site's link to central keeps working, and that the secret files the CLI
// writes are 0600 even over a file that was not.
func TestPollerScope(t *testing.T) {
	natsBin := need(t, "nats")
	dir := t.TempDir()
	_, keys, curl, lport := startOperatorCentral(t, dir)
	leaf := "nats-leaf://127.0.0.1:" + strconv.Itoa(lport)
	cli := func(args ...string) string { return mustRun(t, append([]string{"--server", curl}, args...)...) }
	cli("tenant", "create", "acme", "--keys", keys)

	mode := func(path string) os.FileMode {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	urls := map[string]string{}
	for _, s := range []string{"sa", "sb"} {
		token := filepath.Join(dir, s+".token")
		// A file that others may read is there already: the token
		// replaces it, 0600.
		if err := os.WriteFile(token, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(token, 0o644); err != nil {
			t.Fatal(err)
		}
		out := cli("site", "add", s, "--tenant", "acme", "--keys", keys, "--central", leaf, "--token-file", token)
		if m := mode(token); m != 0o600 {
			t.Fatalf("join token file mode %04o, want 0600", m)
		}
		if strings.Contains(out, "--join ") || !strings.Contains(out, "--join-file") {
			t.Fatalf("site add printed a command with the token in argv:\n%s", out)
		}
		port := freePort(t, "tcp")
		p := runMeshmon(t, s, "peer", "run", "--role", "site", "--name", s+"-peer", "--join-file", token,
			"--listen", "127.0.0.1:"+strconv.Itoa(port), "--data-dir", filepath.Join(dir, s))
		p.waitOutput(`peer `+s+`-peer ready`, peerReady)
		urls[s] = "nats://127.0.0.1:" + strconv.Itoa(port)
	}
	creds := func(site, user string) string {
		f := filepath.Join(dir, user+".creds")
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
		cli("tenant", "creds", "acme", "--keys", keys, "--role", "poller", "--site", site, "--user", user, "--out", f)
		if m := mode(f); m != 0o600 {
			t.Fatalf("credentials file mode %04o, want 0600", m)
		}
		return f
	}
	pa1, pb1 := creds("sa", "pa1"), creds("sb", "pb1")
	nocCreds := filepath.Join(dir, "noc.creds")
	cli("tenant", "creds", "acme", "--keys", keys, "--role", "noc", "--out", nocCreds)

	// A real poller at sb, named for its credential, leads sb's group.
	if _, stderr, code := run(t, "--server", urls["sb"], "--creds", pb1, "poller", "run", "--name", "other", "--data-dir", filepath.Join(dir, "px")); code != 1 || !strings.Contains(stderr, "is poller pb1's") {
		t.Fatalf("a poller named otherwise than its credential: exit %d, %q", code, stderr)
	}
	poller := runMeshmon(t, "poller-sb", "--server", urls["sb"], "--creds", pb1, "poller", "run", "--data-dir", filepath.Join(dir, "pb1"))
	poller.waitOutput(`poller started`, 30*time.Second)
	type status struct {
		Group struct {
			Leader  string `json:"leader"`
			Members []struct {
				Name string `json:"name"`
			} `json:"members"`
		} `json:"group"`
	}
	groupAt := func(site, creds string) status {
		var st status
		out, _, code := run(t, "--server", urls[site], "--creds", creds, "status", "--json")
		if code == 0 {
			_ = json.Unmarshal([]byte(out), &st)
		}
		return st
	}
	eventually.True(t, 30*time.Second, "pb1 to lead sb's group", func() bool { return groupAt("sb", pb1).Group.Leader == "pb1" })

	refused := func(what, site, creds, subject, payload string) {
		t.Helper()
		out, ok := natsCLI(t, natsBin, "--server", urls[site], "--creds", creds, "pub", subject, payload)
		if ok || !strings.Contains(out, "Permissions Violation") {
			t.Errorf("%s: published %s at %s: %s", what, subject, site, out)
		}
	}
	authRefused := func(url, creds string) bool {
		out, ok := natsCLI(t, natsBin, "--server", url, "--creds", creds, "pub", "ev.sb.x.trap", "x")
		return !ok && strings.Contains(out, "Authorization Violation")
	}
	// sa's poller credential at sb is refused at connect: sb drops sa's
	// poller key from the account it applies. Nothing of sb's streams,
	// buckets or subjects is in reach, not even what a poller may read.
	if !authRefused(urls["sb"], pa1) {
		t.Error("sa's poller credential connected at sb")
	}
	for _, args := range [][]string{
		{"pub", "$KV.group.sb.leader", `{"name":"pa1"}`},
		{"pub", "$KV.pollers.sb.pa1", `{"name":"pa1","site":"sb"}`},
		{"pub", "ev.sa.d1.trap", "forged-at-sb"},
		{"stream", "ls"},
		{"kv", "get", bus.DevicesBucket, "d1"},
	} {
		if out, ok := natsCLI(t, natsBin, append([]string{"--server", urls["sb"], "--creds", pa1}, args...)...); ok || !strings.Contains(out, "Authorization Violation") {
			t.Errorf("sa's poller at sb, %v: %s", args, out)
		}
	}
	// sb's own poller credential works at sb; at central, which drops
	// every site's poller key, neither site's does.
	if authRefused(urls["sb"], pb1) {
		t.Error("sb's poller credential refused at sb")
	}
	for who, creds := range map[string]string{"sa's": pa1, "sb's": pb1} {
		if !authRefused(curl, creds) {
			t.Errorf("%s poller credential connected at central", who)
		}
	}
	// At its own site it cannot forge another poller's heartbeat; its own
	// it may write.
	refused("pa1 at sa", "sa", pa1, "$KV.pollers.sa.pa2", `{"name":"pa2","site":"sa"}`)
	refused("pa1 at sa", "sa", pa1, "$KV.pollers.sa.pb1", `{"name":"pb1","site":"sa"}`)
	if out, ok := natsCLI(t, natsBin, "--server", urls["sa"], "--creds", pa1, "pub", "$KV.pollers.sa.pa1", `{"name":"pa1","site":"sa"}`); !ok {
		t.Errorf("pa1 writing its own heartbeat at sa: %s", out)
	}
	// sb's group still has its leader and only its own member.
	st := groupAt("sb", pb1)
	if st.Group.Leader != "pb1" || len(st.Group.Members) != 1 || st.Group.Members[0].Name != "pb1" {
		t.Fatalf("sb's group after the attempts: %+v", st.Group)
	}

	// At its own site sa's poller credential runs a poller that leads
	// sa's group and polls a simulated device: its samples are stored at sa.
	adminCreds := filepath.Join(dir, "admin.creds")
	cli("tenant", "creds", "acme", "--keys", keys, "--role", "admin", "--out", adminCreds)
	sm := startSim(t, "ps", "127.81.0.1", 1)
	a := sm.Agents()[0]
	mustRun(t, "--server", urls["sa"], "--creds", adminCreds, "device", "add", a.Name(), "--address", a.Addr().Addr().String(),
		"--checks", "snmp", "--snmp-port", strconv.Itoa(int(a.Addr().Port())), "--interval", "1s")
	pollerA := runMeshmon(t, "poller-sa", "--server", urls["sa"], "--creds", pa1, "poller", "run", "--data-dir", filepath.Join(dir, "pa1"))
	pollerA.waitOutput(`poller started`, 30*time.Second)
	eventually.True(t, 30*time.Second, "pa1 to lead sa's group", func() bool { return groupAt("sa", pa1).Group.Leader == "pa1" })
	samplesAt := func(site string) uint64 {
		out, ok := natsCLI(t, natsBin, "--server", urls[site], "--creds", nocCreds, "stream", "info", bus.MetricsStream, "--json")
		var si struct {
			State struct {
				Messages uint64 `json:"messages"`
			} `json:"state"`
		}
		if !ok || json.Unmarshal([]byte(out), &si) != nil {
			return 0
		}
		return si.State.Messages
	}
	eventually.True(t, 30*time.Second, "pa1's samples at sa", func() bool { return samplesAt("sa") > 0 })

	// The users of sb's join token are refused as clients at sb, and at
	// central too (their connection types: a leaf link, the site peer's
	// own process), and sb's link to central works: an event published
	// at sb reaches central.
	b, err := os.ReadFile(filepath.Join(dir, "sb.token"))
	if err != nil {
		t.Fatal(err)
	}
	_, info, err := bus.ParseJoinToken(string(b))
	if err != nil {
		t.Fatal(err)
	}
	tokenUsers := map[string]string{"leaf-sb": filepath.Join(dir, "leaf-sb.creds"), "site-sb": filepath.Join(dir, "site-sb.creds")}
	for user, creds := range map[string]string{"leaf-sb": info.Creds, "site-sb": info.UpkeepCreds} {
		if err := os.WriteFile(tokenUsers[user], []byte(creds), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for user, creds := range tokenUsers {
		if !authRefused(urls["sb"], creds) {
			t.Errorf("%s, of sb's join token, was accepted at sb", user)
		}
		if !authRefused(curl, creds) {
			t.Errorf("%s, of sb's join token, was accepted as a client at central", user)
		}
	}
	count := func() uint64 {
		out, ok := natsCLI(t, natsBin, "--server", curl, "--creds", nocCreds, "stream", "info", "EVENTS", "--json")
		var si struct {
			State struct {
				Messages uint64 `json:"messages"`
			} `json:"state"`
		}
		if !ok || json.Unmarshal([]byte(out), &si) != nil {
			return 0
		}
		return si.State.Messages
	}
	if out, ok := natsCLI(t, natsBin, "--server", urls["sb"], "--creds", pb1, "pub", "ev.sb.d1.trap", "linked", "--jetstream"); !ok {
		t.Fatalf("pb1 publishing an event at sb: %s", out)
	}
	// A fresh site's sourcing takes a while to start (see TestTenantsWalledOff).
	eventually.True(t, 90*time.Second, "sb's event at central", func() bool { return count() > 0 })

	// Revoked at central, they are refused there, and still at sb.
	cli("tenant", "creds", "acme", "--keys", keys, "--revoke", "leaf-sb")
	cli("tenant", "creds", "acme", "--keys", keys, "--revoke", "site-sb")
	for user, creds := range tokenUsers {
		eventually.True(t, 30*time.Second, user+" refused at central after its revocation", func() bool { return authRefused(curl, creds) })
		if !authRefused(urls["sb"], creds) {
			t.Errorf("%s, revoked, was accepted at sb", user)
		}
	}
	pollerA.stopClean()
	poller.stopClean()
}

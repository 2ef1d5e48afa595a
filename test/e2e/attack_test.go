//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	neturl "net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/internal/eventually"
)

// TestAttacks runs a central peer in operator mode with one tenant and two
// sites, all real processes, and tries with the stock nats CLI the attacks
// of issue 16 with a NOC's, a poller's and a join token's credentials:
// each is refused or without effect, and central holds every event of
// every site afterwards.
func TestAttacks(t *testing.T) {
	natsBin := need(t, "nats")
	dir := t.TempDir()
	_, keys, curl, lport := startOperatorCentral(t, dir)
	cli := func(args ...string) string { return mustRun(t, append([]string{"--server", curl}, args...)...) }
	cli("tenant", "create", "acme", "--keys", keys)

	sites := map[string]string{}
	tokens := map[string]string{}
	for _, site := range []string{"s1", "s2"} {
		token := filepath.Join(dir, site+".token")
		cli("site", "add", site, "--tenant", "acme", "--keys", keys, "--central", "nats-leaf://127.0.0.1:"+strconv.Itoa(lport), "--token-file", token)
		port := freePort(t, "tcp")
		p := runMeshmon(t, site, "peer", "run", "--role", "site", "--name", site+"-peer", "--join-file", token,
			"--listen", "127.0.0.1:"+strconv.Itoa(port), "--data-dir", filepath.Join(dir, site))
		p.waitOutput(`peer `+site+`-peer ready`, peerReady)
		sites[site], tokens[site] = "nats://127.0.0.1:"+strconv.Itoa(port), token
	}
	creds := func(args ...string) string {
		f := filepath.Join(dir, strings.Join(args, "-")+".creds")
		cli(append([]string{"tenant", "creds", "acme", "--keys", keys, "--out", f}, args...)...)
		return f
	}
	alice, bob := creds("--role", "noc", "--user", "alice"), creds("--role", "noc", "--user", "bob")
	admin := creds("--role", "admin", "--user", "boss")
	poller := map[string]string{"s1": creds("--role", "poller", "--site", "s1", "--user", "p1"), "s2": creds("--role", "poller", "--site", "s2", "--user", "p2")}
	natsAs := func(server, credsFile string, args ...string) (string, bool) {
		t.Helper()
		return natsCLI(t, natsBin, append([]string{"--server", server, "--creds", credsFile, "--timeout", "3s"}, args...)...)
	}
	// natsTry is natsAs for what must be refused: a request the user may
	// not send goes unanswered, so a second without an answer will do.
	natsTry := func(server, credsFile string, args ...string) (string, bool) {
		t.Helper()
		return natsCLI(t, natsBin, append([]string{"--server", server, "--creds", credsFile, "--timeout", "1s"}, args...)...)
	}
	// refused: the server refuses the connection, publish, subscription
	// or request (a request the user may not send goes unanswered).
	refused := func(what, out string, ok bool) {
		t.Helper()
		if ok || !(strings.Contains(out, "Violation") || strings.Contains(out, "timeout") || strings.Contains(out, "deadline exceeded") ||
			strings.Contains(out, "no responders")) {
			t.Errorf("%s was not refused (exit ok %v): %s", what, ok, out)
		}
	}
	// tries: refused attempts gathered and run a few at once, each
	// waiting out its second without an answer (see attempts).
	var tries attempts
	want := map[string]int{}
	publish := func(site string, n int, tag string) {
		t.Helper()
		out, ok := natsAs(sites[site], poller[site], "pub", "ev."+site+".d{{Count}}.trap", site+"-event", "--count", strconv.Itoa(n),
			"-H", "Nats-Msg-Id:"+site+"-"+tag+"-{{Count}}", "--jetstream")
		if !ok {
			t.Fatalf("publish at %s: %s", site, tail(out, 5))
		}
		want[site] += n
	}
	centralCount := func(filter string) int {
		out, ok := natsAs(curl, admin, "stream", "subjects", "EVENTS", filter, "--json")
		var subjects map[string]int
		if !ok || json.Unmarshal([]byte(out), &subjects) != nil {
			return -1
		}
		n := 0
		for _, c := range subjects {
			n += c
		}
		return n
	}
	// The NOC's live feed and the ops view at central, all along.
	feed := start(t, "nats sub stored", natsBin, withInboxPrefix([]string{"--server", curl, "--creds", alice, "sub", "stored.ev.>"})...)
	feed.waitOutput(`Subscribing on stored\.ev\.>`, 10*time.Second)
	opsCreds := filepath.Join(dir, "ops.creds")
	cli("tenant", "creds", "--ops", "--keys", keys, "--out", opsCreds)
	opsSub := start(t, "nats sub ops", natsBin, withInboxPrefix([]string{"--server", curl, "--creds", opsCreds, "sub", "tenants.*.ev.>"})...)
	opsSub.waitOutput(`Subscribing on tenants\.\*\.ev\.>`, 10*time.Second)

	publish("s1", 100, "a")
	publish("s2", 100, "a")
	// A fresh site's first events can take tens of seconds to reach an
	// operator-mode central (docs/tenancy.md, Not done yet).
	published := time.Now()
	for _, site := range []string{"s1", "s2"} {
		eventually.True(t, 90*time.Second, site+"'s first events at central", func() bool { return centralCount("ev."+site+".>") == want[site] })
		t.Logf("%s's first events at central %s after they were published", site, time.Since(published).Round(time.Millisecond))
	}

	// --- NOC ---
	// Its own consumers: <user>, <user>-1 .. -3, to read and replay.
	for _, name := range []string{"alice", "alice-1", "alice-2", "alice-3"} {
		if out, ok := natsAs(curl, alice, "consumer", "add", "EVENTS", name, "--pull", "--deliver", "all", "--ack", "none", "--defaults"); !ok {
			t.Fatalf("alice makes her consumer %s: %s", name, tail(out, 5))
		}
	}
	if out, ok := natsAs(curl, alice, "consumer", "next", "EVENTS", "alice", "--count", "3", "--no-ack"); !ok || !strings.Contains(out, "-event") {
		t.Fatalf("alice replays through her consumer: %s", tail(out, 5))
	}
	if out, ok := natsAs(curl, alice, "stream", "get", "EVENTS", "1"); !ok || !strings.Contains(out, "-event") {
		t.Fatalf("alice reads event 1: %s", tail(out, 5))
	}
	// A bound on what it creates: no fifth name, no other name.
	out, ok := natsTry(curl, alice, "consumer", "add", "EVENTS", "alice-4", "--pull", "--defaults")
	refused("alice's fifth consumer", out, ok)
	out, ok = natsTry(curl, alice, "consumer", "add", "EVENTS", "anything", "--pull", "--defaults")
	refused("alice's consumer of another name", out, ok)
	// A request alice may not send gets no answer (the stock CLI's req
	// then prints nothing more and exits 0).
	unanswered := func(what, out string) {
		t.Helper()
		if strings.Contains(out, "Received") {
			t.Errorf("%s was answered: %s", what, out)
		}
	}
	// The 5-token create takes the name from the body: refused whole.
	out, _ = natsTry(curl, alice, "req", "$JS.API.CONSUMER.CREATE.EVENTS",
		`{"stream_name":"EVENTS","config":{"name":"alice-9","ack_policy":"none","inactive_threshold":3600000000000}}`)
	unanswered("alice's consumer named in the body", out)
	// Another user's durable: neither updated (its inactive threshold
	// cut to remove it), nor deleted, nor read from.
	if out, ok := natsAs(curl, bob, "consumer", "add", "EVENTS", "bob", "--pull", "--deliver", "all", "--defaults"); !ok {
		t.Fatalf("bob makes his consumer: %s", tail(out, 5))
	}
	out, ok = natsTry(curl, alice, "consumer", "add", "EVENTS", "bob", "--pull", "--inactive-threshold", "1s", "--defaults")
	refused("alice updating bob's consumer", out, ok)
	out, ok = natsTry(curl, alice, "consumer", "rm", "EVENTS", "bob", "-f")
	refused("alice deleting bob's consumer", out, ok)
	out, ok = natsTry(curl, alice, "consumer", "next", "EVENTS", "bob")
	refused("alice reading bob's consumer", out, ok)
	// The site's source consumers, at the site and through central:
	// central stops sourcing if one changes its filter.
	for _, at := range []struct{ server, prefix string }{{sites["s1"], "$JS.API"}, {curl, "$JS.s1.API"}} {
		out, _ = natsTry(at.server, alice, "req", at.prefix+".CONSUMER.CREATE.EVENTS.central-events.ev.nothing.>",
			`{"stream_name":"EVENTS","config":{"durable_name":"central-events","filter_subject":"ev.nothing.>","deliver_subject":"meshmon.source.s1.events","ack_policy":"flow_control","flow_control":true,"idle_heartbeat":1000000000}}`)
		unanswered("alice changing central-events with "+at.prefix, out)
		out, _ = natsTry(at.server, alice, "req", at.prefix+".CONSUMER.DELETE.EVENTS.central-events", "")
		unanswered("alice deleting central-events with "+at.prefix, out)
		// Nor its twin, through which central fetches again a tail it lost.
		out, _ = natsTry(at.server, alice, "req", at.prefix+".CONSUMER.DELETE.EVENTS.central-events-refetch", "")
		unanswered("alice deleting central-events-refetch with "+at.prefix, out)
	}
	// The same with the create that names a one-token filter, alice's
	// own name (CONSUMER.CREATE.<stream>.<name>.<filter>): a review
	// found it allowed, and with it alice re-filtered s1's
	// central-events (central's sourcing of s1 stops) or the
	// notifications' consumer at central (no page goes out).
	out, ok = natsTry(sites["s1"], alice, "consumer", "add", "EVENTS", "central-events", "--pull", "--filter", "alice", "--defaults")
	refused("alice re-filtering central-events at s1 to her own name", out, ok)
	out, ok = natsTry(curl, alice, "consumer", "add", "ALARMS", "notify", "--pull", "--filter", "alice", "--defaults")
	refused("alice re-filtering the notifications' consumer to her own name", out, ok)
	// Without effect: s1's source consumer is as the site made it.
	if out, ok := natsCLI(t, natsBin, "--server", sites["s1"], "--creds", admin, "consumer", "info", "EVENTS", "central-events", "--json"); !ok ||
		strings.Contains(out, "ev.nothing") || strings.Contains(out, `"alice"`) {
		t.Errorf("s1's central-events after alice's attempts: %s", tail(out, 10))
	}
	if out, ok := natsAs(curl, admin, "consumer", "info", "EVENTS", "alice-9"); ok {
		t.Errorf("alice made alice-9 through the request body: %s", tail(out, 5))
	}
	// A NOC removes its own consumers.
	for _, name := range []string{"alice", "alice-1", "alice-2", "alice-3"} {
		if out, ok := natsAs(curl, alice, "consumer", "rm", "EVENTS", name, "-f"); !ok {
			t.Errorf("alice removes her consumer %s: %s", name, tail(out, 5))
		}
	}
	// A push consumer of its own, delivering on a source consumer's
	// delivery subject, at the site and at central: nats-server does not
	// check a deliver subject against the creator's permissions. Without
	// effect on central's sourcing if central still holds every event,
	// once, at the end.
	for _, server := range []string{sites["s1"], curl} {
		out, _ = natsAs(server, alice, "req", "$JS.API.CONSUMER.CREATE.EVENTS.alice-3",
			`{"stream_name":"EVENTS","config":{"name":"alice-3","deliver_subject":"meshmon.source.s1.events","deliver_policy":"all","ack_policy":"none"}}`)
		t.Logf("alice's push consumer on meshmon.source.s1.events at %s made: %v", server, strings.Contains(out, `"created"`))
		if out, ok := natsAs(server, alice, "consumer", "rm", "EVENTS", "alice-3", "-f"); !ok {
			t.Errorf("alice removes her push consumer at %s: %s", server, tail(out, 5))
		}
	}
	// An admin makes or changes no stream or bucket, at central or at a
	// site: a stream's re-publish is published by the server, whose
	// publishes no permission checks, and a review had one publish a task
	// request as alice (run by s1's pollers and recorded as hers), an
	// alarm acknowledgement as alice, and an event at s1. Nor does it
	// write the alarms' state.
	forge := filepath.Join(dir, "forge.json")
	if err := os.WriteFile(forge, []byte(`{"name":"FORGE","subjects":["meshmon.forge.ping"],"storage":"file","num_replicas":1,`+
		`"republish":{"src":"meshmon.forge.ping","dest":"ctl.s1.req.alice.ping"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"stream", "add", "--config", forge},
		{"--js-domain", "s1", "stream", "add", "--config", forge},
		{"stream", "edit", "EVENTS", "--max-msgs", "1", "-f"},
		{"kv", "add", "forge"},
		{"kv", "put", "alarms", "s1.d1.snmp", `{"id":"s1.d1.snmp","acked":true,"acked_by":"alice"}`},
	} {
		tries.add(func() {
			out, ok := natsTry(curl, admin, args...)
			refused("the admin: nats "+strings.Join(args, " "), out, ok)
		})
	}
	tries.add(func() {
		out, ok := natsTry(sites["s1"], admin, "stream", "add", "--config", forge)
		refused("the admin at s1: nats stream add (a re-publish)", out, ok)
	})
	// Nor does it touch the mesh's source consumers, at central or at
	// s1: a heartbeat on a delivery subject, a subscription there, an
	// answer to one's flow-control request.
	for _, server := range []string{curl, sites["s1"]} {
		for _, args := range [][]string{
			{"pub", "meshmon.source.s1.events", "", "-H", "Status:100"},
			{"sub", "meshmon.source.s1.events", "--count", "1"},
			{"pub", "$JS.FC.EVENTS.central-events.x1", "", "-H", "Nats-Last-Stream:99999"},
			{"pub", "meshmon.source.s1.events-refetch", "", "-H", "Status:100"},
			{"pub", "$JS.FC.EVENTS.central-events-refetch.x1", "", "-H", "Nats-Last-Stream:99999"},
		} {
			tries.add(func() {
				out, ok := natsTry(server, admin, args...)
				refused("the admin at "+server+": nats "+strings.Join(args, " "), out, ok)
			})
		}
	}
	tries.run()
	if out, ok := natsAs(curl, admin, "stream", "info", "FORGE"); ok {
		t.Errorf("the admin's FORGE stream exists: %s", tail(out, 5))
	}
	if out, ok := natsAs(curl, admin, "stream", "info", "EVENTS", "--json"); !ok || strings.Contains(out, `"max_msgs": 1,`) {
		t.Errorf("the admin reads EVENTS, unchanged: ok %v: %s", ok, tail(out, 10))
	}
	// Secrets: an admin adds a device with a community and v3 pass
	// phrases at s1 while alice listens for replies; alice reads no
	// device record, at the site or at central, by any subject.
	for _, server := range []string{curl, sites["s1"]} {
		for what, subj := range map[string]string{"every reply": "_INBOX.>", "the admin's replies": "_INBOX.boss.>", "the buckets' subjects": "$KV.>"} {
			tries.add(func() {
				out, ok := natsTry(server, alice, "sub", subj, "--count", "1")
				refused("alice subscribing to "+what, out, ok)
			})
		}
	}
	tries.run()
	mustRun(t, "--server", sites["s1"], "--creds", admin, "device", "add", "secret-dev", "--address", "192.0.2.10", "--checks", "snmp",
		"--snmp-version", "3", "--v3-user", "u1", "--auth-proto", "SHA", "--auth-pass", "auth-phrase-x1", "--priv-proto", "AES", "--priv-pass", "priv-phrase-x1")
	mustRun(t, "--server", sites["s1"], "--creds", admin, "device", "add", "comm-dev", "--address", "192.0.2.11", "--checks", "snmp", "--community", "community-x1")
	for _, args := range [][]string{
		{"stream", "get", "KV_devices", "1"},
		{"stream", "get", "KV_devices", "--last-for", "$KV.devices.secret-dev"},
		{"kv", "get", "devices", "secret-dev"},
		{"kv", "history", "devices", "comm-dev"},
		{"consumer", "add", "KV_devices", "alice", "--pull", "--deliver", "all", "--defaults"},
	} {
		tries.add(func() {
			out, ok := natsTry(sites["s1"], alice, args...)
			refused("alice: nats "+strings.Join(args, " "), out, ok)
			if strings.Contains(out, "phrase-x1") || strings.Contains(out, "community-x1") {
				t.Errorf("alice read a device secret with nats %s: %s", strings.Join(args, " "), out)
			}
		})
	}
	tries.run()
	if _, stderr, code := run(t, "--server", sites["s1"], "--creds", alice, "device", "list"); code == 0 {
		t.Errorf("alice listed the devices: %s", stderr)
	}
	// Central's sources lock and sites: a NOC or a poller that could
	// write them would hold up every site add and rm for 30 s, or make
	// central source a site of its choosing.
	for who, c := range map[string]string{"alice": alice, "the s1 poller": poller["s1"]} {
		for _, args := range [][]string{
			{"kv", "put", "central", "lock.sources", "x"},
			{"kv", "create", "central", "lock.sources", "x"},
			{"kv", "del", "central", "lock.sources", "-f"},
			{"kv", "put", "sites", "evil", `{"name":"evil"}`},
		} {
			tries.add(func() {
				out, ok := natsTry(curl, c, args...)
				refused(who+": nats "+strings.Join(args, " "), out, ok)
			})
		}
		// The stock nats req exits 0 on a publish it may not send: no
		// answer (a store would send one) is the refusal.
		tries.add(func() {
			out, _ := natsTry(curl, c, "req", "$KV.central.lock.sources", "x")
			unanswered(who+": nats req $KV.central.lock.sources", out)
		})
	}
	tries.run()
	if out, ok := natsAs(curl, admin, "kv", "get", "central", "lock.sources"); ok {
		t.Errorf("central's sources lock is held after the attempts: %s", out)
	}
	if out := mustRun(t, "--server", curl, "--creds", admin, "site", "list"); strings.Contains(out, "evil") || !strings.Contains(out, "s1") {
		t.Errorf("a site was added by a NOC or a poller:\n%s", out)
	}
	// What a NOC still does with meshmon: status at central and at the
	// site, and a replay of events.
	mustRun(t, "--server", curl, "--creds", alice, "status")
	if out := mustRun(t, "--server", sites["s1"], "--creds", alice, "status"); !strings.Contains(out, "devices: not readable with this credential") {
		t.Errorf("alice's status at s1:\n%s", out)
	}
	if out := mustRun(t, "--server", curl, "--creds", alice, "events", "tail", "--since", "1h", "--no-follow", "--json"); len(lines(out)) != want["s1"]+want["s2"] {
		t.Errorf("alice's replay at central has %d events, want %d", len(lines(out)), want["s1"]+want["s2"])
	}

	// --- poller ---
	// Central refuses a poller credential at connect, whatever it came
	// to do: publish on its site's subjects, subscribe, read every
	// site's events through a consumer of its own on EVENTS, remove a
	// NOC's consumer there, or remove the notifications' consumer on
	// ALARMS (no page would go out).
	for _, args := range [][]string{
		{"pub", "ev.s1.forged.trap", "forged-event"},
		{"sub", "ev.>", "--count", "1"},
		{"stream", "ls"},
		{"consumer", "add", "EVENTS", "p-x", "--pull", "--defaults"},
		{"consumer", "rm", "EVENTS", "bob", "-f"},
		{"consumer", "rm", "ALARMS", "notify", "-f"},
	} {
		tries.add(func() {
			out, ok := natsTry(curl, poller["s1"], args...)
			if ok || !strings.Contains(out, "Authorization Violation") {
				t.Errorf("the s1 poller at central: nats %s was not refused at connect (exit ok %v): %s", strings.Join(args, " "), ok, tail(out, 5))
			}
		})
	}
	tries.run()
	out, ok = natsTry(sites["s1"], poller["s1"], "consumer", "add", "EVENTS", "central-events", "--pull", "--filter", "ev.nothing.>", "--defaults")
	refused("the poller changing central-events at its site", out, ok)
	out, ok = natsTry(sites["s1"], poller["s1"], "consumer", "rm", "EVENTS", "central-events-refetch", "-f")
	refused("the poller deleting central-events-refetch at its site", out, ok)
	out, ok = natsTry(sites["s1"], poller["s1"], "pub", "stored.ev.s1.x.trap", "forged-event")
	refused("the poller publishing on the stored feed", out, ok)

	// --- join token ---
	// Its leaf user serves a leaf link only, its upkeep user the site
	// peer's own process only: as clients, at central and at the other
	// site, both are refused.
	_, info, err := bus.ParseJoinToken(strings.TrimSpace(readFile(t, tokens["s1"])))
	if err != nil {
		t.Fatal(err)
	}
	for what, c := range map[string]string{"leaf": info.Creds, "upkeep": info.UpkeepCreds} {
		f := filepath.Join(dir, "token-"+what+".creds")
		if err := os.WriteFile(f, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, server := range []string{curl, sites["s2"], sites["s1"]} {
			out, ok = natsAs(server, f, "pub", "ev.s2.forged.trap", "forged-event")
			if ok || !strings.Contains(out, "Authorization Violation") {
				t.Errorf("the join token's %s user connected as a client at %s: %s", what, server, tail(out, 5))
			}
			out, ok = natsAs(server, f, "stream", "rm", "EVENTS", "-f")
			if ok || !strings.Contains(out, "Authorization Violation") {
				t.Errorf("the join token's %s user removed a stream at %s: %s", what, server, tail(out, 5))
			}
		}
	}

	// A stock nats-server dials central as a leaf with s1's leaf
	// credential: through it, nothing of another site, no JetStream
	// request at central but the tenant bucket's, and nothing of central
	// but what s1's link takes.
	rogue := rogueLeaf(t, "nats-leaf://127.0.0.1:"+strconv.Itoa(lport), filepath.Join(dir, "token-leaf.creds"))
	// Replies to central's sourcing requests: s1's link may answer its
	// own sources' requests only ($JSC.R.s1.>, js_api_reply_v2), not s2's,
	// nor a reply of the old unscoped form. The admin at central watches
	// every reply; s1's own is the control that the watch works.
	replies := start(t, "nats sub replies", natsBin, withInboxPrefix([]string{"--server", curl, "--creds", admin, "sub", "$JSC.R.>"})...)
	replies.waitOutput(`Subscribing on \$JSC\.R\.>`, 10*time.Second)
	// The rogue server forwards only what central has shown interest in,
	// and the watch's interest reaches it a moment after the watch
	// subscribes: s1's own reply is sent until it arrives (a forged one
	// sent before would prove nothing). Then the forged ones, and s1's
	// once more: over one link, in order, so what central let through of
	// the forged ones arrives before the last.
	send := func(subj, body string) {
		t.Helper()
		if err := rogue.Publish(subj, []byte(body)); err != nil {
			t.Fatal(err)
		}
		if err := rogue.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	eventually.True(t, 20*time.Second, "s1's own reply through the rogue leaf", func() bool {
		send("$JSC.R.s1.h.EVENTS.central-events.forged", "s1-own-reply")
		return strings.Contains(replies.out.String(), "s1-own-reply")
	})
	send("$JSC.R.s2.h.EVENTS.central-events.forged", "forged-s2-reply")
	send("$JSC.R.forged", "forged-unscoped-reply")
	send("$JSC.R.s1.h.EVENTS.central-events.forged", "s1-own-reply-last")
	replies.waitOutput(`s1-own-reply-last`, 20*time.Second)
	got := map[string]*nats.Subscription{}
	for _, subj := range []string{"_INBOX.>", "ev.>", "stored.ev.>", "$KV.>", "meshmon.source.s2.>"} {
		sub, err := rogue.SubscribeSync(subj)
		if err != nil {
			t.Fatal(err)
		}
		got[subj] = sub
	}
	for _, subj := range []string{"$JS.hub.API.STREAM.DELETE.EVENTS", "$JS.API.STREAM.DELETE.EVENTS", "$JS.hub.API.STREAM.PURGE.EVENTS",
		"$JS.s2.API.STREAM.DELETE.EVENTS", "$JS.hub.API.CONSUMER.CREATE.EVENTS.x"} {
		if m, err := rogue.Request(subj, []byte(`{}`), 2*time.Second); err == nil {
			t.Errorf("the rogue leaf's %s was answered: %s", subj, m.Data)
		}
	}
	for _, subj := range []string{"meshmon.source.s2.events", "ev.s2.forged.trap", "$KV.devices.forged", "stored.ev.s2.forged.trap"} {
		if err := rogue.Publish(subj, []byte("forged-event")); err != nil {
			t.Fatal(err)
		}
	}
	if err := rogue.Flush(); err != nil {
		t.Fatal(err)
	}

	// --- another tenant's users ---
	// No tenant's user reaches another tenant's JetStream API: the ops
	// account's prefix for it is no subject of theirs to publish, and
	// the other tenant's site domain is not in their account.
	cli("tenant", "create", "beta", "--keys", keys)
	cli("site", "add", "b1", "--tenant", "beta", "--keys", keys, "--central", "nats-leaf://127.0.0.1:"+strconv.Itoa(lport), "--token-file", filepath.Join(dir, "b1.token"))
	betaCreds := func(args ...string) string {
		f := filepath.Join(dir, "beta"+strings.Join(args, "-")+".creds")
		cli(append([]string{"tenant", "creds", "beta", "--keys", keys, "--out", f}, args...)...)
		return f
	}
	betaAdmin := betaCreds("--role", "admin", "--user", "bert")
	betaUsers := map[string]string{"beta's admin": betaAdmin, "beta's NOC": betaCreds("--role", "noc", "--user", "bea"),
		"beta's poller": betaCreds("--role", "poller", "--site", "b1", "--user", "pb")}
	acmeUsers := map[string]string{"acme's admin": admin, "acme's NOC": alice, "s1's poller": poller["s1"]}
	eventsBefore := streamState(t, natsBin, curl, admin, "EVENTS")
	// pubRefused: the server refuses the publish, and says so; a poller
	// it refuses at connect.
	pubRefused := func(who, credsFile, subj, body string) {
		t.Helper()
		want := "Permissions Violation"
		if strings.HasSuffix(who, "poller") {
			want = "Authorization Violation"
		}
		if out, ok := natsTry(curl, credsFile, "pub", subj, body); ok || !strings.Contains(out, want) {
			t.Errorf("%s published on %s (exit ok %v): %s", who, subj, ok, tail(out, 5))
		}
	}
	for who, c := range betaUsers {
		for _, subj := range []string{"tenants.acme.js.API.STREAM.PURGE.EVENTS", "tenants.acme.js.API.STREAM.INFO.EVENTS", "$JS.s1.API.STREAM.PURGE.EVENTS"} {
			if who == "beta's admin" && strings.HasPrefix(subj, "$JS.") {
				continue // its own account's, below
			}
			tries.add(func() { pubRefused(who, c, subj, "{}") })
		}
	}
	// beta's admin may send JetStream requests to any domain of its own
	// account: acme's site's is none of them.
	for _, api := range []string{"STREAM.PURGE.EVENTS", "STREAM.INFO.EVENTS"} {
		tries.add(func() {
			out, _ := natsTry(curl, betaAdmin, "req", "$JS.s1.API."+api, "{}")
			unanswered("beta's admin's request on $JS.s1.API."+api, out)
		})
	}
	for who, c := range acmeUsers {
		for _, subj := range []string{"tenants.beta.js.API.STREAM.PURGE.EVENTS", "tenants.acme.js.API.STREAM.PURGE.EVENTS"} {
			tries.add(func() { pubRefused(who, c, subj, "{}") })
		}
	}
	tries.run()
	out, ok = natsTry(sites["s1"], betaAdmin, "stream", "info", "EVENTS")
	if ok || !strings.Contains(out, "Authorization Violation") {
		t.Errorf("beta's admin connected at acme's site s1: %s", tail(out, 5))
	}

	// --- ops subscriptions ---
	// The tenants' events, its own task replies and its own inbox only:
	// not every ops user's task requests (they may carry discovery
	// credentials), replies or inboxes (a review found tenants.> and
	// _INBOX.> allowed).
	for _, subj := range []string{"tenants.>", "tenants.acme.ctl.>", "tenants.*.ctl.*.ops.*.*", "tenants.acme.ctl.s1.reply.ops.olga.>", "_INBOX.>", "_INBOX.olga.>"} {
		tries.add(func() {
			out, ok := natsTry(curl, opsCreds, "sub", subj, "--count", "1")
			refused("the ops user subscribing to "+subj, out, ok)
		})
	}
	tries.run()

	// --- the ops replay ---
	// The ops account imports the tenants' live events only: an ops user
	// reaches no tenant's JetStream API (the console replays the tenants'
	// streams for it through central's own connections). Not a replay's
	// requests, under the prefix that reached them before
	// (tenants.<tenant>.js.API), nor anything else there, for any tenant;
	// and no JetStream API of its own account's or central's.
	if out, ok := natsTry(curl, opsCreds, "--js-api-prefix", "tenants.acme.js.API", "stream", "info", "EVENTS", "--json"); ok {
		t.Errorf("the ops user's stream info of acme's EVENTS worked: %s", tail(out, 20))
	}
	// A publish refused is a request refused, whatever it asks: the
	// publishes show the server's refusal; a few requests show that
	// nothing answers.
	beyond := [][2]string{
		{"STREAM.INFO.EVENTS", ""}, {"STREAM.MSG.GET.EVENTS", `{"seq":1}`},
		{"CONSUMER.CREATE.EVENTS.OPS-ops", `{"stream_name":"EVENTS","config":{"name":"OPS-ops","deliver_policy":"all","ack_policy":"none","inactive_threshold":5000000000}}`},
		{"CONSUMER.MSG.NEXT.EVENTS.OPS-ops", `{"batch":1,"expires":500000000}`}, {"CONSUMER.DELETE.EVENTS.OPS-ops", ""},
		{"STREAM.DELETE.EVENTS", ""}, {"STREAM.PURGE.EVENTS", ""}, {"STREAM.PURGE.EVENTS", `{"filter":"ev.s1.>"}`},
		{"STREAM.UPDATE.EVENTS", `{"name":"EVENTS","subjects":["EVENTS"],"max_msgs":1}`}, {"STREAM.MSG.DELETE.EVENTS", `{"seq":1}`},
		{"STREAM.CREATE.EVENTS2", `{"name":"EVENTS2","subjects":["x.>"]}`}, {"STREAM.SNAPSHOT.EVENTS", `{"deliver_subject":"_INBOX.snap"}`},
		{"STREAM.LEADER.STEPDOWN.EVENTS", ""}, {"DIRECT.GET.EVENTS", `{"seq":1}`},
		{"CONSUMER.DELETE.EVENTS.bob", ""}, {"CONSUMER.INFO.EVENTS.bob", ""}, {"CONSUMER.LIST.EVENTS", ""},
		{"CONSUMER.PAUSE.EVENTS.bob", `{"pause_until":"2100-01-01T00:00:00Z"}`}, {"CONSUMER.LEADER.STEPDOWN.EVENTS.bob", ""},
		{"STREAM.INFO.METRICS", ""}, {"STREAM.MSG.GET.METRICS", `{"seq":1}`}, {"CONSUMER.CREATE.METRICS.x", `{"stream_name":"METRICS","config":{"name":"x"}}`},
		{"CONSUMER.MSG.NEXT.METRICS.x", ""}, {"STREAM.INFO.KV_notify_secrets", ""}, {"STREAM.MSG.GET.KV_notify_secrets", `{"last_by_subj":"$KV.notify_secrets.x"}`},
		{"STREAM.INFO.KV_tenant", ""}, {"STREAM.LIST", ""}, {"INFO", ""}, {"ACCOUNT.PURGE", ""},
		{"META.LEADER.STEPDOWN", ""}, {"SERVER.REMOVE", `{"peer":"c1"}`},
	}
	for i, req := range beyond {
		for _, prefix := range []string{"tenants.acme.js.API.", "tenants.beta.js.API."} {
			if prefix == "tenants.beta.js.API." && i%4 != 0 {
				continue // a sample of them at a second tenant
			}
			tries.add(func() { pubRefused("the ops user", opsCreds, prefix+req[0], req[1]) })
		}
		if i < 3 {
			tries.add(func() {
				out, _ := natsTry(curl, opsCreds, "req", "tenants.acme.js.API."+req[0], req[1])
				unanswered("the ops user's request on tenants.acme.js.API."+req[0], out)
			})
		}
	}
	for _, subj := range []string{"$JS.API.STREAM.PURGE.EVENTS", "$JS.API.STREAM.LIST", "$JS.hub.API.STREAM.DELETE.EVENTS", "$JS.s1.API.STREAM.PURGE.EVENTS"} {
		tries.add(func() { pubRefused("the ops user", opsCreds, subj, "{}") })
	}
	// The stock CLI's own commands, through the prefix, fail.
	for _, args := range [][]string{
		{"stream", "purge", "EVENTS", "-f"}, {"stream", "edit", "EVENTS", "--max-msgs", "1", "-f"}, {"consumer", "rm", "EVENTS", "bob", "-f"},
	} {
		tries.add(func() {
			if out, ok := natsTry(curl, opsCreds, append([]string{"--js-api-prefix", "tenants.acme.js.API"}, args...)...); ok {
				t.Errorf("the ops user's nats %s worked: %s", strings.Join(args, " "), tail(out, 5))
			}
		})
	}
	tries.run()
	// Without effect: acme's EVENTS holds the same messages, from the
	// same first sequence, with the same configuration.
	if after := streamState(t, natsBin, curl, admin, "EVENTS"); after != eventsBefore {
		t.Errorf("acme's EVENTS changed under the ops user's attempts:\nbefore %+v\nafter  %+v", eventsBefore, after)
	}
	// Nor does it update, read or remove a tenant user's consumer.
	if out, ok := natsAs(curl, bob, "consumer", "add", "EVENTS", "bob-1", "--pull", "--deliver", "all", "--ack", "explicit", "--defaults"); !ok {
		t.Fatalf("bob makes his consumer bob-1: %s", tail(out, 5))
	}
	for _, req := range [][2]string{
		{"CONSUMER.CREATE.EVENTS.bob-1", `{"stream_name":"EVENTS","config":{"durable_name":"bob-1","deliver_policy":"all","ack_policy":"explicit","description":"changed by ops"}}`},
		{"CONSUMER.MSG.NEXT.EVENTS.bob-1", `{"batch":1,"expires":500000000}`},
		{"CONSUMER.CREATE.EVENTS.x", `{"stream_name":"EVENTS","config":{"name":"x","deliver_policy":"all","ack_policy":"none","inactive_threshold":2000000000}}`},
		{"CONSUMER.CREATE.EVENTS.bob-1.ev.>", `{"stream_name":"EVENTS","config":{"durable_name":"bob-1","filter_subject":"ev.>","ack_policy":"explicit"}}`},
	} {
		tries.add(func() { pubRefused("the ops user", opsCreds, "tenants.acme.js.API."+req[0], req[1]) })
		tries.add(func() {
			out, _ := natsTry(curl, opsCreds, "req", "tenants.acme.js.API."+req[0], req[1])
			unanswered("the ops user's request on tenants.acme.js.API."+req[0], out)
		})
	}
	tries.run()
	if out, ok := natsAs(curl, bob, "consumer", "info", "EVENTS", "bob-1", "--json"); !ok || strings.Contains(out, "changed by ops") ||
		!strings.Contains(out, `"num_ack_pending": 0`) {
		t.Errorf("bob's consumer bob-1 after the ops user's attempts (changed, or a message taken): %s", tail(out, 30))
	}

	// Afterwards: every site's link still carries, and central holds
	// every event of every site, none forged; the NOC's feed and the ops
	// view saw exactly those.
	t.Logf("attacks done %s after the first events were published", time.Since(published).Round(time.Millisecond))
	publish("s1", 100, "b")
	publish("s2", 100, "b")
	published = time.Now()
	for _, site := range []string{"s1", "s2"} {
		eventually.True(t, 60*time.Second, site+"'s events at central after the attacks", func() bool { return centralCount("ev."+site+".>") == want[site] })
		t.Logf("%s's events after the attacks at central %s after they were published", site, time.Since(published).Round(time.Millisecond))
	}
	if n := centralCount("ev.s1.forged.>"); n != 0 {
		t.Errorf("central holds %d forged events", n)
	}
	total := want["s1"] + want["s2"]
	eventually.True(t, 30*time.Second, "the NOC's feed and the ops view to see every stored event", func() bool {
		return strings.Count(feed.out.String(), "-event") >= total && strings.Count(opsSub.out.String(), `Received on "tenants.acme.ev.`) >= total
	})
	if out := replies.out.String(); strings.Contains(out, "forged-s2-reply") || strings.Contains(out, "forged-unscoped-reply") {
		t.Errorf("s1's leaf credential answered a request that is not its site's: %s", out)
	}
	if strings.Contains(feed.out.String(), "forged") || strings.Contains(opsSub.out.String(), "forged") {
		t.Errorf("the poller's publish at central reached the NOC's feed or the ops view")
	}
	if n := strings.Count(opsSub.out.String(), `Received on "tenants.acme.ev.`); n != total {
		t.Errorf("the ops view saw %d events, want %d", n, total)
	}
	// (It sees its own publishes, locally: only central's count.)
	for subj, sub := range got {
		for {
			m, err := sub.NextMsg(10 * time.Millisecond)
			if err != nil {
				break
			}
			if string(m.Data) != "forged-event" {
				t.Errorf("the rogue leaf got %s on %s from central", m.Subject, subj)
			}
		}
	}
	// bob's consumer is still there, with its settings.
	if out, ok := natsAs(curl, bob, "consumer", "info", "EVENTS", "bob", "--json"); !ok || strings.Contains(out, `"inactive_threshold": 1000000000`) {
		t.Errorf("bob's consumer after alice's attempts: %s", tail(out, 5))
	}
	// An admin can still make a consumer: the NOC's bound kept room.
	if out, ok := natsAs(curl, admin, "consumer", "add", "EVENTS", "admin-reader", "--pull", "--defaults"); !ok {
		t.Errorf("the admin's consumer: %s", tail(out, 5))
	}
}

// rogueLeaf runs a stock nats-server in this process that dials url as a
// leaf node with the credentials in creds, and returns a client of it,
// once the leaf link is up.
func rogueLeaf(t *testing.T, url, creds string) *nats.Conn {
	t.Helper()
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, ServerName: "rogue"}
	opts.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: []*neturl.URL{u}, Credentials: creds}}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("rogue server not ready")
	}
	eventually.True(t, 20*time.Second, "the rogue leaf link", func() bool { return srv.NumLeafNodes() == 1 })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTaskAttacks runs a central peer in operator mode with one tenant and
// two sites, s1 with a poller, all real processes, and tries with the
// stock nats CLI to reach s1's tasks with s2's credentials: its poller's,
// as a client at central and at both sites, and its join token's leaf
// user, through a stock nats-server that dials central as a leaf (as a
// client it connects nowhere). None
// sends a request to s1, reads a request or a reply of s1's, or answers in
// s1's place; at its own site s2's poller neither sends a request in the
// ops realm nor reads its site's replies; a NOC and s1's poller read no
// site's requests. s1's poller's own push consumer delivering an event it
// wrote, shaped as a request, on the admin's task subject runs nothing.
// Afterwards s1 has run the admin's tasks only, and the admin's watch at
// central and at s1 saw none of the forged messages.
func TestTaskAttacks(t *testing.T) {
	natsBin := need(t, "nats")
	dir := t.TempDir()
	_, keys, curl, lport := startOperatorCentral(t, dir)
	cli := func(args ...string) string { return mustRun(t, append([]string{"--server", curl}, args...)...) }
	cli("tenant", "create", "acme", "--keys", keys)
	sites, tokens := map[string]string{}, map[string]string{}
	for _, site := range []string{"s1", "s2"} {
		token := filepath.Join(dir, site+".token")
		cli("site", "add", site, "--tenant", "acme", "--keys", keys, "--central", "nats-leaf://127.0.0.1:"+strconv.Itoa(lport), "--token-file", token)
		port := freePort(t, "tcp")
		p := runMeshmon(t, site, "peer", "run", "--role", "site", "--name", site+"-peer", "--join-file", token,
			"--listen", "127.0.0.1:"+strconv.Itoa(port), "--data-dir", filepath.Join(dir, site))
		p.waitOutput(`peer `+site+`-peer ready`, peerReady)
		sites[site], tokens[site] = "nats://127.0.0.1:"+strconv.Itoa(port), token
	}
	sites["central"] = curl
	creds := func(args ...string) string {
		f := filepath.Join(dir, strings.Join(args, "-")+".creds")
		cli(append([]string{"tenant", "creds", "acme", "--keys", keys, "--out", f}, args...)...)
		return f
	}
	admin, noc := creds("--role", "admin", "--user", "boss"), creds("--role", "noc", "--user", "nina")
	p1, p2 := creds("--role", "poller", "--site", "s1", "--user", "p1"), creds("--role", "poller", "--site", "s2", "--user", "p2")
	poller := runMeshmon(t, "poller-s1", "--server", sites["s1"], "--creds", p1, "poller", "run", "--data-dir", filepath.Join(dir, "p1"))
	poller.waitOutput(`poller started`, 30*time.Second)

	// What crosses at central and at s1, as the admin sees it.
	watch := map[string]*proc{}
	for _, at := range []string{"central", "s1"} {
		watch[at] = start(t, "nats sub ctl.> at "+at, natsBin, withInboxPrefix([]string{"--server", sites[at], "--creds", admin, "sub", "ctl.>"})...)
		watch[at].waitOutput(`Subscribing on ctl\.>`, 10*time.Second)
	}
	// tasks the admin ran, of tries: a try that failed (the poller not
	// in its group yet) may still have run late.
	tasks, tries := 0, 0
	task := func() {
		t.Helper()
		eventually.True(t, 30*time.Second, "the admin's task ping at s1", func() bool {
			tries++
			_, _, code := run(t, "--server", curl, "--creds", admin, "task", "ping", "--site", "s1", "127.0.0.1", "--reach", "2s")
			return code == 0
		})
		tasks++
	}
	task()
	// A real task's id, for a forged reply to it.
	realID := regexp.MustCompile(`Received on "ctl\.s1\.reply\.([A-Za-z0-9]+)"`).FindStringSubmatch(watch["central"].out.String())
	if realID == nil {
		t.Fatalf("no reply of the admin's task at central:\n%s", watch["central"].out.String())
	}

	// refused: the server refuses the connection, publish or
	// subscription, and says so.
	refused := func(what, server, credsFile string, args ...string) {
		t.Helper()
		out, ok := natsCLI(t, natsBin, append([]string{"--server", sites[server], "--creds", credsFile, "--timeout", "1s"}, args...)...)
		if ok || !strings.Contains(out, "Violation") {
			t.Errorf("%s at %s was not refused (exit ok %v): %s", what, server, ok, tail(out, 5))
		}
	}
	forged := func(id string) string { return `{"id":"` + id + `","verb":"ping","site":"s1","address":"127.0.0.1"}` }

	// --- s2's poller ---
	// At its own site: no request to s1 in either realm,
	// as itself or as the admin, no reply to s1's task, and none of s1's
	// requests or replies read. At s1 and at central it does not connect.
	for _, at := range []string{"central", "s2", "s1"} {
		for _, subj := range []string{"ctl.s1.req.p2.ping", "ctl.s1.req.boss.ping", "ctl.s1.ops.p2.ping", "ctl.s1.reply." + realID[1]} {
			refused("s2's poller publishing on "+subj, at, p2, "pub", subj, forged("forged-p2-"+at))
		}
		for _, subj := range []string{"ctl.s1.*.*.*", "ctl.s1.req.*.*", "ctl.s1.reply.>", "ctl.*.reply.>", "ctl.*.req.*.*", "ctl.>"} {
			refused("s2's poller subscribing to "+subj, at, p2, "sub", subj, "--count", "1")
		}
	}
	// At its own site, beyond what a poller needs: a request in the ops
	// realm, and its own site's replies (it sends them, never reads them).
	refused("s2's poller publishing on ctl.s2.ops.p2.ping", "s2", p2, "pub", "ctl.s2.ops.p2.ping", forged("forged-p2-ops"))
	refused("s2's poller subscribing to ctl.s2.reply.>", "s2", p2, "sub", "ctl.s2.reply.>", "--count", "1")

	// --- a NOC and s1's poller: no site's requests read ---
	for _, at := range []string{"central", "s1"} {
		for _, subj := range []string{"ctl.*.req.*.*", "ctl.*.ops.*.*", "ctl.s1.req.>", "ctl.*.*.*.*"} {
			refused("the NOC subscribing to "+subj, at, noc, "sub", subj, "--count", "1")
		}
		for _, subj := range []string{"ctl.*.req.*.*", "ctl.*.ops.*.*", "ctl.s2.req.*.*", "ctl.*.reply.>"} {
			refused("s1's poller subscribing to "+subj, at, p1, "sub", subj, "--count", "1")
		}
	}

	// --- s2's join token, as a leaf ---
	// A stock nats-server dials central with s2's leaf credential: it
	// takes none of s1's requests or replies, and what it sends on s1's
	// subjects reaches neither central's subscribers nor s1.
	_, info, err := bus.ParseJoinToken(strings.TrimSpace(readFile(t, tokens["s2"])))
	if err != nil {
		t.Fatal(err)
	}
	leafCreds, upkeepCreds := filepath.Join(dir, "s2-leaf.creds"), filepath.Join(dir, "s2-upkeep.creds")
	for f, c := range map[string]string{leafCreds: info.Creds, upkeepCreds: info.UpkeepCreds} {
		if err := os.WriteFile(f, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// As a client, its users connect nowhere.
	for _, at := range []string{"central", "s2", "s1"} {
		for what, c := range map[string]string{"leaf": leafCreds, "upkeep": upkeepCreds} {
			out, ok := natsCLI(t, natsBin, "--server", sites[at], "--creds", c, "pub", "ctl.s1.req.boss.ping", forged("forged-"+what+"-client"))
			if ok || !strings.Contains(out, "Authorization Violation") {
				t.Errorf("s2's token's %s user connected as a client at %s: %s", what, at, tail(out, 5))
			}
		}
	}
	rogue := rogueLeaf(t, "nats-leaf://127.0.0.1:"+strconv.Itoa(lport), leafCreds)
	got := map[string]*nats.Subscription{}
	for _, subj := range []string{"ctl.s1.>", "ctl.*.reply.>", "ctl.*.req.*.*", "ctl.s1.req.boss.ping"} {
		sub, err := rogue.SubscribeSync(subj)
		if err != nil {
			t.Fatal(err)
		}
		got[subj] = sub
	}
	if err := rogue.Flush(); err != nil {
		t.Fatal(err)
	}
	for subj, body := range map[string]string{
		"ctl.s1.req.boss.ping":           forged("forged-leaf-req"),
		"ctl.s1.ops.olga.ping":           forged("forged-leaf-ops"),
		"ctl.s1.req.boss.cancel":         `{"id":"forged-leaf-cancel","verb":"cancel","site":"s1"}`,
		"ctl.s1.reply." + realID[1]:      `{"id":"forged-leaf-reply","done":true}`,
		"ctl.s1.reply.ops.olga.forged-x": `{"id":"forged-leaf-ops-reply","done":true}`,
	} {
		if err := rogue.Publish(subj, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rogue.Flush(); err != nil {
		t.Fatal(err)
	}
	// Its requests to s1 go unanswered.
	if m, err := rogue.Request("ctl.s1.req.boss.ping", []byte(forged("forged-leaf-request")), 2*time.Second); err == nil {
		t.Errorf("the rogue leaf's task request to s1 was answered: %s", m.Data)
	}

	// --- s1's poller's own push consumer ---
	// It writes an event shaped as the admin's request and has its
	// consumer deliver it on the admin's task subject, to which it
	// subscribes so the consumer has interest: nats-server does not check
	// a deliver subject against the creator's permissions, but a delivery
	// keeps the stored message's subject (ev.s1.…), which the site's
	// pollers do not take for a request.
	if out, ok := natsCLI(t, natsBin, "--server", sites["s1"], "--creds", p1, "pub", "ev.s1.x.trap", forged("redirected"), "--jetstream"); !ok {
		t.Fatalf("s1's poller's event: %s", tail(out, 5))
	}
	hold := start(t, "nats sub as s1's poller", natsBin, withInboxPrefix([]string{"--server", sites["s1"], "--creds", p1, "sub", "ctl.s1.req.boss.ping"})...)
	hold.waitOutput(`Subscribing on`, 10*time.Second)
	if out, ok := natsCLI(t, natsBin, "--server", sites["s1"], "--creds", p1, "req", "$JS.API.CONSUMER.CREATE.EVENTS.p1.ev.s1.x.trap",
		`{"stream_name":"EVENTS","config":{"name":"p1","filter_subject":"ev.s1.x.trap","deliver_subject":"ctl.s1.req.boss.ping","deliver_policy":"all","ack_policy":"none"}}`); !ok || !strings.Contains(out, `"created"`) {
		t.Fatalf("s1's poller's push consumer: %s", tail(out, 5))
	}
	hold.waitOutput(`"id":"redirected"`, 10*time.Second)

	// Afterwards: the admin's tasks run, and s1 ran those only.
	task()
	type audit struct{ ID, By, Result string }
	var audits []audit
	eventually.True(t, 30*time.Second, "the audit events of the admin's tasks at central", func() bool {
		out, _, code := run(t, "--server", curl, "--creds", admin, "events", "tail", "--site", "s1", "--since", "1h", "--no-follow", "--json")
		if code != 0 {
			return false
		}
		audits = nil
		for _, l := range lines(out) {
			var ev struct {
				Data struct {
					Task *audit `json:"task"`
				} `json:"data"`
			}
			if json.Unmarshal([]byte(l), &ev) == nil && ev.Data.Task != nil {
				audits = append(audits, *ev.Data.Task)
			}
		}
		return len(audits) >= tasks
	})
	for _, a := range audits {
		if a.By != "boss" || a.Result != "ok" || strings.HasPrefix(a.ID, "forged") || a.ID == "redirected" {
			t.Errorf("s1 ran a task it was not asked by the admin: %+v", a)
		}
	}
	if len(audits) > tries {
		t.Errorf("s1 recorded %d tasks, the admin ran %d (in %d tries): %+v", len(audits), tasks, tries, audits)
	}
	for at, w := range watch {
		if strings.Contains(w.out.String(), "forged") {
			t.Errorf("a forged task message reached the admin's watch at %s:\n%s", at, w.out.String())
		}
	}
	for subj, sub := range got {
		for {
			m, err := sub.NextMsg(10 * time.Millisecond)
			if err != nil {
				break
			}
			if !strings.Contains(string(m.Data), "forged") {
				t.Errorf("the rogue leaf got %s on %s from central: %s", m.Subject, subj, m.Data)
			}
		}
	}
}

// streamState is a stream's state and configuration, as user reads them
// with the stock nats CLI at server: what an attack on the stream would
// change.
func streamState(t *testing.T, natsBin, server, user, stream string) string {
	t.Helper()
	out, ok := natsCLI(t, natsBin, "--server", server, "--creds", user, "stream", "info", stream, "--json")
	var info struct {
		Config json.RawMessage `json:"config"`
		State  struct {
			Msgs     uint64 `json:"messages"`
			FirstSeq uint64 `json:"first_seq"`
			LastSeq  uint64 `json:"last_seq"`
			Deleted  uint64 `json:"num_deleted"`
		} `json:"state"`
	}
	if !ok || json.Unmarshal([]byte(out), &info) != nil {
		t.Fatalf("stream info %s: %s", stream, tail(out, 10))
	}
	return fmt.Sprintf("%d messages, sequences %d to %d, %d deleted; config %s", info.State.Msgs, info.State.FirstSeq, info.State.LastSeq, info.State.Deleted, info.Config)
}

// attempts are checks that run at once when run is called, four at a
// time: most are nats CLI processes that wait out a timeout for an answer
// they must not get, and one after the other they were most of
// TestAttacks' time. Each is independent of the others (none changes what
// another tries); a check reports with t.Errorf, never t.Fatal.
type attempts struct{ checks []func() }

func (a *attempts) add(check func()) { a.checks = append(a.checks, check) }

// run runs the checks added since the last run and returns when all are
// done.
func (a *attempts) run() {
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, c := range a.checks {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c()
		})
	}
	wg.Wait()
	a.checks = nil
}

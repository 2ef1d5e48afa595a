//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus/alarmbus"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/sim"
)

// TestAlarmsCLI drives 'meshmon alarms' and 'meshmon maintenance' as an
// operator would, against real processes: a central peer in operator
// mode, tenant acme's sites s1 and s2, each with its peer and poller, and
// simulated devices that go down. An admin (bob) and a NOC (alice) act
// with their tenant credentials: the NOC lists, shows, acks, unacks and
// comments, and may not clear nor add a window; every action is a change
// on ALARMS naming who, what and when; wrong input is one line naming
// the field.
func TestAlarmsCLI(t *testing.T) {
	natsBin := need(t, "nats")
	dir := t.TempDir()
	_, keys, curl, lport := startOperatorCentral(t, dir)
	cli := func(args ...string) string { return mustRun(t, append([]string{"--server", curl}, args...)...) }
	cli("tenant", "create", "acme", "--keys", keys)
	creds := func(name string, args ...string) string {
		f := filepath.Join(dir, name+".creds")
		cli(append([]string{"tenant", "creds", "acme", "--keys", keys, "--out", f}, args...)...)
		return f
	}
	admin, noc := creds("admin", "--role", "admin", "--user", "bob"), creds("noc", "--role", "noc", "--user", "alice")
	as := func(c string, args ...string) []string {
		return append([]string{"--server", curl, "--creds", c}, args...)
	}

	agents := startSim(t, "cli", "127.76.0.1", 3).Agents()
	a0, a1, a2 := agents[0], agents[1], agents[2]
	// s1 polls a0 and a1 (SNMP) and "dead", which answers no ping (an
	// address of TEST-NET-1); s2 polls a2.
	bySite := map[string][]*sim.Agent{"s1": {a0, a1}, "s2": {a2}}
	for _, s := range []string{"s1", "s2"} {
		token := filepath.Join(dir, s+".token")
		cli("site", "add", s, "--tenant", "acme", "--keys", keys, "--central", "nats-leaf://127.0.0.1:"+strconv.Itoa(lport), "--token-file", token)
		port := freePort(t, "tcp")
		p := runMeshmon(t, s, "peer", "run", "--role", "site", "--name", s+"-peer", "--join-file", token,
			"--listen", "127.0.0.1:"+strconv.Itoa(port), "--data-dir", filepath.Join(dir, s))
		p.waitOutput(`peer `+s+`-peer ready`, peerReady)
		surl := "nats://127.0.0.1:" + strconv.Itoa(port)
		for _, a := range bySite[s] {
			mustRun(t, "--server", surl, "--creds", admin, "device", "add", a.Name(), "--address", a.Addr().Addr().String(),
				"--checks", "snmp", "--snmp-port", strconv.Itoa(int(a.Addr().Port())), "--interval", "1s")
		}
		if s == "s1" {
			mustRun(t, "--server", surl, "--creds", admin, "device", "add", "dead", "--address", "192.0.2.10", "--checks", "icmp",
				"--interval", "1s", "--probe-timeout", "500ms")
		}
		pc := creds("poller-"+s, "--role", "poller", "--site", s, "--user", "p-"+s)
		poller := runMeshmon(t, "poller-"+s, "--server", surl, "--creds", pc, "poller", "run", "--name", "p-"+s,
			"--data-dir", filepath.Join(dir, "p-"+s), "--down-after", "1", "--up-after", "1")
		poller.waitOutput(`poller started`, 30*time.Second)
	}
	waitAnswered(t, agents)
	a0.Down(true)
	if err := a1.SetIfOper(1, false); err != nil {
		t.Fatal(err)
	}
	a2.Down(true)
	idA0, idA1, idA2 := alarm.ID("s1", a0.Name(), meshmon.CheckSNMP), alarm.ID("s1", a1.Name(), "if.1"), alarm.ID("s2", a2.Name(), meshmon.CheckSNMP)
	idDead := alarm.ID("s1", "dead", meshmon.CheckICMP)

	list := func(c string, args ...string) []string {
		t.Helper()
		var got []alarm.Alarm
		out := mustRun(t, as(c, append([]string{"alarms", "list", "--json"}, args...)...)...)
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("alarms list --json %v: %v: %q", args, err, out)
		}
		ids := []string{}
		for _, a := range got {
			ids = append(ids, a.ID)
		}
		return ids
	}
	// A fresh tenant site's first events can take tens of seconds to
	// reach an operator-mode central (docs/tenancy.md).
	eventually.True(t, 120*time.Second, "the four alarms open at central", func() bool {
		out, _, code := run(t, as(noc, "alarms", "list", "--json")...)
		var open []alarm.Alarm
		return code == 0 && json.Unmarshal([]byte(out), &open) == nil && len(open) == 4
	})

	// list and its filters, as the NOC.
	all := list(noc)
	if len(all) != 4 || all[0] != idDead {
		t.Fatalf("alarms list: %v, want 4, the critical %s first", all, idDead)
	}
	sameSet := func(what string, got []string, want ...string) {
		t.Helper()
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}
	sameSet("all open", all, idA0, idA1, idA2, idDead)
	sameSet("--site s2", list(noc, "--site", "s2"), idA2)
	sameSet("--site s1", list(noc, "--site", "s1"), idA0, idA1, idDead)
	sameSet("--device "+a1.Name(), list(noc, "--device", a1.Name()), idA1)
	sameSet("--severity critical", list(noc, "--severity", "critical"), idDead)
	sameSet("--severity major", list(noc, "--severity", "major"), idA0, idA1, idA2)
	sameSet("--severity warning", list(noc, "--severity", "warning"))
	sameSet("--state cleared", list(noc, "--state", "cleared"))
	sameSet("--site s1 --severity major", list(noc, "--site", "s1", "--severity", "major"), idA0, idA1)
	if out := mustRun(t, as(noc, "alarms", "list")...); !strings.Contains(out, "SEVERITY") || !strings.Contains(out, idA1) {
		t.Errorf("alarms list (text):\n%s", out)
	}

	// show.
	show := func(id string) alarm.Alarm {
		t.Helper()
		var a alarm.Alarm
		out := mustRun(t, as(noc, "alarms", "show", id, "--json")...)
		if err := json.Unmarshal([]byte(out), &a); err != nil {
			t.Fatalf("alarms show %s --json: %v: %q", id, err, out)
		}
		return a
	}
	if a := show(idA1); a.ID != idA1 || a.Site != "s1" || a.Device != a1.Name() || a.Kind != meshmon.KindIfDown || a.State != alarm.StateOpen || a.Severity != meshmon.SeverityMajor {
		t.Fatalf("alarms show %s: %+v", idA1, a)
	}
	if out := mustRun(t, as(noc, "alarms", "show", idA1)...); !strings.Contains(out, "id:") || !strings.Contains(out, idA1) || !strings.Contains(out, "if_down") {
		t.Errorf("alarms show (text):\n%s", out)
	}

	// Wrong input: one line on stderr, exit 1, naming the field.
	refused := func(c string, want string, args ...string) {
		t.Helper()
		_, e, code := run(t, as(c, args...)...)
		if code != 1 || !strings.Contains(e, want) || strings.Count(strings.TrimSpace(e), "\n") != 0 {
			t.Errorf("meshmon %s: exit %d, stderr %q; want exit 1 and one line saying %q", strings.Join(args, " "), code, e, want)
		}
	}
	refused(noc, `--severity "bogus" is unknown`, "alarms", "list", "--severity", "bogus")
	refused(noc, `--state "closed" is unknown`, "alarms", "list", "--state", "closed")
	refused(noc, "alarm s1.nope.snmp: no such alarm", "alarms", "show", "s1.nope.snmp")
	refused(noc, "no such alarm", "alarms", "ack", "s1.nope.snmp")
	refused(noc, `alarm id "nope" is not <site>.<device>.<check>`, "alarms", "ack", "nope")
	refused(noc, "comment text is empty", "alarms", "comment", idA1, " ")

	// The NOC's actions, each a change naming who, what and when.
	began := time.Now()
	if out := mustRun(t, as(noc, "alarms", "ack", idA1, "--comment", "looking")...); !strings.Contains(out, "alarm "+idA1+" acked by alice") {
		t.Errorf("ack: %q", out)
	}
	refused(noc, "acknowledged by alice already", "alarms", "ack", idA1)
	mustRun(t, as(noc, "alarms", "unack", idA1)...)
	refused(noc, "it is not acknowledged", "alarms", "unack", idA1)
	mustRun(t, as(noc, "alarms", "comment", idA1, "cable swapped")...)
	mustRun(t, as(noc, "alarms", "ack", idA1)...)
	if a := show(idA1); !a.Acked || a.AckedBy != "alice" || len(a.Comments) != 2 || a.Comments[1].Text != "cable swapped" || a.Comments[1].By != "alice" {
		t.Errorf("after the NOC's actions: acked %v by %q, comments %+v", a.Acked, a.AckedBy, a.Comments)
	}
	// What the NOC may not do: clear (refused by the CLI, and by the
	// server when asked directly), add a window.
	refused(noc, "clear takes an admin's credential", "alarms", "clear", idA0)
	// (The server refuses the publish: the request gets no answer, and
	// the alarm stays as it was, checked below.)
	body, _ := json.Marshal(alarm.Action{Verb: alarm.VerbClear, ID: idA0})
	for _, subj := range []string{alarmbus.ActionSubject("alice", alarm.VerbClear), alarmbus.ActionSubject("bob", alarm.VerbAck)} {
		if out, _ := natsCLI(t, natsBin, "--server", curl, "--creds", noc, "--timeout", "2s", "request", subj, string(body)); strings.Contains(out, "Received") {
			t.Errorf("the NOC's request on %s was answered: %s", subj, out)
		}
	}
	if _, _, code := run(t, as(noc, "maintenance", "add", "sneaky", "--site", "s1", "--start", time.Now().UTC().Format(time.RFC3339), "--duration", "1h")...); code != 1 {
		t.Errorf("the NOC added a maintenance window: exit %d", code)
	}
	if a := show(idA0); a.State != alarm.StateOpen || a.Acked {
		t.Fatalf("after the NOC's clear and ack as bob: %s is %s, acked %v by %q", idA0, a.State, a.Acked, a.AckedBy)
	}
	// The admin clears.
	if out := mustRun(t, as(admin, "alarms", "clear", idA0, "--comment", "replaced")...); !strings.Contains(out, "alarm "+idA0+" cleared by bob") {
		t.Errorf("clear: %q", out)
	}
	if a := show(idA0); a.State != alarm.StateCleared || a.ClearedBy != "bob" {
		t.Errorf("after the admin's clear: %s %s by %q", idA0, a.State, a.ClearedBy)
	}
	refused(admin, "alarm is not open", "alarms", "clear", idA0)
	sameSet("--state cleared", list(noc, "--state", "cleared"), idA0)
	sameSet("--state all", list(noc, "--state", "all"), idA0, idA1, idA2, idDead)
	sameSet("open", list(noc), idA1, idA2, idDead)

	// ALARMS holds each action as a change naming who, what and when.
	changes := readChanges(t, curl, admin)
	var acts []string
	for _, c := range changes {
		if c.By == "" {
			continue
		}
		acts = append(acts, c.Alarm.ID+" "+c.What+" "+c.By)
		if c.At.Before(began.Add(-time.Minute)) || c.At.After(time.Now().Add(time.Minute)) {
			t.Errorf("change %s %s by %s at %s: not when it was made (from %s)", c.Alarm.ID, c.What, c.By, c.At, began)
		}
	}
	want := []string{idA1 + " acked alice", idA1 + " unacked alice", idA1 + " commented alice", idA1 + " acked alice", idA0 + " cleared bob"}
	if !slices.Equal(acts, want) {
		t.Errorf("actions on ALARMS: %v, want %v", acts, want)
	}

	// Maintenance windows, as the admin: listed sorted by ID, whatever
	// the order they were added in; an alarm inside one shows it.
	paris, _ := time.LoadLocation("Europe/Paris")
	tomorrow := time.Now().In(paris).Add(24 * time.Hour)
	nightly := time.Date(tomorrow.Year(), tomorrow.Month(), tomorrow.Day(), 2, 0, 0, 0, paris)
	mustRun(t, as(admin, "maintenance", "add", "zz-nightly", "--site", "s2", "--start", nightly.Format("2006-01-02T15:04"),
		"--end", nightly.Add(time.Hour).Format("2006-01-02T15:04"), "--every", "daily", "--tz", "Europe/Paris", "--comment", "backup window")...)
	swapStart := time.Now().In(paris).Add(-time.Minute)
	mustRun(t, as(admin, "maintenance", "add", "aa-swap", "--site", "s1", "--device", a1.Name(), "--start", swapStart.Format("2006-01-02T15:04"),
		"--duration", "2h", "--tz", "Europe/Paris")...)
	var ws []alarm.Window
	out := mustRun(t, as(noc, "maintenance", "list", "--json")...)
	if err := json.Unmarshal([]byte(out), &ws); err != nil || len(ws) != 2 {
		t.Fatalf("maintenance list --json: %v: %q", err, out)
	}
	if ws[0].ID != "aa-swap" || ws[1].ID != "zz-nightly" {
		t.Errorf("maintenance list: %s, %s; want sorted by ID", ws[0].ID, ws[1].ID)
	}
	if w := ws[1]; !w.Start.Equal(nightly) || w.Every != alarm.EveryDaily || w.TZ != "Europe/Paris" || w.Duration.D() != time.Hour || w.Site != "s2" || w.By != "bob" {
		t.Errorf("the nightly window: %+v, want daily from %s for 1h in Europe/Paris, by bob", w, nightly)
	}
	if w := ws[0]; w.Device != a1.Name() || w.Every != alarm.EveryOnce || w.Duration.D() != 2*time.Hour {
		t.Errorf("the swap window: %+v", w)
	}
	text := mustRun(t, as(noc, "maintenance", "list")...)
	if i, j := strings.Index(text, "aa-swap"), strings.Index(text, "zz-nightly"); i < 0 || j < i || !strings.Contains(text, "daily") {
		t.Errorf("maintenance list (text):\n%s", text)
	}
	eventually.True(t, 30*time.Second, idA1+" in the swap window", func() bool { return show(idA1).Maintenance == "aa-swap" })
	if out := mustRun(t, as(noc, "alarms", "list")...); !strings.Contains(out, "maintenance aa-swap") {
		t.Errorf("alarms list does not show the window:\n%s", out)
	}
	if a := show(idA2); a.Maintenance != "" {
		t.Errorf("%s is in window %q; the nightly one has not begun", idA2, a.Maintenance)
	}
	// Bad windows, each one line naming the field.
	start := time.Now().UTC().Format(time.RFC3339)
	refused(admin, `--start: start "2026-13-45T25:00"`, "maintenance", "add", "w", "--start", "2026-13-45T25:00", "--duration", "1h")
	refused(admin, `--tz "Mars/Olympus"`, "maintenance", "add", "w", "--start", "2026-12-04T02:00", "--duration", "1h", "--tz", "Mars/Olympus")
	refused(admin, `every "hourly" is unknown`, "maintenance", "add", "w", "--start", start, "--duration", "1h", "--every", "hourly")
	refused(admin, "longer than its recurrence (daily)", "maintenance", "add", "w", "--start", start, "--duration", "25h", "--every", "daily")
	refused(admin, "--duration or --end is required", "maintenance", "add", "w", "--start", start)
	refused(admin, "--duration and --end both", "maintenance", "add", "w", "--start", start, "--duration", "1h", "--end", start)
	refused(admin, "device \"x\" needs its site", "maintenance", "add", "w", "--device", "x", "--start", start, "--duration", "1h")
	refused(admin, "maintenance window does not exist: nope", "maintenance", "rm", "nope")
	mustRun(t, as(admin, "maintenance", "rm", "aa-swap")...)
	eventually.True(t, 30*time.Second, idA1+" out of the removed window", func() bool { return show(idA1).Maintenance == "" })
	out = mustRun(t, as(noc, "maintenance", "list", "--json")...)
	if err := json.Unmarshal([]byte(out), &ws); err != nil || len(ws) != 1 || ws[0].ID != "zz-nightly" {
		t.Errorf("maintenance list after rm: %v: %q", err, out)
	}
}

// readChanges reads every change in central's ALARMS with creds.
func readChanges(t *testing.T, url, creds string) []alarm.Change {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserCredentials(creds), nats.CustomInboxPrefix(inboxOf(t, creds)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, alarm.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []alarm.Change
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(fmt.Errorf("ALARMS message %d: %w", seq, err))
		}
		var c alarm.Change
		if err := json.Unmarshal(m.Data, &c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// inboxOf is the inbox prefix a tenant user's credentials allow.
func inboxOf(t *testing.T, creds string) string {
	t.Helper()
	args := withInboxPrefix([]string{"--creds", creds})
	if len(args) < 2 || args[0] != "--inbox-prefix" {
		t.Fatalf("no inbox prefix for %s", creds)
	}
	return args[1]
}

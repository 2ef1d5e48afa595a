package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/alarm"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/bus/alarmbus"
	"github.com/meshmon/meshmon/internal/demo"
	"github.com/meshmon/meshmon/internal/eventually"
	"github.com/meshmon/meshmon/poller"
	"github.com/meshmon/meshmon/sim"
)

// TestTopologyParentsCommand: a real peer, a poller and simulated devices
// forming an LLDP/CDP tree (the demo's: agent i is linked to its parent
// i/2). `topology parents --root dev1` prints, without --apply, the
// tree's parents and writes nothing; with --apply it sets them on the
// devices that have none and keeps the one set by hand; with --replace it
// replaces that too. Bad roots and a site without lldp samples fail naming
// the flag. Then the poller carries the parents into the events, and the
// alarm processor makes the alarms of the devices behind a parent that
// went down its symptoms, and no other.
func TestTopologyParentsCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	d, err := demo.Start(ctx, demo.Config{Dir: dir, Listen: "127.0.0.1:0", Devices: 7, Interval: time.Second,
		Version: "test", Topology: sim.TopologyTree})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte(d.Conn.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := []string{"--server", d.Conn.URL, "--user", d.Conn.User, "--password-file", pw, "--tlsca", d.Conn.CAFile, "--timeout", "20s"}
	agents := d.Sim.Agents()
	dev := func(i int) string { return agents[i-1].Name() } // agent i, 1-based as the tree numbers them

	inv, err := bus.OpenInventory(ctx, d.JS)
	if err != nil {
		t.Fatal(err)
	}
	// dev7's parent by hand: dev2 (the tree says dev3).
	d7, err := inv.Get(ctx, dev(7))
	if err != nil {
		t.Fatal(err)
	}
	d7.Parent = dev(2)
	if _, err := inv.Put(ctx, d7); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, time.Minute, "every device's neighbours in METRICS", func() bool {
		nbs, err := bus.ReadNeighbors(ctx, d.JS, "demo")
		return err == nil && len(nbs) == len(agents)
	})

	parents := func(args ...string) []meshmon.ParentChange {
		t.Helper()
		out, err := stdoutOf(t, append(append(cli, "topology", "parents", "--site", "demo", "--root", dev(1), "--json"), args...)...)
		if err != nil {
			t.Fatalf("topology parents %v: %v", args, err)
		}
		var cs []meshmon.ParentChange
		if err := json.Unmarshal(out, &cs); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		return cs
	}
	// check compares the changes with want, "device:now:topology:action"
	// each, agents by number, and the inventory's parents with the
	// changes' (applied or not).
	check := func(cs []meshmon.ParentChange, applied bool, want ...string) {
		t.Helper()
		name := strings.NewReplacer("7", dev(7), "6", dev(6), "5", dev(5), "4", dev(4), "3", dev(3), "2", dev(2), "1", dev(1))
		var got []string
		for _, c := range cs {
			got = append(got, fmt.Sprintf("%s:%s:%s:%s", c.Device, c.Now, c.Topology, c.Action))
			if c.Applied != (applied && c.Writes()) || c.Error != "" {
				t.Errorf("%s: applied %v, error %q", c.Device, c.Applied, c.Error)
			}
		}
		if g, w := strings.Join(got, " "), name.Replace(strings.Join(want, " ")); g != w {
			t.Fatalf("changes\n got %s\nwant %s", g, w)
		}
		devs, err := inv.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, dv := range devs {
			want := cs[i].Now
			if applied && cs[i].Writes() {
				want = cs[i].Topology
			}
			if dv.Name != cs[i].Device || dv.Parent != want {
				t.Errorf("inventory: %s has parent %q; want %s's %q", dv.Name, dv.Parent, cs[i].Device, want)
			}
		}
	}
	check(parents(), false, "1:::root", "2::1:set", "3::1:set", "4::2:set", "5::2:set", "6::3:set", "7:2:3:keep")
	check(parents("--apply"), true, "1:::root", "2::1:set", "3::1:set", "4::2:set", "5::2:set", "6::3:set", "7:2:3:keep")
	check(parents("--replace", "--apply"), true, "1:::root", "2:1:1:same", "3:1:1:same", "4:2:2:same", "5:2:2:same", "6:3:3:same", "7:2:3:replace")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--site", "demo", "--root", "nosuch"}, "--root: invalid root nosuch: not a device of the site's inventory"},
		{[]string{"--site", "demo", "--root", dev(1) + ",Dev2"}, `--root "Dev2" must be lowercase`},
		{[]string{"--site", "branch", "--root", dev(1)}, "--site branch: no lldp samples"},
	} {
		_, err := stdoutOf(t, append(append(cli, "topology", "parents"), tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("topology parents %v: %v; want an error with %q", tc.args, err, tc.want)
		}
	}

	// The alarms: dev2 goes down, by ICMP (the parent's alarm its
	// children's are symptoms of), and the devices behind it, dev4 and
	// dev5, stop answering SNMP; so does dev6, behind dev3, which is up.
	if err := poller.NewICMPProber(poller.ICMPAuto, 1, time.Millisecond).Check(); err != nil {
		t.Skipf("the parents are set; their alarms need a poller that may ping: %v", err)
	}
	nc, err := bus.ConnectWait(ctx, d.Conn)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- alarmbus.Worker(nil, 0)(pctx, nc, "") }()
	defer func() { stop(); <-done }()
	d2, err := inv.Get(ctx, dev(2))
	if err != nil {
		t.Fatal(err)
	}
	// An address nothing answers: the device is gone. (TEST-NET-3, never
	// routed on the internet; TEST-NET-1 is a lab's own network here.)
	d2.Address, d2.Checks = "203.0.113.1", []string{meshmon.CheckICMP, meshmon.CheckSNMP}
	if _, err := inv.Update(ctx, d2); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{4, 5, 6} {
		agents[i-1].Down(true)
	}
	id := func(i int, check string) string { return alarm.ID("demo", dev(i), check) }
	eventually.NoError(t, 90*time.Second, "dev2's alarm, with dev4's and dev5's its symptoms, and dev6's not", func() error {
		select {
		case err := <-done:
			t.Fatalf("the alarm processor stopped: %v", err)
		default:
		}
		as, err := alarmbus.List(ctx, d.JS)
		if err != nil {
			return err
		}

		byID := map[string]alarm.Alarm{}
		for _, a := range as {
			byID[a.ID] = a
		}
		want := map[string]string{id(2, meshmon.CheckICMP): "", id(4, meshmon.CheckSNMP): id(2, meshmon.CheckICMP),
			id(5, meshmon.CheckSNMP): id(2, meshmon.CheckICMP), id(6, meshmon.CheckSNMP): ""}
		for w, symptomOf := range want {
			a, ok := byID[w]
			if !ok || a.State != alarm.StateOpen || a.SymptomOf != symptomOf {
				return fmt.Errorf("alarm %s: %+v; want open, a symptom of %q", w, a, symptomOf)
			}
		}
		return nil
	})
	select {
	case err := <-done:
		t.Fatalf("the alarm processor stopped: %v", err)
	default:
	}
}

package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
	"github.com/meshmon/meshmon/peer"
)

// TestTopologyCommand: `topology --site hq --json` reads the last lldp
// sample of each device of the site (an older one of r1, which names
// another neighbour, and another site's are ignored) and prints each link
// once, an unknown neighbour as such.
func TestTopologyCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := peer.DefaultConfig()
	cfg.Name, cfg.Site, cfg.Listen, cfg.DataDir, cfg.Insecure = "topology-test", "hq", "127.0.0.1:0", t.TempDir(), true
	p, err := peer.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	nc, err := nats.Connect(p.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.WaitJetStream(ctx, js); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	sample := func(site, dev, sysName string, at time.Time, ns ...meshmon.Neighbor) meshmon.Message {
		b, err := json.Marshal(meshmon.Sample{Time: at, Site: site, Device: dev, Check: meshmon.CheckLLDP,
			Labels: map[string]string{meshmon.LabelSysName: sysName}, Neighbors: ns})
		if err != nil {
			t.Fatal(err)
		}
		return meshmon.Message{Stream: meshmon.StreamMetrics, Site: site, Device: dev, Kind: meshmon.CheckLLDP, Time: at,
			ID: site + dev + at.String(), Data: b}
	}
	lldp := func(port int, sys, rport string) meshmon.Neighbor {
		return meshmon.Neighbor{Protocol: meshmon.ProtocolLLDP, LocalPort: port, LocalPortName: "eth" + string(rune('0'+port)),
			SysName: sys, PortIDSubtype: meshmon.IDInterfaceName, PortID: rport}
	}
	msgs := []meshmon.Message{
		sample("hq", "r1", "r1.hq", at, lldp(1, "old-switch", "eth9")),
		sample("hq", "r1", "r1.hq", at.Add(time.Minute), lldp(1, "r2", "eth2"), lldp(3, "gw.isp.net", "xe-1")),
		sample("hq", "r2", "r2", at.Add(time.Minute), lldp(2, "R1.hq.example.net", "eth1")),
		sample("branch", "b1", "b1", at, lldp(1, "r1", "eth1")),
	}
	if _, err := bus.NewPublisher(js).PublishBatch(ctx, msgs); err != nil {
		t.Fatal(err)
	}

	b, err := stdoutOf(t, "--server", p.ClientURL(), "topology", "--site", "hq", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var links []meshmon.Link
	if err := json.Unmarshal(b, &links); err != nil {
		t.Fatalf("%v:\n%s", err, b)
	}
	want := []meshmon.Link{
		{A: meshmon.LinkEnd{Device: "r1", Known: true, Port: "eth1"}, B: meshmon.LinkEnd{Device: "r2", Known: true, Port: "eth2"},
			Protocols: []string{"lldp"}, Both: true},
		{A: meshmon.LinkEnd{Device: "r1", Known: true, Port: "eth3"}, B: meshmon.LinkEnd{Device: "gw.isp.net", Port: "xe-1"},
			Protocols: []string{"lldp"}},
	}
	if len(links) != len(want) {
		t.Fatalf("links:\n%s", b)
	}
	for i := range want {
		if links[i].A != want[i].A || links[i].B != want[i].B || links[i].Both != want[i].Both {
			t.Errorf("link %d = %+v, want %+v", i, links[i], want[i])
		}
	}
	for _, args := range [][]string{{"--site", "Bad.Site"}, {}} {
		if err := newApp().Run(append([]string{"meshmon", "--server", p.ClientURL(), "topology"}, args...)); err == nil {
			t.Fatalf("topology %q succeeded", args)
		}
	}
}

// stdoutOf runs the command line args and returns what it printed on
// stdout.
func stdoutOf(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "stdout")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = f
	err = newApp().Run(append([]string{"meshmon"}, args...))
	os.Stdout = stdout
	f.Close()
	b, rerr := os.ReadFile(out)
	if rerr != nil {
		t.Fatal(rerr)
	}
	return b, err
}

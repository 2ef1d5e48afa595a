package meshmon_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// TestTaskPrinter: a walk's objects print as they come, or only in the
// JSON result; a discovery's progress prints at most once a second, and
// its last, never the site's "started".
func TestTaskPrinter(t *testing.T) {
	vb := meshmon.Varbind{OID: "1.3.6.1.2.1.1.5.0", Type: "OctetString", Value: "sw1"}
	walk := meshmon.TaskRequest{ID: "t1", Verb: meshmon.TaskWalk, Site: "paris", Device: "sw1"}
	var out bytes.Buffer
	p := meshmon.NewTaskPrinter(walk, false, &out, nil)
	p.Reply(meshmon.TaskReply{Varbinds: []meshmon.Varbind{vb}})
	if got := out.String(); got != "1.3.6.1.2.1.1.5.0 = OctetString: sw1\n" {
		t.Errorf("walk, as it comes: %q", got)
	}
	if err := p.Finish(); err != nil || out.Len() != len("1.3.6.1.2.1.1.5.0 = OctetString: sw1\n") {
		t.Errorf("walk's finish printed the objects again: %q, %v", out.String(), err)
	}
	out.Reset()
	p = meshmon.NewTaskPrinter(walk, true, &out, nil)
	p.Reply(meshmon.TaskReply{Poller: "p1", Varbinds: []meshmon.Varbind{vb}})
	if out.Len() != 0 {
		t.Errorf("walk with JSON printed before the end: %q", out.String())
	}
	var res meshmon.TaskResult
	if err := p.Finish(); err != nil || json.Unmarshal(out.Bytes(), &res) != nil || res.ID != "t1" || res.Poller != "p1" || len(res.Varbinds) != 1 {
		t.Errorf("walk's JSON result: %s, %v", out.String(), err)
	}

	discover := meshmon.TaskRequest{ID: "t2", Verb: meshmon.TaskDiscover, Site: "paris", CIDR: "192.0.2.0/24"}
	var progress bytes.Buffer
	now := time.Date(2026, 12, 3, 22, 0, 0, 0, time.UTC)
	p = meshmon.NewTaskPrinter(discover, false, &out, &progress)
	p.Now = func() time.Time { return now }
	step := func(d time.Duration, phase string, done bool) {
		now = now.Add(d)
		p.Reply(meshmon.TaskReply{Done: done, Progress: &meshmon.TaskProgress{Phase: phase, Done: 1, Total: 254}})
	}
	step(0, meshmon.TaskStarted, false)
	step(0, "icmp", false)
	step(500*time.Millisecond, "icmp", false)
	step(600*time.Millisecond, "snmp", false)
	step(100*time.Millisecond, "snmp", true)
	lines := strings.Split(strings.TrimSpace(progress.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], ": icmp 1/254") || !strings.Contains(lines[2], ": snmp 1/254") {
		t.Errorf("discovery's progress: %q; want the first, one a second later and the last", lines)
	}
}

// TestWriteCandidates: one row a candidate that answered SNMP, its
// neighbours named in short; those that answered ICMP only are counted.
func TestWriteCandidates(t *testing.T) {
	nb := func(sysName, chassis string) meshmon.Neighbor {
		return meshmon.Neighbor{Protocol: meshmon.ProtocolLLDP, SysName: sysName, ChassisID: chassis}
	}
	var out bytes.Buffer
	meshmon.WriteCandidates(&out, []meshmon.Candidate{
		{Address: "192.0.2.1", ICMP: true, SNMP: true, Name: "core", Version: "2c", Interfaces: 48, Credential: "device:sw1",
			Neighbors: []meshmon.Neighbor{nb("edge1", ""), nb("", "02:00:5e:00:53:01"), nb("edge2", ""), nb("edge3", "")}},
		{Address: "192.0.2.2", ICMP: true, SNMP: true, Name: "edge1", Version: "2c", Interfaces: 8, Credential: "request:0",
			Neighbors: []meshmon.Neighbor{nb("core.example.net", "")}},
		{Address: "192.0.2.3", SNMP: true, Name: "printer", Version: "1", SysObjectID: ".1.3.6.1.4.1.11", Credential: "request:0"},
		{Address: "192.0.2.4", ICMP: true},
	})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{"NEIGHBORS", "edge1,02:00:5e:00:53:01 +2", "core.example.net", "printer", "1 more addresses answer ICMP only"}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %q, want %q in it", i, lines[i], w)
		}
	}
	if f := strings.Fields(lines[3]); len(f) < 8 || f[7] != "-" {
		t.Errorf("a candidate without neighbours: %q, want - under NEIGHBORS", lines[3])
	}
}

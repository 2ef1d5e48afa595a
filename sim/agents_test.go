package sim

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/meshmon/meshmon"
)

// TestWriteAgentsAndDevices: the agent list sim prints (JSON lines and the
// table) and the devices --add-devices puts in the inventory name every
// agent at its address and port.
func TestWriteAgentsAndDevices(t *testing.T) {
	s := startSim(t, testConfig(t, 2))
	var b bytes.Buffer
	if err := s.WriteAgents(&b, true); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("JSON: %d lines, want 2:\n%s", len(lines), b.String())
	}
	for i, a := range s.Agents() {
		var got struct {
			Name    string `json:"name"`
			Address string `json:"address"`
			Port    uint16 `json:"port"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
			t.Fatal(err)
		}
		if got.Name != a.Name() || got.Address != a.Addr().Addr().String() || got.Port != a.Addr().Port() || got.Port == 0 {
			t.Errorf("line %d: %+v, want agent %s at %s", i, got, a.Name(), a.Addr())
		}
	}
	b.Reset()
	if err := s.WriteAgents(&b, false); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "NAME") || !strings.Contains(b.String(), s.Agents()[1].Name()) {
		t.Errorf("table:\n%s", b.String())
	}
	devs := s.Devices(time.Minute, time.Second, "public")
	if len(devs) != 2 || devs[0].Name != s.Agents()[0].Name() || !devs[0].Has(meshmon.CheckSNMP) {
		t.Errorf("devices: %+v", devs)
	}
	for _, d := range devs {
		if err := d.Validate(); err != nil {
			t.Errorf("device %s: %v", d.Name, err)
		}
	}
}

// TestListenControl: the control API listens on loopback only.
func TestListenControl(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:80", "localhost", ""} {
		if ln, err := ListenControl(addr); err == nil || !strings.Contains(err.Error(), "give a loopback address and port") {
			if ln != nil {
				ln.Close()
			}
			t.Errorf("%q: %v, want a refusal", addr, err)
		}
	}
	ln, err := ListenControl("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

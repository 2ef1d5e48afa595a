package poller

import (
	"runtime"
	"testing"

	"github.com/meshmon/meshmon"
)

// TestInternSNMP: equal settings share one copy; different ones do not;
// an entry no device holds any longer is swept.
func TestInternSNMP(t *testing.T) {
	var ss snmpSettings
	a := ss.intern(&meshmon.SNMP{Version: "2c", Community: "public"})
	b := ss.intern(&meshmon.SNMP{Version: "2c", Community: "public"})
	c := ss.intern(&meshmon.SNMP{Version: "2c", Community: "private"})
	if a != b {
		t.Error("equal settings not shared")
	}
	if a == c || c.Community != "private" {
		t.Errorf("different settings shared: %+v", c)
	}
	if ss.intern(nil) != nil {
		t.Error("nil settings interned")
	}
	for i := range 200 {
		ss.intern(&meshmon.SNMP{Version: "2c", Port: 1000 + i})
	}
	runtime.GC()
	// The next sweep drops the 200 that no device holds.
	before, swept := len(ss.m), false
	for i := range 1000 {
		ss.intern(&meshmon.SNMP{Version: "2c", Port: 5000 + i})
		if len(ss.m) < before {
			swept = true
			break
		}
		before = len(ss.m)
	}
	if !swept {
		t.Errorf("no entry swept: %d kept", len(ss.m))
	}
	runtime.KeepAlive(c)
	if p := ss.intern(&meshmon.SNMP{Version: "2c", Community: "public"}); p != a {
		t.Error("settings still in use were swept")
	}
}

package poller

import (
	"sync"
	"weak"

	"github.com/meshmon/meshmon"
)

// snmpSettings interns devices' SNMP settings: the devices of a site
// mostly share one community or v3 user, and each device decoded from the
// inventory came with a copy of its own (about 1.5 MiB at 10,000 devices,
// twice that with the collector's headroom; meshmon bench poll
// --heap-profile). A device's settings are never changed in place, so
// devices with equal settings can point at one copy. The copies are held
// weakly: one no device uses any longer is collected, and its entry goes
// at the next sweep.
type snmpSettings struct {
	mu    sync.Mutex
	m     map[meshmon.SNMP]weak.Pointer[meshmon.SNMP]
	sweep int // sweep the dead entries when the map reaches this size
}

// intern returns a pointer to settings equal to s, shared with the
// devices that have them; nil for nil.
func (ss *snmpSettings) intern(s *meshmon.SNMP) *meshmon.SNMP {
	if s == nil {
		return nil
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if p := ss.m[*s].Value(); p != nil {
		return p
	}
	if ss.m == nil {
		ss.m = make(map[meshmon.SNMP]weak.Pointer[meshmon.SNMP])
	}
	if len(ss.m) >= ss.sweep {
		for k, wp := range ss.m {
			if wp.Value() == nil {
				delete(ss.m, k)
			}
		}
		ss.sweep = max(64, 2*len(ss.m))
	}
	ss.m[*s] = weak.Make(s)
	return s
}

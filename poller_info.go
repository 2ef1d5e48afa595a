package meshmon

import "time"

// PollerInfo is what a poller reports about itself in each heartbeat.
type PollerInfo struct {
	Name     string    `json:"name"`
	Site     string    `json:"site"`
	Tenant   string    `json:"tenant,omitempty"`
	Instance string    `json:"instance,omitempty"` // random per process: tells two pollers of one name apart
	Started  time.Time `json:"started"`
	LastSeen time.Time `json:"last_seen"`
	Devices  int       `json:"devices"` // devices assigned to it
	Spooled  int       `json:"spooled"` // messages waiting in its spool
	// Published counts messages the peer acknowledged since start.
	Published uint64 `json:"published"`
	// Dropped counts observations lost since start: refused by the peer
	// for good, or not spooled because the spool was full.
	Dropped uint64 `json:"dropped"`
	// TrapsDropped counts traps lost since start because the trap queue was full.
	TrapsDropped uint64 `json:"traps_dropped,omitempty"`
	// TrapsInvalid counts packets at the trap port dropped as invalid since
	// start, by reason: "malformed", "not_notification", "no_trap_oid",
	// "unknown_user", "bad_security_level", "bad_auth", "decrypt_failed",
	// "unknown_engine", "not_in_time_window".
	TrapsInvalid map[string]uint64 `json:"traps_invalid,omitempty"`
	Version      string            `json:"version,omitempty"`
}

// Assignment is a poller group's assignment of its site's devices to its
// live members, as the group's leader publishes it.
type Assignment struct {
	// Revision is the assignment's revision in the group bucket: events
	// and samples carry the revision they were polled under.
	Revision uint64            `json:"revision"`
	Leader   string            `json:"leader"`
	Members  []string          `json:"members"`
	Owners   map[string]string `json:"owners"` // device name -> poller name
	// Since is when each device got its current owner, and Prev who owned
	// it before and since when: a poller that lost a device while cut off
	// drops what it observed of it while another owned it, since that one
	// polled it.
	Since map[string]time.Time `json:"since,omitempty"`
	Prev  map[string]Spell     `json:"prev,omitempty"`
	Time  time.Time            `json:"time"` // when the leader made it
}

// Owned is the set of devices the assignment gives to poller.
func (a *Assignment) Owned(poller string) map[string]bool {
	out := map[string]bool{}
	for d, p := range a.Owners {
		if p == poller {
			out[d] = true
		}
	}
	return out
}

// Spell is one poller's ownership of a device, from Since.
type Spell struct {
	Poller string    `json:"poller"`
	Since  time.Time `json:"since"`
}

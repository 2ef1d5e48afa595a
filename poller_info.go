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
	Version      string `json:"version,omitempty"`
}

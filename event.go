package meshmon

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// Event kinds. Each is the last token of the event's subject
// ev.<site>.<device>.<kind> and, prefixed with "meshmon.", its CloudEvents type.
const (
	KindNodeDown        = "node_down"        // ICMP echo stopped answering
	KindNodeUp          = "node_up"          // ICMP echo answers again
	KindSNMPUnreachable = "snmp_unreachable" // SNMP requests time out or are refused
	KindSNMPReachable   = "snmp_reachable"   // SNMP answers again
	KindIfDown          = "if_down"          // ifOperStatus left up while ifAdminStatus is up
	KindIfUp            = "if_up"            // ifOperStatus is up again
	KindReboot          = "reboot"           // sysUpTime went backwards
	KindFlapping        = "flapping"         // a check changes state too often; its events are held back
	KindStable          = "stable"           // a device that rebooted too often has not for a whole flap window
	KindTrap            = "trap"             // an SNMP trap or inform was received
	// KindTask (task.go) records an on-demand task run at the site.
)

// Kinds lists every event kind, for the CLI's --kind and for validation.
var Kinds = []string{KindNodeDown, KindNodeUp, KindSNMPUnreachable, KindSNMPReachable, KindIfDown, KindIfUp, KindReboot, KindFlapping, KindStable, KindTrap, KindTask}

// Severities of events.
const (
	SeverityCritical = "critical"
	SeverityMajor    = "major"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
	SeverityCleared  = "cleared"
)

// EventTypePrefix prefixes the kind in an event's CloudEvents type.
const EventTypePrefix = "meshmon."

// Event is a CloudEvents 1.0 structured-mode JSON event.
type Event struct {
	SpecVersion     string    `json:"specversion"` // always "1.0"
	ID              string    `json:"id"`          // equal to the Nats-Msg-Id header
	Source          string    `json:"source"`      // "/meshmon/<tenant>/<site>/<poller>"
	Type            string    `json:"type"`        // EventTypePrefix + kind
	Time            time.Time `json:"time"`        // when it was observed
	Subject         string    `json:"subject"`     // the device name
	DataContentType string    `json:"datacontenttype"`
	Data            EventData `json:"data"`
}

// EventData is the meshmon-specific body of an event.
type EventData struct {
	Tenant   string `json:"tenant"`
	Site     string `json:"site"`
	Device   string `json:"device"`
	Address  string `json:"address,omitempty"`
	Kind     string `json:"kind"`
	Check    string `json:"check"` // "icmp", "snmp", "if.<ifIndex>", "uptime", "trap"
	Severity string `json:"severity"`
	Message  string `json:"message"`
	Reason   string `json:"reason,omitempty"`   // why a probe failed: "timeout", "authentication failure", ...
	Previous string `json:"previous,omitempty"` // state before the change
	State    string `json:"state,omitempty"`    // state after the change
	Poller   string `json:"poller,omitempty"`   // the poller that observed it
	// Parent is the device's parent (Device.Parent) when it was polled:
	// central correlates alarms with it (package alarm).
	Parent string `json:"parent,omitempty"`
	// Assignment is the revision of the poller group's assignment the
	// device was polled under (see Assignment): of two pollers that both
	// claim a device, the higher revision is the current owner.
	Assignment uint64 `json:"assignment,omitempty"`

	IfIndex int    `json:"if_index,omitempty"`
	IfName  string `json:"if_name,omitempty"`

	Trap *Trap `json:"trap,omitempty"`
	// Task is the record of an on-demand task (kind task).
	Task *TaskAudit `json:"task,omitempty"`
}

// LastState is what a site's events last said of one check of a device:
// the kind of the last event that carried the check's state, and that
// state ("up", "down"; "rebooting" and "stable" for uptime). A poller
// that takes the device over starts from it; the kind tells it whether
// the check was flapping.
type LastState struct {
	Kind  string
	State string
}

// Trap is what a received SNMP trap carried.
type Trap struct {
	Version   string            `json:"version"` // "1", "2c" or "3"
	From      string            `json:"from"`    // sender address
	Community string            `json:"community,omitempty"`
	User      string            `json:"user,omitempty"`     // SNMPv3 (USM) user name
	OID       string            `json:"oid"`                // snmpTrapOID (v2c) or enterprise.0.specific (v1)
	Uptime    uint32            `json:"uptime,omitempty"`   // sysUpTime of the sender, in hundredths of a second
	Generic   int               `json:"generic,omitempty"`  // v1 generic-trap
	Specific  int               `json:"specific,omitempty"` // v1 specific-trap
	Varbinds  []Varbind         `json:"varbinds,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Varbind is one OID and its value, rendered as text.
type Varbind struct {
	OID   string `json:"oid"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Sample is the metric samples of one check of one poll, published on
// mx.<site>.<device>.<check>.
type Sample struct {
	Time   time.Time `json:"time"`
	Tenant string    `json:"tenant"`
	Site   string    `json:"site"`
	Device string    `json:"device"`
	Check  string    `json:"check"` // "icmp", "system", "if", "lldp"
	Poller string    `json:"poller,omitempty"`
	// Assignment is the revision of the poller group's assignment the
	// device was polled under.
	Assignment uint64             `json:"assignment,omitempty"`
	Values     map[string]float64 `json:"values,omitempty"`
	Labels     map[string]string  `json:"labels,omitempty"`
	// Interfaces holds one entry per interface for the "if" check.
	Interfaces []InterfaceSample `json:"interfaces,omitempty"`
	// Neighbors holds the link-layer neighbours for the "lldp" check
	// (CheckLLDP); its Labels hold the device's own LocalIdentity.
	Neighbors []Neighbor `json:"neighbors,omitempty"`
}

// InterfaceSample is one row of ifTable/ifXTable as polled.
type InterfaceSample struct {
	Index       int     `json:"index"`
	Name        string  `json:"name"`
	AdminStatus string  `json:"admin_status"` // "up", "down", "testing"
	OperStatus  string  `json:"oper_status"`  // "up", "down", "testing", "unknown", "dormant", "notPresent", "lowerLayerDown"
	InOctets    uint64  `json:"in_octets"`
	OutOctets   uint64  `json:"out_octets"`
	InBps       float64 `json:"in_bps"`  // bits per second since the previous poll; 0 on the first
	OutBps      float64 `json:"out_bps"` // bits per second since the previous poll; 0 on the first
	HighCounter bool    `json:"hc"`      // the octets are 64-bit ifHC counters
}

// Stream says which of meshmon's streams takes an outgoing message.
type Stream uint8

// The streams. The zero Stream is none: a message without one is refused.
const (
	StreamEvents  Stream = 1 // events, on ev.<site>.<device>.<kind>
	StreamMetrics Stream = 2 // metric samples, on mx.<site>.<device>.<check>
)

// String returns "events", "metrics", or "stream(n)" for any other value.
func (s Stream) String() string {
	switch s {
	case StreamEvents:
		return "events"
	case StreamMetrics:
		return "metrics"
	}
	return "stream(" + strconv.Itoa(int(s)) + ")"
}

// Message is one outgoing message: what the poller spools and publishes.
// Its typed fields say what it is, so that nothing downstream parses its
// subject or its payload again; Subject builds the subject from them.
type Message struct {
	Stream Stream
	Site   string
	Device string
	// Kind is the event kind for StreamEvents, the check for StreamMetrics:
	// the last token of the subject.
	Kind string
	// Time is when the observation was made (the event's or sample's time).
	Time time.Time
	ID   string // Nats-Msg-Id: a pure function of what was observed
	Data []byte
}

// Subject returns the subject m is published on: EventSubject or
// MetricSubject of its fields, or "" when its Stream is none of meshmon's.
func (m Message) Subject() string {
	switch m.Stream {
	case StreamEvents:
		return EventSubject(m.Site, m.Device, m.Kind)
	case StreamMetrics:
		return MetricSubject(m.Site, m.Device, m.Kind)
	}
	return ""
}

// MsgID returns the deterministic message id of an observation: a pure
// function of tenant, site, device, check and observation time slot, so two
// pollers that observe the same thing in the same slot produce the same id
// and JetStream keeps one copy.
func MsgID(tenant, site, device, check string, slot time.Time) string {
	h := sha256.New()
	for _, s := range []string{tenant, site, device, check} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write([]byte(strconv.FormatInt(slot.UnixNano(), 10)))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

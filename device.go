package meshmon

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// Checks a device can have.
const (
	CheckICMP = "icmp" // reachability and round-trip time by ICMP echo
	CheckSNMP = "snmp" // system group and interface table by SNMP
)

// SNMP versions.
const (
	SNMPv1  = "1"
	SNMPv2c = "2c"
	SNMPv3  = "3"
)

// Limits on device settings.
const (
	MinInterval = time.Second
	MaxInterval = 24 * time.Hour
	MaxRetries  = 10
)

// AuthProtocols and PrivProtocols are the SNMPv3 protocols meshmon accepts,
// by the names gosnmp gives them: the one table (internal/snmpv3 maps the
// names to gosnmp for the poller and the simulator).
var (
	AuthProtocols = []string{"MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"}
	PrivProtocols = []string{"DES", "AES", "AES192", "AES256", "AES192C", "AES256C"}
)

// Device is one monitored network element, as stored in a site's inventory.
type Device struct {
	Name     string   `json:"name"`
	Address  string   `json:"address"`           // IP address or host name, without port
	Checks   []string `json:"checks"`            // CheckICMP, CheckSNMP
	Interval Duration `json:"interval"`          // time between polls
	Timeout  Duration `json:"timeout,omitempty"` // per request; 0 means DefaultTimeout
	Retries  int      `json:"retries,omitempty"` // SNMP retries per request
	SNMP     *SNMP    `json:"snmp,omitempty"`    // required when Checks has CheckSNMP
	// Parent is the device (at the same site) this one is reached
	// through, if any: while the parent is down, this device's
	// unreachable alarms are symptoms of the parent's (package alarm).
	Parent string `json:"parent,omitempty"`
	// Revision is the inventory revision this copy was read at; it is not
	// stored, only reported.
	Revision uint64 `json:"revision,omitempty"`
}

// DefaultTimeout is the per-request timeout of a device that sets none.
const DefaultTimeout = 2 * time.Second

// SNMP is how to talk SNMP to a device.
type SNMP struct {
	Version   string `json:"version"`             // SNMPv1, SNMPv2c or SNMPv3
	Port      int    `json:"port,omitempty"`      // 0 means 161
	Community string `json:"community,omitempty"` // v1 and v2c

	// SNMPv3 (USM). The security level follows from what is set:
	// no AuthProtocol is noAuthNoPriv, AuthProtocol alone is authNoPriv,
	// both are authPriv.
	User         string `json:"user,omitempty"`
	AuthProtocol string `json:"auth_protocol,omitempty"`
	AuthPassword string `json:"auth_password,omitempty"`
	PrivProtocol string `json:"priv_protocol,omitempty"`
	PrivPassword string `json:"priv_password,omitempty"`
	ContextName  string `json:"context,omitempty"`
}

// SecurityLevel is "noAuthNoPriv", "authNoPriv" or "authPriv".
func (s *SNMP) SecurityLevel() string {
	switch {
	case s.PrivProtocol != "":
		return "authPriv"
	case s.AuthProtocol != "":
		return "authNoPriv"
	}
	return "noAuthNoPriv"
}

// PortOrDefault returns the UDP port to poll.
func (s *SNMP) PortOrDefault() int {
	if s.Port == 0 {
		return 161
	}
	return s.Port
}

// TimeoutOrDefault returns the per-request timeout.
func (d *Device) TimeoutOrDefault() time.Duration {
	if d.Timeout == 0 {
		return DefaultTimeout
	}
	return d.Timeout.D()
}

// Has reports whether the device has the check.
func (d *Device) Has(check string) bool { return slices.Contains(d.Checks, check) }

// Validate checks every field and returns the first problem, naming the
// field and the rule. The error wraps ErrInvalidDevice (and ErrInvalidName
// for a bad name).
func (d *Device) Validate() error {
	if err := ValidateName("device name", d.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidDevice, err)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w %s: %s", ErrInvalidDevice, d.Name, fmt.Sprintf(format, a...))
	}
	if d.Parent != "" {
		if err := ValidateName("parent", d.Parent); err != nil {
			return fmt.Errorf("%w %s: %w", ErrInvalidDevice, d.Name, err)
		}
		if d.Parent == d.Name {
			return bad("parent %q is the device itself; name the device it is reached through", d.Parent)
		}
	}
	if d.Address == "" {
		return bad("address is empty; give an IP address or host name")
	}
	if strings.ContainsAny(d.Address, " /\t") || strings.Count(d.Address, ":") == 1 {
		return bad("address %q must be an IP address or host name without port (set the SNMP port separately)", d.Address)
	}
	if net.ParseIP(d.Address) == nil && numericTLD(d.Address) {
		return bad("address %q is not an IP address (IPv4 is four numbers from 0 to 255) and a host name cannot end in a number", d.Address)
	}
	if net.ParseIP(d.Address) == nil && !ValidHostname(d.Address) {
		return bad("address %q is neither an IP address nor a host name", d.Address)
	}
	if len(d.Checks) == 0 {
		return bad("checks is empty; use %q, %q or both", CheckICMP, CheckSNMP)
	}
	for _, c := range d.Checks {
		if c != CheckICMP && c != CheckSNMP {
			return bad("check %q is unknown; use %q or %q", c, CheckICMP, CheckSNMP)
		}
	}
	if iv := d.Interval.D(); iv < MinInterval || iv > MaxInterval {
		return bad("interval %s is out of range; use %s to %s", iv, MinInterval, MaxInterval)
	}
	if d.Timeout < 0 || d.Timeout.D() > d.Interval.D() {
		return bad("timeout %s must be between 0 and the interval (%s)", d.Timeout, d.Interval)
	}
	if d.Retries < 0 || d.Retries > MaxRetries {
		return bad("retries %d is out of range; use 0 to %d", d.Retries, MaxRetries)
	}
	if d.Has(CheckSNMP) && d.SNMP == nil {
		return bad("check %q needs SNMP settings (version and community or v3 user)", CheckSNMP)
	}
	if d.SNMP != nil {
		if err := d.SNMP.validate(); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

func (s *SNMP) validate() error {
	if s.Port < 0 || s.Port > 65535 {
		return fmt.Errorf("snmp port %d is out of range; use 1 to 65535", s.Port)
	}
	switch s.Version {
	case SNMPv1, SNMPv2c:
		if s.Community == "" {
			return fmt.Errorf("snmp community is empty; version %s needs one", s.Version)
		}
		if s.User != "" || s.AuthProtocol != "" || s.PrivProtocol != "" {
			return fmt.Errorf("snmp user, auth and priv settings are for version 3 only, not %s", s.Version)
		}
		return nil
	case SNMPv3:
	case "":
		return fmt.Errorf("snmp version is empty; use %s, %s or %s", SNMPv1, SNMPv2c, SNMPv3)
	default:
		return fmt.Errorf("snmp version %q is unknown; use %s, %s or %s", s.Version, SNMPv1, SNMPv2c, SNMPv3)
	}
	if s.User == "" {
		return fmt.Errorf("snmp user is empty; version 3 needs one")
	}
	if s.Community != "" {
		return fmt.Errorf("snmp community is for versions 1 and 2c, not 3")
	}
	if s.AuthProtocol == "" && (s.AuthPassword != "" || s.PrivProtocol != "") {
		return fmt.Errorf("snmp auth protocol is empty; an auth password or privacy needs one of %s", strings.Join(AuthProtocols, ", "))
	}
	if s.AuthProtocol != "" {
		if !slices.Contains(AuthProtocols, s.AuthProtocol) {
			return fmt.Errorf("snmp auth protocol %q is unknown; use one of %s", s.AuthProtocol, strings.Join(AuthProtocols, ", "))
		}
		if len(s.AuthPassword) < 8 {
			return fmt.Errorf("snmp auth password must be at least 8 characters (RFC 3414)")
		}
	}
	if s.PrivProtocol == "" && s.PrivPassword != "" {
		return fmt.Errorf("snmp priv protocol is empty; a priv password needs one of %s", strings.Join(PrivProtocols, ", "))
	}
	if s.PrivProtocol != "" {
		if !slices.Contains(PrivProtocols, s.PrivProtocol) {
			return fmt.Errorf("snmp priv protocol %q is unknown; use one of %s", s.PrivProtocol, strings.Join(PrivProtocols, ", "))
		}
		if len(s.PrivPassword) < 8 {
			return fmt.Errorf("snmp priv password must be at least 8 characters (RFC 3414)")
		}
	}
	return nil
}

// numericTLD reports whether the last label of h is all digits: no host
// name ends so (RFC 1123 2.1), so h is a mistyped IP address.
func numericTLD(h string) bool {
	labels := strings.Split(strings.TrimSuffix(h, "."), ".")
	last := labels[len(labels)-1]
	if last == "" {
		return false
	}
	for _, r := range last {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// ValidHostname reports whether h is a DNS host name: dot-separated labels
// of letters, digits and inner hyphens, each at most 63 characters, at most
// 253 in all; one trailing dot is allowed.
func ValidHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// InventoryChange is one change of a site's device inventory, as a watcher
// of the inventory sees it.
type InventoryChange struct {
	Name    string // the device name; empty on the Synced marker
	Device  Device // the device after the change; zero when Deleted
	Deleted bool   // the device was removed
	Initial bool   // part of the replay of the contents at the start
	Synced  bool   // marker: the replay is complete, live changes follow
}

package sim

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/snmpv3"
)

// Limits on a Config.
const (
	// MaxAgents caps agents on a socket each: about what the open-files
	// limit of a generous host allows.
	MaxAgents = 60000
	// MaxSharedAgents caps agents on a shared socket (Config.SharedSocket):
	// memory, not sockets, is the limit there.
	MaxSharedAgents = 500000
	MaxInterfaces   = 1000
	minPassword     = 8 // RFC 3414 minimum pass phrase length
)

// Config describes a simulated fleet. The zero value is not valid; start from
// DefaultConfig.
type Config struct {
	// Agents is how many SNMP agents to run.
	Agents int
	// BaseAddr is the IPv4 address of the first agent; agent i binds the
	// i-th following address, skipping addresses whose last octet is 0 or
	// 255. All of 127.0.0.0/8 is local on Linux, so loopback bases need no
	// setup.
	BaseAddr netip.Addr
	// Port is the UDP port every agent binds; 0 lets the kernel choose one
	// per agent, or one for the shared socket (tests must use 0).
	Port int
	// SharedSocket serves every agent from one UDP socket bound to the
	// wildcard address on Port, instead of a socket per agent, so a fleet
	// can outgrow the open-files limit (up to MaxSharedAgents). It learns
	// each request's destination address (IP_PKTINFO), which names the
	// agent, and answers from it. What differs: the socket takes Port on
	// every local address, so no other socket may hold it on any address;
	// a datagram to an address of no agent, or to a closed agent, gets no
	// answer rather than port unreachable. Linux only; elsewhere it is
	// ignored and each agent binds its own socket.
	SharedSocket bool
	// NamePrefix names the devices: "<prefix>-00001", "<prefix>-00002", ...
	NamePrefix string
	// Versions lists the SNMP versions served: meshmon.SNMPv1, SNMPv2c,
	// SNMPv3. Requests in other versions are dropped.
	Versions []string
	// Community is the v1/v2c read community. Requests with any other
	// community are dropped, as real agents do. Traps carry it too.
	Community string
	// Users are the SNMPv3 USM users every agent knows.
	Users []V3User
	// Interfaces is the number of rows of ifTable and ifXTable per agent.
	Interfaces int
	// Topology links the agents to each other (TopologyRing, TopologyTree)
	// in their LLDP-MIB tables, and in CISCO-CDP-MIB for every third
	// agent; Sim.Links lists the links. TopologyNone serves neither MIB.
	Topology string
	// TrapTarget (host:port), if set, receives the traps RandomFault sends.
	TrapTarget string
	// TrapVersion is the version of those traps: "1", "2c" or "3" (as the
	// first of Users, which needs SNMPv3 in Versions).
	TrapVersion string
	// DownFor is how long RandomFault keeps a device down before it answers
	// again.
	DownFor time.Duration
	// Now is the clock for sysUpTime, counters and the v3 engine time;
	// nil means time.Now.
	Now func() time.Time
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
}

// V3User is an SNMPv3 USM user. The security level follows from what is
// set, as in meshmon.SNMP: no AuthProtocol is noAuthNoPriv, AuthProtocol
// alone is authNoPriv, both are authPriv. An agent answers a user only at
// exactly that level; other levels get a usmStatsUnsupportedSecLevels report.
type V3User struct {
	Name         string
	AuthProtocol string // one of meshmon.AuthProtocols, or ""
	AuthPassword string
	PrivProtocol string // one of meshmon.PrivProtocols, or ""
	PrivPassword string
}

// NewV3User is a user with the protocols upper-cased and what its security
// level leaves out dropped: no auth protocol, no pass phrases nor privacy
// (noAuthNoPriv); no privacy protocol, no privacy pass phrase (authNoPriv).
// The flags of 'meshmon sim' give every field a default.
func NewV3User(name, authProto, authPass, privProto, privPass string) V3User {
	u := V3User{Name: name, AuthProtocol: strings.ToUpper(authProto), AuthPassword: authPass,
		PrivProtocol: strings.ToUpper(privProto), PrivPassword: privPass}
	if u.AuthProtocol == "" {
		u.AuthPassword, u.PrivProtocol, u.PrivPassword = "", "", ""
	}
	if u.PrivProtocol == "" {
		u.PrivPassword = ""
	}
	return u
}

// SplitVersions is a comma-separated list of SNMP versions, trimmed, empty
// ones left out.
func SplitVersions(s string) []string {
	var vs []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			vs = append(vs, v)
		}
	}
	return vs
}

// DefaultConfig returns a config for 10 agents from 127.77.0.1 on kernel
// chosen ports, serving v1, v2c (community "public") and v3 (user "meshmon",
// SHA/AES, pass phrases "meshmon-auth" and "meshmon-priv").
func DefaultConfig() Config {
	return Config{
		Agents:     10,
		BaseAddr:   netip.MustParseAddr("127.77.0.1"),
		Port:       0,
		NamePrefix: "sim",
		Versions:   []string{meshmon.SNMPv1, meshmon.SNMPv2c, meshmon.SNMPv3},
		Community:  "public",
		Users: []V3User{{
			Name:         "meshmon",
			AuthProtocol: "SHA",
			AuthPassword: "meshmon-auth",
			PrivProtocol: "AES",
			PrivPassword: "meshmon-priv",
		}},
		Interfaces:  4,
		TrapVersion: meshmon.SNMPv2c,
		DownFor:     20 * time.Second,
	}
}

// Validate checks every field and returns the first problem, naming the
// field and the rule. The error wraps ErrInvalidConfig.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	if maxAgents := c.maxAgents(); c.Agents < 1 || c.Agents > maxAgents {
		hint := ""
		if maxAgents == MaxAgents && sharedSupported {
			hint = fmt.Sprintf(" (up to %d on a shared socket)", MaxSharedAgents)
		}
		return bad("agents %d is out of range; use 1 to %d%s", c.Agents, maxAgents, hint)
	}
	if !c.BaseAddr.Is4() {
		return bad("base address %q must be an IPv4 address", c.BaseAddr)
	}
	if _, err := agentAddrs(c.BaseAddr, c.Agents); err != nil {
		return bad("%v", err)
	}
	if c.Port < 0 || c.Port > 65535 {
		return bad("port %d is out of range; use 0 (kernel chooses) to 65535", c.Port)
	}
	if err := meshmon.ValidateName("name prefix", c.NamePrefix); err != nil {
		return bad("%v", err)
	}
	if last := deviceName(c.NamePrefix, c.Agents, c.Agents); len(last) > meshmon.MaxNameLen {
		return bad("name prefix %q is too long: device name %q is over %d characters", c.NamePrefix, last, meshmon.MaxNameLen)
	}
	if len(c.Versions) == 0 {
		return bad("versions is empty; use one or more of %s, %s, %s", meshmon.SNMPv1, meshmon.SNMPv2c, meshmon.SNMPv3)
	}
	for _, v := range c.Versions {
		if v != meshmon.SNMPv1 && v != meshmon.SNMPv2c && v != meshmon.SNMPv3 {
			return bad("version %q is unknown; use %s, %s or %s", v, meshmon.SNMPv1, meshmon.SNMPv2c, meshmon.SNMPv3)
		}
	}
	if (slices.Contains(c.Versions, meshmon.SNMPv1) || slices.Contains(c.Versions, meshmon.SNMPv2c)) && c.Community == "" {
		return bad("community is empty; versions 1 and 2c need one")
	}
	if len(c.Community) > 255 {
		return bad("community is %d bytes; at most 255 are allowed", len(c.Community))
	}
	if slices.Contains(c.Versions, meshmon.SNMPv3) {
		if len(c.Users) == 0 {
			return bad("users is empty; version 3 needs at least one USM user")
		}
		seen := map[string]bool{}
		for i, u := range c.Users {
			if err := u.validate(); err != nil {
				return bad("users[%d]: %v", i, err)
			}
			if seen[u.Name] {
				return bad("users[%d]: user name %q appears twice", i, u.Name)
			}
			seen[u.Name] = true
		}
	}
	if c.Interfaces < 1 || c.Interfaces > MaxInterfaces {
		return bad("interfaces %d is out of range; use 1 to %d", c.Interfaces, MaxInterfaces)
	}
	if err := checkTopology(c.Topology, c.Agents, c.Interfaces); err != nil {
		return bad("%v", err)
	}
	switch c.TrapVersion {
	case meshmon.SNMPv1, meshmon.SNMPv2c:
	case meshmon.SNMPv3:
		if len(c.Users) == 0 || !slices.Contains(c.Versions, meshmon.SNMPv3) {
			return bad("trap version 3 needs version 3 served and a v3 user (traps go as the first user)")
		}
	default:
		return bad("trap version %q is unknown; use %s, %s or %s", c.TrapVersion, meshmon.SNMPv1, meshmon.SNMPv2c, meshmon.SNMPv3)
	}
	if c.TrapTarget != "" {
		if _, _, err := splitTarget(c.TrapTarget); err != nil {
			return bad("trap target: %v", err)
		}
	}
	if c.DownFor < 0 {
		return bad("down-for %s must not be negative", c.DownFor)
	}
	return nil
}

// maxAgents is the most agents c may have: more on a shared socket.
func (c *Config) maxAgents() int {
	if c.SharedSocket && sharedSupported {
		return MaxSharedAgents
	}
	return MaxAgents
}

func (u *V3User) validate() error {
	if u.Name == "" {
		return fmt.Errorf("user name is empty")
	}
	if len(u.Name) > 32 {
		return fmt.Errorf("user name %q is over 32 characters (RFC 3414)", u.Name)
	}
	if u.AuthProtocol == "" && (u.AuthPassword != "" || u.PrivProtocol != "") {
		return fmt.Errorf("user %q: auth protocol is empty; an auth password or privacy needs one of %s", u.Name, strings.Join(meshmon.AuthProtocols, ", "))
	}
	if u.AuthProtocol != "" {
		if _, ok := snmpv3.AuthProtocol(u.AuthProtocol); !ok {
			return fmt.Errorf("user %q: auth protocol %q is unknown; use one of %s", u.Name, u.AuthProtocol, strings.Join(meshmon.AuthProtocols, ", "))
		}
		if len(u.AuthPassword) < minPassword {
			return fmt.Errorf("user %q: auth password must be at least %d characters (RFC 3414)", u.Name, minPassword)
		}
	}
	if u.PrivProtocol == "" && u.PrivPassword != "" {
		return fmt.Errorf("user %q: priv protocol is empty; a priv password needs one of %s", u.Name, strings.Join(meshmon.PrivProtocols, ", "))
	}
	if u.PrivProtocol != "" {
		if _, ok := snmpv3.PrivProtocol(u.PrivProtocol); !ok {
			return fmt.Errorf("user %q: priv protocol %q is unknown; use one of %s", u.Name, u.PrivProtocol, strings.Join(meshmon.PrivProtocols, ", "))
		}
		if len(u.PrivPassword) < minPassword {
			return fmt.Errorf("user %q: priv password must be at least %d characters (RFC 3414)", u.Name, minPassword)
		}
	}
	return nil
}

// agentAddrs returns the n addresses from base on, skipping last octets 0
// and 255. A base in 127.0.0.0/8 must not run out of it.
func agentAddrs(base netip.Addr, n int) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, n)
	a := base
	for len(out) < n {
		b := a.As4()
		if b[3] != 0 && b[3] != 255 {
			out = append(out, a)
		}
		next := a.Next()
		if !next.IsValid() || !next.Is4() || (base.IsLoopback() && !next.IsLoopback() && len(out) < n) {
			return nil, fmt.Errorf("base address %s has room for only %d agents before leaving %s; use a lower base or fewer agents", base, len(out), rangeName(base))
		}
		a = next
	}
	return out, nil
}

func rangeName(base netip.Addr) string {
	if base.IsLoopback() {
		return "127.0.0.0/8"
	}
	return "the IPv4 address space"
}

// deviceName is the name of agent i (1-based) of n.
func deviceName(prefix string, i, n int) string {
	width := max(5, len(fmt.Sprint(n)))
	return fmt.Sprintf("%s-%0*d", prefix, width, i)
}

// splitTarget checks a host:port trap target.
func splitTarget(target string) (host string, port string, err error) {
	host, port, err = net.SplitHostPort(target)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q is not host:port: %w", ErrBadTrapTarget, target, err)
	}
	if host == "" || port == "" {
		return "", "", fmt.Errorf("%w: %q needs both host and port", ErrBadTrapTarget, target)
	}
	return host, port, nil
}

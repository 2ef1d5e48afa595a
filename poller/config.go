package poller

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/meshmon/meshmon"
)

// Config is how a poller runs.
type Config struct {
	Name string // unique within the site; a subject-safe name
	// Instance tells this poller apart from another of the same name: the
	// id of its storage file (storage.DB.Instance).
	Instance string
	Tenant   string // the tenant whose devices this poller watches
	Site     string // the site; events go to ev.<site>.>

	Workers int // probes running at once, at most (workers start as polls are due and end when idle)

	TrapListen string // UDP address for SNMP traps ("0.0.0.0:162"); empty turns traps off
	// TrapUsers are the SNMPv3 users whose traps and informs the listener
	// accepts (none: v3 is dropped), and optionally its engine ID; see
	// LoadTrapUsers.
	TrapUsers TrapUsers

	ICMPMode     ICMPMode
	ICMPCount    int           // echo requests per ICMP probe
	ICMPInterval time.Duration // between echo requests of one probe

	Damping Damping

	BatchSize      int           // messages per publish from the spool
	PublishTimeout time.Duration // how long one batch may wait for acks
	HeartbeatEvery time.Duration // how often the poller reports itself to the registry
	// The poller group's timings (see bus.GroupConfig): the leader's
	// lease, and how long a member may miss heartbeats before its devices
	// go to the others. HeartbeatEvery must be well below MemberTimeout.
	GroupLease    time.Duration
	MemberTimeout time.Duration
	// TrapQueue is how many received traps may wait to be committed to the
	// spool; past it traps are dropped and counted (Stats.TrapsDropped).
	// Its slots are allocated at start, so it is bounded (1 to MaxTrapQueue).
	TrapQueue int
	// TopologyInterval is how often a device's LLDP and CDP neighbours are
	// read (at its first SNMP poll, then at the first poll this long after
	// the last reading) and published as its lldp sample; 0 turns it off.
	TopologyInterval time.Duration

	Version string           // reported in heartbeats
	Now     func() time.Time // clock; tests replace it
}

// MaxTrapQueue is the largest Config.TrapQueue: 1,048,576 traps.
const MaxTrapQueue = 1 << 20

// DefaultConfig returns a Config with every tunable set; Name, Tenant and
// Site still need values.
func DefaultConfig() Config {
	return Config{
		Tenant:           "default",
		Workers:          64,
		ICMPMode:         ICMPAuto,
		ICMPCount:        3,
		ICMPInterval:     100 * time.Millisecond,
		Damping:          DefaultDamping(),
		BatchSize:        256,
		PublishTimeout:   10 * time.Second,
		HeartbeatEvery:   100 * time.Millisecond,
		GroupLease:       time.Second,
		MemberTimeout:    2 * time.Second,
		TrapQueue:        4096,
		TopologyInterval: 10 * time.Minute,
		Now:              time.Now,
	}
}

// Validate checks every field and names the first that breaks a rule. The
// error wraps ErrInvalidConfig (and, for the trap users, ErrTrapUsers; for
// a name, meshmon.ErrInvalidName).
func (c *Config) Validate() error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

func (c *Config) validate() error {
	for _, f := range []struct{ field, v string }{{"poller name", c.Name}, {"tenant", c.Tenant}, {"site", c.Site}} {
		if err := meshmon.ValidateName(f.field, f.v); err != nil {
			return err
		}
	}
	switch {
	case c.Workers < 1 || c.Workers > 10000:
		return fmt.Errorf("poller workers %d is out of range; use 1 to 10000", c.Workers)
	case c.ICMPCount < 1 || c.ICMPCount > 100:
		return fmt.Errorf("poller icmp count %d is out of range; use 1 to 100", c.ICMPCount)
	case c.ICMPInterval < time.Millisecond:
		return fmt.Errorf("poller icmp interval %s is too short; use at least 1ms", c.ICMPInterval)
	case c.Damping.DownAfter < 1 || c.Damping.UpAfter < 1:
		return errors.New("poller damping down-after and up-after must be at least 1")
	case c.Damping.FlapChanges < 0 || c.Damping.FlapWindow < 0:
		return errors.New("poller flap changes and flap window must not be negative")
	case c.BatchSize < 1 || c.BatchSize > 10000:
		return fmt.Errorf("poller batch size %d is out of range; use 1 to 10000", c.BatchSize)
	case c.PublishTimeout < 100*time.Millisecond:
		return fmt.Errorf("poller publish timeout %s is too short; use at least 100ms", c.PublishTimeout)
	case c.HeartbeatEvery < 100*time.Millisecond:
		return fmt.Errorf("poller heartbeat %s is too short; use at least 100ms", c.HeartbeatEvery)
	case c.GroupLease < time.Second || c.GroupLease%time.Second != 0:
		return fmt.Errorf("poller group lease %s: use whole seconds, at least 1s", c.GroupLease)
	case c.MemberTimeout < 2*c.HeartbeatEvery:
		return fmt.Errorf("poller member timeout %s must be at least two heartbeats (%s)", c.MemberTimeout, 2*c.HeartbeatEvery)
	case c.TopologyInterval < 0:
		return fmt.Errorf("topology interval %s must not be negative (0 turns it off)", c.TopologyInterval)
	case c.TrapQueue < 1 || c.TrapQueue > MaxTrapQueue:
		return fmt.Errorf("poller trap queue %d is out of range; use 1 to %d", c.TrapQueue, MaxTrapQueue)
	case c.Now == nil:
		return errors.New("poller clock (Now) is nil")
	}
	if err := c.TrapUsers.Validate(); err != nil {
		return err
	}
	if c.TrapListen != "" {
		if _, _, err := net.SplitHostPort(c.TrapListen); err != nil {
			return fmt.Errorf("poller trap listen address %q: want host:port (%v)", c.TrapListen, err)
		}
	}
	return nil
}

// ParseICMPMode reads "auto", "unprivileged" or "privileged". Any other
// mode is an error wrapping ErrInvalidConfig.
func ParseICMPMode(s string) (ICMPMode, error) {
	switch s {
	case "auto", "":
		return ICMPAuto, nil
	case "unprivileged":
		return ICMPUnprivileged, nil
	case "privileged":
		return ICMPPrivileged, nil
	}
	return ICMPAuto, fmt.Errorf("%w: icmp mode %q is unknown; use auto, unprivileged or privileged", ErrInvalidConfig, s)
}

// NameFromHost turns a host name into a valid poller name: its first label,
// lower case, other characters as '-', at most meshmon.MaxNameLen long;
// "poller" if nothing is left.
func NameFromHost(host string) string {
	out := make([]rune, 0, len(host))
	for _, r := range strings.ToLower(host) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			out = append(out, r)
		case r == '.':
			return finishName(out)
		default:
			out = append(out, '-')
		}
	}
	return finishName(out)
}

func finishName(r []rune) string {
	s := strings.Trim(string(r), "-_")
	if len(s) > meshmon.MaxNameLen {
		s = s[:meshmon.MaxNameLen]
	}
	if s == "" {
		return "poller"
	}
	return s
}

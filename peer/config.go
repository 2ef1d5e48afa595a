package peer

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/bus"
)

// Config is the configuration of one peer.
type Config struct {
	// Name is the server name; it must be unique in the mesh.
	Name string `json:"name"`
	// Site is the JetStream domain, a valid meshmon name.
	Site string `json:"site"`
	// Listen is the client address, host:port; port 0 picks a free one.
	Listen string `json:"listen"`
	// DataDir holds the JetStream store (in DataDir/jetstream).
	DataDir string `json:"data_dir"`
	// SyncAlways fsyncs every stored message before acking it. Without it
	// JetStream syncs every two minutes and a power loss can lose
	// acknowledged events.
	SyncAlways bool `json:"sync_always"`
	// Auth is how clients authenticate; the zero value is no auth.
	Auth Auth `json:"auth"`
	// Limits sizes the streams.
	Limits bus.StreamLimits `json:"limits"`
	// MaxMemory and MaxStore bound JetStream's resources in bytes; 0 leaves
	// the server's defaults (a share of RAM and disk).
	MaxMemory int64 `json:"max_memory,omitempty"`
	MaxStore  int64 `json:"max_store,omitempty"`
	// HTTPListen is the monitoring address, host:port; empty turns it off.
	HTTPListen string `json:"http_listen,omitempty"`
}

// DefaultConfig returns a single peer for site "local" on 127.0.0.1:4222
// with its data in ./meshmon-data, SyncAlways and the default stream
// limits, without auth.
func DefaultConfig() Config {
	return Config{
		Name:       "meshmon",
		Site:       "local",
		Listen:     "127.0.0.1:4222",
		DataDir:    "meshmon-data",
		SyncAlways: true,
		Limits:     bus.DefaultStreamLimits(),
	}
}

// Validate returns the first problem, naming the field and the rule. The
// error wraps ErrInvalidConfig (and meshmon.ErrInvalidName for a bad site).
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	if c.Name == "" {
		return bad("name is empty; give the server a name unique in the mesh")
	}
	if strings.ContainsAny(c.Name, " \t\r\n") {
		return bad("name %q must not contain white space", c.Name)
	}
	if err := meshmon.ValidateName("site", c.Site); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := checkHostPort(c.Listen); err != nil {
		return bad("listen %q: %v", c.Listen, err)
	}
	if c.DataDir == "" {
		return bad("data dir is empty; give a directory for the JetStream store")
	}
	if err := c.Auth.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("%w: limits: %w", ErrInvalidConfig, err)
	}
	if c.MaxMemory < 0 {
		return bad("max memory %d must not be negative (0 means the server default)", c.MaxMemory)
	}
	if c.MaxStore < 0 {
		return bad("max store %d must not be negative (0 means the server default)", c.MaxStore)
	}
	if c.HTTPListen != "" {
		if err := checkHostPort(c.HTTPListen); err != nil {
			return bad("http listen %q: %v", c.HTTPListen, err)
		}
	}
	return nil
}

func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, like 127.0.0.1:4222")
	}
	if _, err := splitPort(port); err != nil {
		return err
	}
	return nil
}

func splitPort(port string) (int, error) {
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("port %q must be a number from 0 to 65535", port)
	}
	return n, nil
}

// hostPort splits a validated address; port 0 becomes -1, the server's
// "pick a free port".
func hostPort(addr string) (string, int) {
	host, p, _ := net.SplitHostPort(addr)
	port, _ := splitPort(p)
	if port == 0 {
		port = -1
	}
	return host, port
}

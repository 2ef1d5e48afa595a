package poller

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/meshmon/meshmon"
	"github.com/meshmon/meshmon/internal/snmpv3"
)

// TrapUser is an SNMPv3 (USM) user whose traps and informs the trap
// listener accepts. The security level follows from what is set, as for
// devices: no AuthProtocol is noAuthNoPriv, AuthProtocol alone authNoPriv,
// both authPriv. A message must come at exactly the user's level.
type TrapUser struct {
	Name         string `yaml:"name"`
	AuthProtocol string `yaml:"auth_protocol,omitempty"` // one of meshmon.AuthProtocols
	AuthPassword string `yaml:"auth_password,omitempty"`
	PrivProtocol string `yaml:"priv_protocol,omitempty"` // one of meshmon.PrivProtocols
	PrivPassword string `yaml:"priv_password,omitempty"`
}

// TrapUsers is the content of a trap users file (poller run
// --trap-users-file): the USM users of the site's senders and, optionally,
// the engine ID the listener is authoritative with for informs.
type TrapUsers struct {
	// EngineID is the listener's own snmpEngineID in hex (5 to 32 bytes,
	// RFC 3411); empty means one derived from tenant, site and poller name
	// (see DefaultTrapEngineID).
	EngineID string     `yaml:"engine_id,omitempty"`
	Users    []TrapUser `yaml:"users"`
}

// maxTrapUsersFile bounds what LoadTrapUsers reads.
const maxTrapUsersFile = 1 << 20

// LoadTrapUsers reads and validates a trap users file (YAML; unknown keys
// are errors). It returns an error wrapping ErrTrapUsers that names the
// file and the rule broken. It does not check the file's mode; see
// TrapUsersFileMode.
func LoadTrapUsers(path string) (TrapUsers, error) {
	f, err := os.Open(path)
	if err != nil {
		return TrapUsers{}, fmt.Errorf("%w %s: %w", ErrTrapUsers, path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTrapUsersFile+1))
	if err != nil {
		return TrapUsers{}, fmt.Errorf("%w %s: %w", ErrTrapUsers, path, err)
	}
	if len(data) > maxTrapUsersFile {
		return TrapUsers{}, fmt.Errorf("%w %s: larger than %d bytes", ErrTrapUsers, path, maxTrapUsersFile)
	}
	tu, err := ParseTrapUsers(data)
	if err != nil {
		return TrapUsers{}, fmt.Errorf("%s: %w", path, err)
	}
	return tu, nil
}

// TrapUsersFileMode reports whether the file at path can be read by users
// other than its owner (it holds pass phrases; 0600 is recommended).
func TrapUsersFileMode(path string) (open bool, mode os.FileMode, err error) {
	st, err := os.Stat(path)
	if err != nil {
		return false, 0, fmt.Errorf("%w %s: %w", ErrTrapUsers, path, err)
	}
	return st.Mode().Perm()&0o077 != 0, st.Mode().Perm(), nil
}

// ParseTrapUsers decodes and validates a trap users document; the error
// wraps ErrTrapUsers.
func ParseTrapUsers(data []byte) (TrapUsers, error) {
	var tu TrapUsers
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&tu); err != nil && !errors.Is(err, io.EOF) {
		return TrapUsers{}, fmt.Errorf("%w: %w", ErrTrapUsers, err)
	}
	if err := tu.Validate(); err != nil {
		return TrapUsers{}, err
	}
	return tu, nil
}

// Validate checks every user and the engine ID and names the first
// problem; the error wraps ErrTrapUsers.
func (tu *TrapUsers) Validate() error {
	if tu.EngineID != "" {
		if _, err := parseEngineID(tu.EngineID); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for i, u := range tu.Users {
		if err := u.validate(); err != nil {
			return fmt.Errorf("%w: users[%d]: %w", ErrTrapUsers, i, err)
		}
		if seen[u.Name] {
			return fmt.Errorf("%w: users[%d]: user %q is listed twice", ErrTrapUsers, i, u.Name)
		}
		seen[u.Name] = true
	}
	return nil
}

func (u *TrapUser) validate() error {
	if u.Name == "" {
		return errors.New("name is empty")
	}
	if len(u.Name) > 32 {
		return fmt.Errorf("name %q is longer than 32 characters (RFC 3414)", u.Name)
	}
	if u.AuthProtocol == "" && (u.AuthPassword != "" || u.PrivProtocol != "" || u.PrivPassword != "") {
		return fmt.Errorf("user %s: auth_protocol is empty; an auth password or privacy needs one of %s", u.Name, strings.Join(meshmon.AuthProtocols, ", "))
	}
	if u.AuthProtocol != "" {
		if _, ok := snmpv3.AuthProtocol(u.AuthProtocol); !ok {
			return fmt.Errorf("user %s: auth_protocol %q is unknown; use one of %s", u.Name, u.AuthProtocol, strings.Join(meshmon.AuthProtocols, ", "))
		}
		if len(u.AuthPassword) < 8 {
			return fmt.Errorf("user %s: auth_password must be at least 8 characters (RFC 3414)", u.Name)
		}
	}
	if u.PrivProtocol == "" && u.PrivPassword != "" {
		return fmt.Errorf("user %s: priv_protocol is empty; a priv password needs one of %s", u.Name, strings.Join(meshmon.PrivProtocols, ", "))
	}
	if u.PrivProtocol != "" {
		if _, ok := snmpv3.PrivProtocol(u.PrivProtocol); !ok {
			return fmt.Errorf("user %s: priv_protocol %q is unknown; use one of %s", u.Name, u.PrivProtocol, strings.Join(meshmon.PrivProtocols, ", "))
		}
		if len(u.PrivPassword) < 8 {
			return fmt.Errorf("user %s: priv_password must be at least 8 characters (RFC 3414)", u.Name)
		}
	}
	return nil
}

// parseEngineID reads an engine ID in hex ("80001f8805..." or with colons).
func parseEngineID(s string) (string, error) {
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil {
		return "", fmt.Errorf("%w: engine_id %q is not hex", ErrTrapUsers, s)
	}
	if len(b) < 5 || len(b) > 32 {
		return "", fmt.Errorf("%w: engine_id is %d bytes; RFC 3411 wants 5 to 32", ErrTrapUsers, len(b))
	}
	return string(b), nil
}

// DefaultTrapEngineID is the snmpEngineID of a poller's trap listener when
// its trap users file sets none: stable for the same tenant, site and poller
// name, so senders of informs keep what they discovered across restarts.
// Format 5 (octets) of RFC 3411 under net-snmp's enterprise number, as the
// simulator's agents use, with 8 bytes of a hash of the names.
func DefaultTrapEngineID(tenant, site, name string) string {
	h := sha256.Sum256([]byte("meshmon trap engine\x00" + tenant + "\x00" + site + "\x00" + name))
	return string(append([]byte{0x80, 0x00, 0x1f, 0x88, 0x05}, h[:8]...))
}

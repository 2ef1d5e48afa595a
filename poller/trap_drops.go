package poller

import (
	"net"
	"time"
)

// dropReason is why the trap listener dropped a datagram.
type dropReason uint8

const (
	dropNone dropReason = iota
	// dropMalformed: not an SNMP message, truncated, or undecodable.
	dropMalformed
	// dropNotNotification: a PDU other than a trap or inform (a get, a
	// response, a report, a v1 Trap-PDU in a v2c message, ...).
	dropNotNotification
	// dropNoTrapOID: a v2c or v3 notification without snmpTrapOID.0, or a
	// v1 enterprise-specific trap without an enterprise.
	dropNoTrapOID
	// dropUnknownUser: SNMPv3 from a user that is not configured (or v3
	// while no user is).
	dropUnknownUser
	// dropBadLevel: SNMPv3 at another security level than the user's.
	dropBadLevel
	// dropBadAuth: SNMPv3 whose digest is wrong.
	dropBadAuth
	// dropDecrypt: SNMPv3 authPriv that authenticated but did not decrypt
	// into a PDU.
	dropDecrypt
	// dropUnknownEngine: an SNMPv3 inform sent to another engine ID.
	dropUnknownEngine
	// dropTimeWindow: an SNMPv3 inform outside the time window.
	dropTimeWindow
	// dropDiscovery: an SNMPv3 engine discovery request; answered, not an
	// error, and not counted as invalid.
	dropDiscovery
	nDropReasons
)

// dropNames are the names of the reasons in stats and logs.
var dropNames = [nDropReasons]string{
	dropMalformed:       "malformed",
	dropNotNotification: "not_notification",
	dropNoTrapOID:       "no_trap_oid",
	dropUnknownUser:     "unknown_user",
	dropBadLevel:        "bad_security_level",
	dropBadAuth:         "bad_auth",
	dropDecrypt:         "decrypt_failed",
	dropUnknownEngine:   "unknown_engine",
	dropTimeWindow:      "not_in_time_window",
}

// dropLogEvery is how often at most the listener logs, at info level, what
// it dropped.
const dropLogEvery = 10 * time.Second

// drop counts a dropped datagram and logs it at debug level, and at most
// once per dropLogEvery the totals at info level.
func (l *TrapListener) drop(r dropReason, from *net.UDPAddr, err error) {
	if r == dropDiscovery {
		l.discoveries.Add(1)
		return
	}
	l.drops[r].Add(1)
	l.log.Debug("snmp trap listener: dropped packet", "from", from.String(), "reason", dropNames[r], "err", err)
	now := time.Now().UnixNano()
	last := l.lastDropLog.Load()
	if now-last < int64(dropLogEvery) || !l.lastDropLog.CompareAndSwap(last, now) {
		return
	}
	args := []any{"last_from", from.String(), "last_reason", dropNames[r]}
	for reason, n := range l.Invalid() {
		args = append(args, reason, n)
	}
	l.log.Info("snmp trap listener dropped invalid packets (totals since start)", args...)
}

// Invalid returns how many datagrams the listener dropped as invalid since
// it was made, by reason ("malformed", "no_trap_oid", "unknown_user",
// "bad_auth", "decrypt_failed", ...); reasons with none are left out.
func (l *TrapListener) Invalid() map[string]uint64 {
	out := map[string]uint64{}
	for r := dropMalformed; r < nDropReasons; r++ {
		if n := l.drops[r].Load(); n > 0 {
			out[dropNames[r]] = n
		}
	}
	return out
}

// Discoveries returns how many SNMPv3 engine discovery requests the
// listener answered.
func (l *TrapListener) Discoveries() uint64 { return l.discoveries.Load() }

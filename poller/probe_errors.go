package poller

import "errors"

// Sentinel errors of the probes. A probe never returns them: it puts them,
// wrapped with the detail, in the Err field of its result, so callers can
// classify an outcome with errors.Is.
var (
	// ErrSNMPTimeout: the agent did not answer within the timeout and retries.
	ErrSNMPTimeout = errors.New("snmp timeout")
	// ErrSNMPRefused: the device answered with ICMP port unreachable, so no
	// agent listens on the SNMP port.
	ErrSNMPRefused = errors.New("snmp port unreachable")
	// ErrSNMPCancelled: the poll's context was cancelled before it finished.
	ErrSNMPCancelled = errors.New("snmp poll cancelled")
	// ErrSNMPAuth: the agent reported a wrong digest (wrong v3 auth password
	// or protocol).
	ErrSNMPAuth = errors.New("snmp authentication failure")
	// ErrSNMPUnknownUser: the agent does not know the v3 user.
	ErrSNMPUnknownUser = errors.New("snmp unknown user")
	// ErrSNMPUnknownEngine: the agent reported an unknown engine id even
	// after rediscovery.
	ErrSNMPUnknownEngine = errors.New("snmp unknown engine id")
	// ErrSNMPNotInTimeWindow: the agent kept reporting the request outside
	// its time window even after resynchronisation.
	ErrSNMPNotInTimeWindow = errors.New("snmp not in time window")
	// ErrSNMPDecryption: the agent could not decrypt the request (wrong v3
	// priv password or protocol).
	ErrSNMPDecryption = errors.New("snmp decryption error")
	// ErrSNMPSecurityLevel: the agent does not support the security level
	// the user was asked for.
	ErrSNMPSecurityLevel = errors.New("snmp unsupported security level")
	// ErrSNMPNoSuchHost: the device's host name does not resolve.
	ErrSNMPNoSuchHost = errors.New("snmp no such host")
	// ErrSNMPResponse: the agent answered with an SNMP error status or an
	// answer that cannot be used.
	ErrSNMPResponse = errors.New("snmp bad response")
	// ErrSNMPConfig: the device's SNMP settings cannot be used to build a
	// client. NewSNMPProber returns it.
	ErrSNMPConfig = errors.New("snmp configuration")

	// ErrICMPNotPermitted: this process may open neither an unprivileged
	// ICMP datagram socket nor a raw socket.
	ErrICMPNotPermitted = errors.New("icmp not permitted")
	// ErrICMPTimeout: no echo reply arrived in time.
	ErrICMPTimeout = errors.New("icmp no reply")
	// ErrICMPCancelled: the ping's context was cancelled before it finished.
	ErrICMPCancelled = errors.New("icmp ping cancelled")
	// ErrICMPNoSuchHost: the host name does not resolve.
	ErrICMPNoSuchHost = errors.New("icmp no such host")
	// ErrICMP: any other failure to ping.
	ErrICMP = errors.New("icmp ping failed")

	// ErrTrapListen: the trap listener could not bind its address.
	// TrapListener.Start returns it.
	ErrTrapListen = errors.New("trap listener bind")
)

package poller

import "errors"

// ErrCorruptEntry is wrapped by DrainOnce when the spool held an entry that
// cannot be decoded: it is dropped (nothing can ever send it) and counted in
// Stats.Corrupt, apart from the messages the peer refused.
var ErrCorruptEntry = errors.New("corrupt spool entry")

// ErrTrapUsers is wrapped by LoadTrapUsers, ParseTrapUsers and
// TrapUsers.Validate when the trap users file cannot be read or breaks a
// rule; the error names the field and the rule.
var ErrTrapUsers = errors.New("trap users")

// ErrInvalidConfig is wrapped by every error of Config.Validate and
// ParseICMPMode; the error names the field and the rule.
var ErrInvalidConfig = errors.New("invalid config")
